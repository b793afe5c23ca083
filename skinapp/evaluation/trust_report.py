"""The trust part of `evaluate`: calibration, the flag policy, the similar-case index and their measurements,
all on out-of-fold predictions (images each member never trained on).

Writes into the evaluation folder: reliability.png (before/after calibration), coverage.png (accuracy of
the cases left to the model as the riskiest go to manual review) and trust.json; into the weights folder:
embeddings.npz (the similar-case / out-of-distribution index).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from skinapp.evaluation.checks import EVALUATED_MODEL, TrustFit
from skinapp.evaluation.plots import finish, plt
from skinapp.inference.postprocess import PostProcessing, with_held_out_sets
from skinapp.inference.prediction import RawOutputs
from skinapp.inference.predictor import Predictor
from skinapp.metrics import expected_calibration_error
from skinapp.model.card import IndexEntry, ModelCard, sha256_of
from skinapp.train.data import LabelledImages
from skinapp.trust.calibration import apply_temperature, binary_calibration_error, cross_fitted, fit_temperature, reliability
from skinapp.trust.conformal import cross_fitted_masks, fit_conformal, set_report
from skinapp.trust.decision import TauChoice, choose_tau
from skinapp.trust.flags import FlagPolicy, features, fixed_hard_flags
from skinapp.trust.policy_fit import fit_policy
from skinapp.trust.risk import cross_fitted_tiers, fit_risk_tiers, tier_report
from skinapp.trust.safety_net import cross_fitted_suspicious, fit_safety_net, net_report
from skinapp.trust.similar import INDEX_FILE, VOTE_K, EmbeddingIndex, TrainingDistribution, load_index, save_index
from skinapp.vocab import CLASSES, MALIGNANT_INDICES


def image_features(raw: RawOutputs) -> np.ndarray:
    if raw.image_features is None:
        raise ValueError("the model's outputs carry no encoder features (made by an older version of skinapp)")
    return raw.image_features


def build_index(weights: Path, data: LabelledImages, held_out: dict[int, RawOutputs], views: int,
                folds: np.ndarray, also_trained_on: LabelledImages | None = None) -> tuple[EmbeddingIndex, TrainingDistribution]:
    """Embeddings of every labelled HAM image by the shipped ensemble, and, per member, the distribution of its
    encoder features over the images it trained on: the HAM folds it saw (each image's fold is in `folds`; the
    held-out ones are what the out-of-distribution threshold is set on) and `also_trained_on` (ISIC 2017
    `train`, which every member saw; without it another clinic's images look foreign although the model
    learnt from such images). With one member the held-out images are already analysed and only the rest are
    computed."""
    card = ModelCard.load(weights)
    known = held_out if len(card.members) == 1 else {}
    missing = [i for i in range(len(data)) if i not in known]
    predictor = Predictor.from_weights(weights, tta=views > 1, views=views if views > 1 else None, gradcam=False,
                                       calibrate=False)
    predictions = predictor.infer([data.images[i] for i in missing], [data.metadata[i] for i in missing])
    computed = dict(zip(missing, predictions, strict=True))
    every = [known.get(i) or computed[i] for i in range(len(data))]
    embeddings = np.stack([p.embedding for p in every]).astype(np.float32)
    features = np.stack([image_features(p) for p in every])
    width = features.shape[1] // len(card.members)
    extra = np.empty((0, features.shape[1]), features.dtype)
    if also_trained_on is not None and len(also_trained_on):
        extra = np.stack([image_features(p) for p in predictor.infer(also_trained_on.images, also_trained_on.metadata)])
    distribution = TrainingDistribution.fit_members([
        np.concatenate([features[folds != m.validation_fold], extra])[:, j * width:(j + 1) * width]
        for j, m in enumerate(card.members)])
    return EmbeddingIndex(embeddings, data.labels.copy(), np.asarray(data.image_ids), data.lesion_ids.copy()), distribution


INDEX_SPOT_CHECK = 24  # images the reused index is recomputed on before it is trusted


def reusable_index(weights: Path, data: LabelledImages, views: int, seed: int = 2026
                   ) -> tuple[EmbeddingIndex, TrainingDistribution] | None:
    """The index already in the weights folder, when it is the one these members make: the file is the one the
    card names, it holds exactly `data`'s images, the views are the card's, and the ensemble, run again on a
    seeded sample of its images, gives the stored embeddings. Building it anew runs the whole ensemble over every
    training image, the longest step of `evaluate`; a card refit alone (risk levels, flags) does not change it.
    None, with the reason printed, when any of that does not hold."""
    path = weights / INDEX_FILE
    reason, stored = _stored_index_mismatch(weights, data, views, seed)
    if stored is None:
        print(f"similar-case index: building it anew ({reason})", flush=True)
        return None
    print(f"similar-case index: reusing {path.name} ({reason})", flush=True)
    return stored


def _stored_index_mismatch(weights: Path, data: LabelledImages, views: int, seed: int
                           ) -> tuple[str, tuple[EmbeddingIndex, TrainingDistribution] | None]:
    card = ModelCard.load(weights)
    path = weights / INDEX_FILE
    if card.index is None or not path.is_file() or sha256_of(path) != card.index.sha256:
        return "the card names no index, or not this file", None
    if views != card.tta_views:
        return f"the stored index was made with {card.tta_views} views, this evaluation uses {views}", None
    index, distribution = load_index(path)
    if distribution is None or distribution.members != len(card.members):
        return "the stored index has no per-member training distribution", None
    if list(index.image_ids) != list(data.image_ids):
        return "the stored index holds other images", None
    sample = np.sort(np.random.default_rng(seed).choice(len(data), size=min(INDEX_SPOT_CHECK, len(data)), replace=False))
    predictor = Predictor.from_weights(weights, tta=views > 1, views=views if views > 1 else None, gradcam=False,
                                       calibrate=False)
    again = predictor.infer([data.images[i] for i in sample], [data.metadata[i] for i in sample])
    fresh = np.stack([p.embedding for p in again]).astype(np.float32)
    fresh /= np.linalg.norm(fresh, axis=1, keepdims=True).clip(1e-12)
    gap = float(np.abs(fresh - index.embeddings[sample]).max())
    if gap > 1e-3:
        return f"these members' embeddings differ from the stored ones by up to {gap:.2g}", None
    return f"made by these members: {len(sample)} images recomputed, largest difference {gap:.1e}", (index, distribution)


def _plot_reliability(labels: np.ndarray, before: np.ndarray, after: np.ndarray, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    for name, probabilities in (("before", before), ("after temperature scaling", after)):
        points = reliability(labels, probabilities)
        ece = expected_calibration_error(labels, probabilities)
        ax.plot([p[0] for p in points], [p[1] for p in points], "o-", label=f"{name} (ECE {ece:.3f})")
    finish(fig, ax, path, xlabel="stated confidence of the top diagnosis", ylabel="share of top diagnoses that were right",
           title="Reliability on held-out HAM10000", legend="upper left")


def _plot_coverage(report: dict, path: Path) -> None:
    curve = report["coverage_accuracy"]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot([c["coverage"] for c in curve], [c["accuracy"] for c in curve], "o-")
    ax.axvline(1 - report["flagged_share"], ls="--", color="grey",
               label=f"chosen threshold: {report['flagged_share']:.0%} flagged, {report['errors_caught']:.0%} of errors caught")
    ax.invert_xaxis()
    finish(fig, ax, path, xlabel="share of cases left to the model (the rest go to manual check)",
           ylabel="accuracy on the cases left", title="Coverage against accuracy (held-out, cross-fitted)",
           legend="lower left", fontsize=8)


@dataclass
class TrustResult:
    """What `evaluate_trust` measured and fitted: the figures, and what goes into the model card."""

    metrics: dict
    calibration: dict
    fit: TrustFit
    index_entry: IndexEntry
    index: EmbeddingIndex
    distribution: TrainingDistribution
    tau_choice: TauChoice  # how the decision rule's τ was chosen (the rule is `fit.rule`)
    # (set masks, suspicious, risk tiers) of the shifted copies, cross-fitted
    shifted_cross_fitted: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None


@dataclass
class ShiftedSet:
    """Held-out HAM images after `shift.py`, each analysed (uncalibrated) by the member that never trained on it."""

    rows: np.ndarray                 # positions in the HAM data
    images: list[np.ndarray]
    outputs: list[RawOutputs]
    shifts: list[tuple[str, ...]]


def evaluate_trust(weights: Path, data: LabelledImages, oof: pd.DataFrame, held_out: dict[int, RawOutputs],
                   out: Path, views: int, folds: np.ndarray, shifted: ShiftedSet | None = None,
                   also_trained_on: LabelledImages | None = None, reuse_index: bool = True) -> TrustResult:
    """Calibration, decision rule, conformal sets, safety net, flag policy and similar-case index, fitted on the
    out-of-fold predictions. The rule is fitted on the calibrated probabilities; "an error" for the flags means
    its call is wrong. The conformal sets and the safety net are fitted on the out-of-fold images together with
    their shifted copies, so that they hold when the images change; each part's figures are cross-fitted by
    lesion (an image is judged by thresholds fitted without its lesion, shifted or not). The similar-case index
    is reused when `reusable_index` finds it made by these members, unless `reuse_index` is false."""
    position = {image_id: i for i, image_id in enumerate(data.image_ids)}
    rows = [position[i] for i in oof["image_id"]]
    labels = oof["label"].map(CLASSES.index).to_numpy()
    groups = data.lesion_ids[rows]
    raw = oof[list(CLASSES)].to_numpy()
    malignant_columns = list(MALIGNANT_INDICES)
    raw_nometa = oof[[f"{c}_nometa" for c in CLASSES]].to_numpy()

    malignant = np.isin(labels, MALIGNANT_INDICES).astype(float)
    temperature = fit_temperature(raw, labels)
    honest = cross_fitted(raw, labels, groups)
    calibration = {
        "method": "temperature scaling fitted on out-of-fold predictions (negative log-likelihood)",
        "temperature": temperature,
        "ece_before": expected_calibration_error(labels, raw),
        "ece_after": expected_calibration_error(labels, honest),
        "ece_after_note": "cross-fitted: each image scored by a temperature fitted without its lesion",
        "ece_before_without_metadata": expected_calibration_error(labels, raw_nometa),
        "ece_after_without_metadata": expected_calibration_error(labels, apply_temperature(raw_nometa, temperature)),
        "malignancy_calibration_error_before": binary_calibration_error(malignant, raw[:, malignant_columns].sum(1)),
        "malignancy_calibration_error_after": binary_calibration_error(malignant, honest[:, malignant_columns].sum(1)),
        "n_images": len(labels),
    }
    _plot_reliability(labels, raw, honest, out / "reliability.png")
    calibrated_oof = apply_temperature(raw, temperature)
    tau_choice = choose_tau(labels, calibrated_oof, groups)
    rule = tau_choice.rule
    scores = rule.scores(calibrated_oof)
    predicted = scores.argmax(1)
    # Conformal sets and the safety net: fitted on the held-out images and their shifted copies together.
    all_calibrated, all_labels, all_groups = calibrated_oof, labels, groups
    if shifted is not None:
        shifted_raw = np.stack([p.probabilities for p in shifted.outputs])
        all_calibrated = np.concatenate([calibrated_oof, apply_temperature(shifted_raw, temperature)])
        all_labels = np.concatenate([labels, data.labels[shifted.rows]])
        all_groups = np.concatenate([groups, data.lesion_ids[shifted.rows]])
    all_scores = rule.scores(all_calibrated)
    all_malignancy, all_malignant = all_calibrated[:, malignant_columns].sum(1), np.isin(all_labels, MALIGNANT_INDICES)
    conformal = fit_conformal(all_scores, all_labels)
    safety_net = fit_safety_net(all_malignancy, all_malignant)
    risk_tiers = fit_risk_tiers(all_malignancy, all_malignant)
    all_sets = cross_fitted_masks(all_scores, all_labels, all_groups)
    all_suspicious = cross_fitted_suspicious(all_malignancy, all_malignant, all_groups)
    all_tiers = cross_fitted_tiers(all_malignancy, all_malignant, all_groups)
    n = len(labels)
    honest_sets, honest_suspicious, honest_tiers = all_sets[:n], all_suspicious[:n], all_tiers[:n]

    # The stored distribution was fitted with ISIC 2017 `train` in it: without those images, build it anew.
    reused = reusable_index(weights, data, views) if reuse_index and also_trained_on is not None else None
    if reused is None:
        index, distribution = build_index(weights, data, held_out, views, folds, also_trained_on)
        save_index(weights / INDEX_FILE, index, distribution)
    else:
        index, distribution = reused
    # A held-out image is measured in the space of the one member that never trained on it, by the app's own chain.
    chain = PostProcessing(temperature, rule, conformal, safety_net, risk_tiers)
    members = ModelCard.load(weights).members
    member_of_fold = {m.validation_fold: j for j, m in enumerate(members)}
    provisional = TrustFit(chain, FlagPolicy.provisional())  # the policy is what this loop's signs are fitted for
    member_index = [index.member_view(j, len(members)) for j in range(len(members))]
    assessors = [provisional.assessor(member_index[j], distribution.member(j)) for j in range(len(members))]
    table, votes, always = [], [], []
    for image_row, row in enumerate(rows):
        member = member_of_fold[int(folds[row])]
        prediction = with_held_out_sets(chain.finish(held_out[row], EVALUATED_MODEL), honest_sets[image_row],
                                        bool(honest_suspicious[image_row]), honest_tiers[image_row])
        evidence = assessors[member].evidence(prediction, data.images[row], True, exclude_lesion=groups[image_row])
        table.append(features(evidence))
        always.append(bool(fixed_hard_flags(evidence)))
        votes.append(member_index[member].vote(prediction.embedding, exclude_lesion=groups[image_row])[0])
    table = pd.DataFrame(table)
    correct = predicted == labels
    policy, flag_report = fit_policy(table, correct, groups, always_checked=np.asarray(always))
    _plot_coverage(flag_report, out / "coverage.png")
    voted = np.asarray([CLASSES.index(v) for v in votes])
    similar = {
        "index_images": len(index.image_ids),
        "knn_k": VOTE_K,
        "knn_agrees_with_classifier": float((voted == predicted).mean()),
        "knn_accuracy": float((voted == labels).mean()),
        "classifier_accuracy": float(correct.mean()),
        "accuracy_when_they_agree": float(correct[voted == predicted].mean()) if (voted == predicted).any() else None,
        "accuracy_when_they_disagree": float(correct[voted != predicted].mean()) if (voted != predicted).any() else None,
        "note": "neighbours from the same lesion are excluded, so no image finds itself",
    }
    fitted_on = (f"{n} out-of-fold HAM10000 images" + (f" and {len(all_labels) - n} shifted copies of them"
                                                       if shifted is not None else ""))
    conformal_report = {**conformal.to_dict(), "target_coverage": conformal.coverage, "fitted_on": fitted_on,
                        **set_report(honest_sets, labels),
                        "note": "figures for the out-of-fold images, cross-fitted: each image's set from a threshold "
                                "fitted without its lesion"}
    net = {**safety_net.to_dict(), "fitted_on": fitted_on, **net_report(honest_suspicious, malignant.astype(bool)),
           "note": "figures for the out-of-fold images, cross-fitted: each image marked by a threshold fitted "
                   "without its lesion"}
    shifted_honest = (all_sets[n:], all_suspicious[n:], all_tiers[n:]) if shifted is not None else None
    tiers_report = {**risk_tiers.to_dict(), "fitted_on": fitted_on,
                    "levels": {"high": risk_tiers.high, "cannot_exclude": safety_net.threshold},
                    "tiers": tier_report(honest_tiers, malignant.astype(bool)),
                    "note": "figures for the out-of-fold images, cross-fitted: each image's tier from levels fitted "
                            "without its lesion"}
    metrics = {"calibration": calibration, "flags": flag_report, "similar_cases": similar, "conformal": conformal_report,
               "safety_net": net, "risk_tiers": tiers_report}
    (out / "trust.json").write_text(json.dumps(metrics, indent=2) + "\n")
    table.assign(image_id=oof["image_id"].to_numpy(), correct=correct).to_csv(out / "flag_features.csv", index=False,
                                                                             float_format="%.5f")
    index_entry = IndexEntry(INDEX_FILE, sha256_of(weights / INDEX_FILE), len(index.image_ids))
    fit = TrustFit(chain, policy)
    return TrustResult(metrics, calibration, fit, index_entry, index, distribution, tau_choice, shifted_honest)
