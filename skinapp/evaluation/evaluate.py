"""`python -m skinapp evaluate`: each ensemble member on the HAM10000 fold it never trained on, and the whole
ensemble on an external check (ISIC 2017 `val`: other centres and dermatoscopes, never trained on).

Then the trust checks (`checks.py`) on the out-of-fold images, on a shifted copy of them (`shift.py`) and on
ISIC 2017 `val`: flag rate and errors caught, conformal coverage, safety-net sensitivity.

Writes metrics.json, oof_predictions.csv (uncalibrated probabilities), confusion.png, roc.png, report.md and,
from `trust.py`, the calibration, decision rule, flag and similar-case measurements with their pictures. The
similar-case index (embeddings.npz) is written into the weights folder. With `update_card` the metrics, the
fitted temperature, decision rule, flag policy and the index's hash go into the weights' model card.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score, roc_curve

from skinapp.evaluation.checks import EVALUATED_MODEL, assessed_cases, check_summary
from skinapp.evaluation.held_out import by_own_member, member_predictors
from skinapp.evaluation.plots import finish
from skinapp.evaluation.resolution import resolution_check, spread
from skinapp.evaluation.screening import screening_figures
from skinapp.evaluation.shift import SHIFTS, shifted_copy
from skinapp.evaluation.trust_report import ShiftedSet, TrustResult, evaluate_trust
from skinapp.inference.outline import lesion_outline
from skinapp.inference.prediction import RawOutputs
from skinapp.inference.predictor import Predictor
from skinapp.metrics import (
    balanced_accuracy_of_calls,
    binary_sensitivity_at_specificity,
    classification_report,
    dice_from_jaccard,
    is_malignant,
    jaccard,
    malignancy,
    recall_by_class,
)
from skinapp.model.card import Calibration, ModelCard
from skinapp.model.measured import CardMetrics
from skinapp.reporting.card_sections import evaluation_report
from skinapp.reporting.model_card import write_model_card_markdown
from skinapp.train.data import FOLDS_FILE, LabelledImages, load_ham10000, load_isic2017, read_folds
from skinapp.trust.calibration import apply_temperature
from skinapp.trust.decision import DecisionRule, TauChoice, cross_fitted_calls
from skinapp.vocab import CLASSES

MEL = CLASSES.index("MEL")
RESOLUTION_IMAGES = 1000  # held-out images re-rendered at each size: the check costs about five shifted copies
SHIFTED_IMAGES = 2000  # held-out images in the shifted-copy check: enough for a stable flag rate, an affordable run

def _member_folds(weights: Path, data: LabelledImages) -> np.ndarray:
    """Each image's fold; -1 for images no member held out."""
    path = weights / FOLDS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the evaluation needs the folds the model was trained with")
    return read_folds(path, data.image_ids, missing=-1)


def out_of_fold_predictions(weights: Path, data: LabelledImages, views: int = 4,
                            held_out: dict[int, RawOutputs] | None = None) -> pd.DataFrame:
    """Uncalibrated probabilities of each member on its own validation fold. `held_out`, when given, receives
    the raw outputs (with metadata) of every held-out image, keyed by its position in `data`."""
    folds = _member_folds(weights, data)
    rows = []
    for fold, predictor in member_predictors(weights, ModelCard.load(weights), views).items():
        index = np.flatnonzero(folds == fold)
        images = [data.images[i] for i in index]
        with_meta = predictor.infer(images, [data.metadata[i] for i in index])
        without_meta = predictor.infer(images, None)
        if held_out is not None:
            held_out.update(zip(index.tolist(), with_meta, strict=True))
        for i, a, b in zip(index, with_meta, without_meta, strict=True):
            row = {"image_id": data.image_ids[i], "fold": fold, "label": CLASSES[data.labels[i]]}
            row.update({c: p for c, p in zip(CLASSES, a.probabilities, strict=True)})
            row.update({f"{c}_nometa": p for c, p in zip(CLASSES, b.probabilities, strict=True)})
            truth = data.masks[i] if data.masks is not None else None
            if truth is not None:
                row["jaccard"] = jaccard(lesion_outline(a.attention_grid, *a.image_size).mask, truth)
            rows.append(row)
    if not rows:
        raise ValueError("no image of the data set falls in a validation fold of these weights")
    return pd.DataFrame(rows)


def summarise(oof: pd.DataFrame) -> dict:
    labels = oof["label"].map(CLASSES.index).to_numpy()
    metrics = {
        "evaluated_on": "HAM10000 images of each member's held-out fold (never seen in training)",
        "folds": sorted(int(f) for f in oof["fold"].unique()),
        "with_metadata": classification_report(labels, oof[list(CLASSES)].to_numpy()),
        "without_metadata": classification_report(labels, oof[[f"{c}_nometa" for c in CLASSES]].to_numpy()),
    }
    if "jaccard" in oof:
        j = oof["jaccard"].to_numpy()
        metrics["mask"] = {
            "method": "Otsu threshold + morphological opening of the attention map, largest region",
            "jaccard": float(j.mean()),
            "dice": float(np.mean([dice_from_jaccard(x) for x in j])),
            "thresholded_jaccard_065": float(np.where(j < 0.65, 0.0, j).mean()),
        }
    return metrics


def plot_confusion(matrix: np.ndarray, path: Path, title: str) -> None:
    normalised = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6, 5))
    im = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(CLASSES)), CLASSES)
    ax.set_yticks(range(len(CLASSES)), CLASSES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (HAM10000 label)")
    for (r, c), count in np.ndenumerate(matrix):
        ax.text(c, r, f"{count}", ha="center", va="center", fontsize=8, color="white" if normalised[r, c] > 0.5 else "black")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="share of the true class")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_roc(oof: pd.DataFrame, path: Path) -> None:
    labels = oof["label"].map(CLASSES.index).to_numpy()
    target = is_malignant(labels)
    fig, ax = plt.subplots(figsize=(5, 5))
    for suffix, name in (("", "with metadata"), ("_nometa", "without metadata")):
        probabilities = oof[[f"{c}{suffix}" for c in CLASSES]].to_numpy()
        fpr, tpr, _ = roc_curve(target, malignancy(probabilities))
        auc = classification_report(labels, probabilities)["malignant_auc"]
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.axvline(0.1, ls="--", color="grey", lw=0.8, label="90 % specificity")
    finish(fig, ax, path, xlabel="1 − specificity", ylabel="sensitivity", title="Malignant (MEL, BCC, AKIEC) vs benign",
           legend="lower right")


def decision_rule_report(oof: pd.DataFrame, temperature: float, choice: TauChoice, lesions: np.ndarray) -> dict:
    """Balanced accuracy of the top call under argmax and under the balanced rule (`choice.rule`). The headline
    figure is cross-fitted by fold: each fold's calls come from a rule tuned on the other folds. lesions: one per
    oof row."""
    labels = oof["label"].map(CLASSES.index).to_numpy()
    calibrated = apply_temperature(oof[list(CLASSES)].to_numpy(), temperature)
    argmax_calls = calibrated.argmax(1)
    folds = oof["fold"].to_numpy()
    honest_calls, fold_taus = cross_fitted_calls(labels, calibrated, folds if len(np.unique(folds)) > 1 else
                                                 np.arange(len(labels)) % 5, lesions=lesions)
    in_sample = choice.rule.call(calibrated)
    return {
        **choice.rule.to_dict(),
        "fitted_on": "calibrated out-of-fold HAM10000 probabilities; τ: the smallest whose balanced accuracy is within "
                     "one standard error (bootstrap over lesions) of the best τ's",
        "tau_choice": {"best_tau": choice.best_tau, "standard_error": choice.standard_error,
                       "balanced_accuracy_by_tau": dict(zip([f"{t:g}" for t in choice.taus], choice.balanced_accuracy,
                                                            strict=True))},
        "balanced_accuracy_argmax": balanced_accuracy_of_calls(labels, argmax_calls),
        "balanced_accuracy_balanced_rule": balanced_accuracy_of_calls(labels, honest_calls),
        "balanced_accuracy_balanced_rule_in_sample": balanced_accuracy_of_calls(labels, in_sample),
        "cross_fitting": "by HAM fold (each fold scored by a τ tuned on the others)" if len(np.unique(folds)) > 1
                         else "5 interleaved parts of the one held-out fold",
        "cross_fitted_taus": fold_taus,
        "recall_argmax": recall_by_class(labels, argmax_calls),
        "recall_balanced_rule": recall_by_class(labels, honest_calls),
        "accuracy_argmax": float((argmax_calls == labels).mean()),
        "accuracy_balanced_rule": float((honest_calls == labels).mean()),
    }


def case_table(image_ids: list[str], cases: pd.DataFrame) -> pd.DataFrame:
    """A check's cases as the app would have shown them, one row per image: the call, whether it was right, the
    manual check and the signs that raised it, the safety net, the conformal set (calibrated probabilities)."""
    table = cases.drop(columns=["in_set"]).assign(
        image_id=image_ids, label=[CLASSES[k] for k in cases["label"]], call=[CLASSES[k] for k in cases["call"]],
        prediction_set=[" ".join(c for c, kept in zip(CLASSES, mask, strict=True) if kept) for mask in cases["in_set"]])
    return table[["image_id", *[c for c in table.columns if c != "image_id"]]]


def external_figures(labels: np.ndarray, calibrated: np.ndarray, rule: DecisionRule, views: int) -> dict:
    """Diagnostic figures on ISIC 2017 `val` from calibrated probabilities and a decision rule."""
    balanced_calls, argmax_calls = rule.call(calibrated), calibrated.argmax(1)
    mel_target = labels == MEL
    return {
        "data": "ISIC 2017 challenge `val` split: other centres and dermatoscopes than HAM10000; never trained on",
        "n_images": len(labels),
        "classes_present": {CLASSES[k]: int((labels == k).sum()) for k in np.unique(labels)},
        "melanoma_auc": float(roc_auc_score(mel_target, calibrated[:, MEL])) if 0 < mel_target.sum() < len(labels) else None,
        "malignant_auc": float(roc_auc_score(is_malignant(labels), malignancy(calibrated)))
        if 0 < is_malignant(labels).sum() < len(labels) else None,
        "melanoma_sensitivity_at_90_specificity": binary_sensitivity_at_specificity(mel_target, calibrated[:, MEL]),
        "balanced_accuracy_balanced_rule": balanced_accuracy_of_calls(labels, balanced_calls),
        "balanced_accuracy_argmax": balanced_accuracy_of_calls(labels, argmax_calls),
        "balanced_accuracy_note": "mean recall over the classes present, the call chosen among all 7 classes",
        "recall_balanced_rule": recall_by_class(labels, balanced_calls),
        "recall_argmax": recall_by_class(labels, argmax_calls),
        "tta_views": views,
    }


def external_predictions(weights: Path, isic2017: Path, views: int = 4,
                         limit: int | None = None) -> tuple[LabelledImages, list[RawOutputs]]:
    """The whole ensemble's raw outputs on ISIC 2017 `val`."""
    data = load_isic2017(isic2017, "val", limit=limit)
    predictor = Predictor.from_weights(weights, tta=views > 1, views=views if views > 1 else None, gradcam=False,
                                       calibrate=False)
    return data, predictor.infer(data.images, data.metadata)


def external_check(weights: Path, isic2017: Path, trust: TrustResult, views: int = 4,
                   limit: int | None = None) -> tuple[dict, pd.DataFrame, dict, pd.DataFrame]:
    """The whole ensemble, calibrated and with the balanced rule, on ISIC 2017 `val` (mel / nv / bkl): the
    diagnostic figures, the per-image table, the trust check (flags, sets, safety net) and its cases."""
    fit = trust.fit
    data, predictions = external_predictions(weights, isic2017, views, limit)
    raw = np.stack([p.probabilities for p in predictions])
    report = external_figures(data.labels, apply_temperature(raw, fit.temperature), fit.rule, views)
    table = pd.DataFrame({"image_id": data.image_ids, "label": [CLASSES[k] for k in data.labels]})
    table[list(CLASSES)] = raw
    ensemble = fit.assessor(trust.index, trust.distribution)
    cases = assessed_cases(predictions, data.images, data.labels, fit, [ensemble] * len(predictions))
    check = check_summary(cases, "ISIC 2017 `val` (other clinics and dermatoscopes), the whole ensemble")
    return report, table, check, case_table(data.image_ids, cases)


def shifted_predictions(weights: Path, data: LabelledImages, oof: pd.DataFrame, views: int,
                        limit: int | None = SHIFTED_IMAGES, seed: int = 2017) -> ShiftedSet:
    """Held-out HAM images, deliberately shifted (`shift.py`), each analysed by the member that never trained on it."""
    card = ModelCard.load(weights)
    position = {image_id: i for i, image_id in enumerate(data.image_ids)}
    rows = np.asarray([position[i] for i in oof["image_id"]])
    if limit is not None and len(rows) > limit:
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=limit, replace=False))
    images, applied = shifted_copy([data.images[i] for i in rows], seed)
    predictions = by_own_member(member_predictors(weights, card, views), _member_folds(weights, data)[rows], images,
                                [data.metadata[i] for i in rows])
    return ShiftedSet(rows, images, [p for p in predictions if p is not None], applied)


def shifted_check(weights: Path, data: LabelledImages, shifted: ShiftedSet, trust: TrustResult) -> tuple[dict, pd.DataFrame]:
    """Do the flags, sets and safety net still hold when the images change? The sets and the safety net are
    the cross-fitted ones (they were fitted with shifted copies of other lesions)."""
    fit = trust.fit
    card = ModelCard.load(weights)
    folds = _member_folds(weights, data)[shifted.rows]
    member_of_fold = {m.validation_fold: j for j, m in enumerate(card.members)}
    members = [member_of_fold[int(f)] for f in folds]
    ensemble = fit.assessor(trust.index, trust.distribution)
    assessors = {j: ensemble.member_view(j, len(card.members)) for j in set(members)}
    masks, suspicious, tiers = trust.shifted_cross_fitted if trust.shifted_cross_fitted is not None else (None, None, None)
    cases = assessed_cases(shifted.outputs, shifted.images, data.labels[shifted.rows], fit,
                           [assessors[j] for j in members], exclude_lesions=list(data.lesion_ids[shifted.rows]),
                           set_masks=masks, suspicious=suspicious, tiers=tiers)
    summary = check_summary(cases, f"{len(shifted.rows)} held-out HAM10000 images, each shifted twice (colour cast, "
                                   "contrast, blur, JPEG, scale) by `evaluate` itself")
    summary["shifts_applied"] = {name: sum(name in a for a in shifted.shifts) for name in SHIFTS}
    table = case_table([data.image_ids[i] for i in shifted.rows], cases)
    table.insert(1, "shifts", [" + ".join(a) for a in shifted.shifts])
    return summary, table


def out_of_fold_check(trust: TrustResult) -> dict:
    """The same figures as the other checks, for the out-of-fold HAM images (all cross-fitted)."""
    flags, conformal, net = trust.metrics["flags"], trust.metrics["conformal"], trust.metrics["safety_net"]
    return {
        "data": "out-of-fold HAM10000 (each image by the member that never trained on it; every threshold cross-fitted)",
        "n_images": flags["n_images"], "error_rate": flags["error_rate"], "flagged_share": flags["flagged_share"],
        "errors_caught": flags["errors_caught"], "accuracy_unflagged": flags["accuracy_unflagged"],
        "ece": trust.calibration["ece_after"],
        "safety_net": {k: net[k] for k in ("n_images", "malignant_sensitivity", "share_marked", "benign_marked")},
        "conformal": {k: conformal[k] for k in ("n_images", "coverage", "coverage_by_class", "mean_set_size",
                                                "single_class_share", "malignant_cases_with_a_malignant_class_in_set")},
        **({"risk_tiers": trust.metrics["risk_tiers"]["tiers"]} if "risk_tiers" in trust.metrics else {}),
    }


def resolution_figures(weights: Path, data: LabelledImages, oof: pd.DataFrame, trust: TrustResult, views: int,
                       n_images: int = RESOLUTION_IMAGES, seed: int = 2026) -> dict:
    """The resolution check (`resolution.py`) on a seeded sample of held-out HAM images, each analysed by the member
    that never trained on it through the app's chain, the safety net's level as fitted."""
    card = ModelCard.load(weights)
    position = {image_id: i for i, image_id in enumerate(data.image_ids)}
    rows = np.asarray([position[i] for i in oof["image_id"]])
    if len(rows) > n_images:
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=n_images, replace=False))
    folds = _member_folds(weights, data)[rows]
    predictors = member_predictors(weights, card, views)
    chain = trust.fit.postprocessing

    def score(images: list[np.ndarray], positions) -> tuple[np.ndarray, np.ndarray]:
        positions = list(positions)
        raws = by_own_member(predictors, folds[positions], [images[k] for k in positions],
                             [data.metadata[rows[k]] for k in positions])
        made = [chain.finish(raw, EVALUATED_MODEL) for raw in raws if raw is not None]
        return np.stack([p.probabilities for p in made]), np.asarray([p.predicted_index for p in made])

    checked = resolution_check([data.images[i] for i in rows], data.labels[rows], score, chain.safety_net.threshold)
    return {"data": f"{len(rows)} held-out HAM10000 images, each re-rendered larger with a rotating upscaling kernel "
                    "and read back through the import's decoder", "n_images": len(rows),
            "rows": [r.to_dict() for r in checked], **spread(checked), "targets": {"balanced_accuracy_range": 0.02,
                                                                                  "malignant_auc_range": 0.01}}


def evaluate(weights: Path, data_root: Path, out: Path, limit: int | None = None, tta: bool = True, update_card: bool = False,
             isic2017: Path | None = None, views: int | None = None, shifted: int | None = SHIFTED_IMAGES,
             resolution: int | None = RESOLUTION_IMAGES, reuse_index: bool = True,
             siim2020: Path | None = None) -> CardMetrics:
    """views: test-time views (1, 4 or 8; default the card's); with update_card the card ships that count.
    shifted: how many held-out images the shifted-copy check uses (0 or None: no shifted check); resolution: how
    many the resolution check uses (0 or None: none); reuse_index: keep the similar-case index when it is the one
    these members make (`reusable_index`); siim2020: the SIIM-ISIC 2020 folder, scored as the screening population
    (`screening.py`: held-out patients of members trained with it, else every image). The figures are written as
    metrics.json and returned typed."""
    out.mkdir(parents=True, exist_ok=True)
    data = load_ham10000(data_root, limit=limit)
    card = ModelCard.load(weights)
    views = (views or card.tta_views) if tta else 1
    held_out: dict[int, RawOutputs] = {}
    oof = out_of_fold_predictions(weights, data, views=views, held_out=held_out)
    metrics = summarise(oof)
    metrics.update(model_version=card.version, tta=views > 1, members=len(card.members), tta_views=views)
    labels = oof["label"].map(CLASSES.index).to_numpy()
    metrics["with_metadata"]["melanoma_sensitivity_at_90_specificity"] = binary_sensitivity_at_specificity(
        labels == MEL, oof["MEL"].to_numpy())
    shifted_set = shifted_predictions(weights, data, oof, views, limit=shifted) if shifted else None
    isic_train = load_isic2017(isic2017, "train", limit=limit) if isic2017 is not None else None
    trust = evaluate_trust(weights, data, oof, held_out, out, views, _member_folds(weights, data), shifted_set, isic_train,
                           reuse_index)
    metrics.update(trust.metrics)
    position = {image_id: i for i, image_id in enumerate(data.image_ids)}
    lesions = data.lesion_ids[[position[i] for i in oof["image_id"]]]
    metrics["decision_rule"] = decision_rule_report(oof, trust.fit.temperature, trust.tau_choice, lesions)
    metrics["checks"] = {"out_of_fold": out_of_fold_check(trust)}
    if shifted_set is not None:
        metrics["checks"]["shifted_ham"], shifted_cases = shifted_check(weights, data, shifted_set, trust)
        shifted_cases.to_csv(out / "check_shifted_ham.csv", index=False, float_format="%.6f")
    if resolution:
        metrics["resolution"] = resolution_figures(weights, data, oof, trust, views, resolution)
    if isic2017 is not None:
        metrics["external"], external_table, metrics["checks"]["isic2017_val"], external_cases = external_check(
            weights, isic2017, trust, views)
        external_table.to_csv(out / "external_isic2017_val.csv", index=False, float_format="%.6f")
        external_cases.to_csv(out / "check_isic2017_val.csv", index=False, float_format="%.6f")
    if siim2020 is not None:
        metrics["screening"] = screening_figures(weights, siim2020, trust.fit.postprocessing, views, limit)
    oof.to_csv(out / "oof_predictions.csv", index=False, float_format="%.6f")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    measured = CardMetrics.from_dict(metrics)
    plot_confusion(np.asarray(metrics["with_metadata"]["confusion_matrix"]), out / "confusion.png",
                   "Held-out HAM10000, with metadata")
    plot_roc(oof, out / "roc.png")
    (out / "report.md").write_text(evaluation_report(measured, card.version))
    if update_card:
        card = ModelCard.load(weights)
        card.metrics, card.flag_policy, card.index = measured, trust.fit.policy, trust.index_entry
        card.calibration = Calibration(trust.calibration["temperature"], trust.calibration["method"])
        card.decision_rule, card.conformal, card.safety_net = trust.fit.rule, trust.fit.conformal, trust.fit.safety_net
        card.risk_tiers = trust.fit.postprocessing.risk_tiers
        if views > 1:
            card.tta_views = views
        card.save(weights)
        write_model_card_markdown(weights)
    return measured
