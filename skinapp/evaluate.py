"""`python -m skinapp evaluate`: each ensemble member on the HAM10000 fold it never trained on.

Writes metrics.json, oof_predictions.csv (uncalibrated probabilities), confusion.png, roc.png, report.md and,
from `trust.py`, the calibration, flag and similar-case measurements with their pictures. The similar-case
index (embeddings.npz) is written into the weights folder. With `update_card` the metrics, the fitted
temperature, the flag policy and the index's hash go into the weights' model card.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve

from skinapp.inference import Prediction, Predictor, default_device
from skinapp.metrics import classification_report, dice_from_jaccard, is_malignant, jaccard, malignancy
from skinapp.model.card_markdown import write_model_card_markdown
from skinapp.model.checkpoint import ModelCard, load_member
from skinapp.plots import finish
from skinapp.train.data import LabelledImages, load_ham10000
from skinapp.trust import evaluate_trust
from skinapp.vocab import CLASSES

FOLDS_FILE = "folds.csv"


def _member_folds(weights: Path, data: LabelledImages) -> np.ndarray:
    path = weights / FOLDS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the evaluation needs the folds the model was trained with")
    table = pd.read_csv(path).set_index("image_id")["fold"]
    return table.reindex(data.image_ids).fillna(-1).to_numpy(int)


def out_of_fold_predictions(weights: Path, data: LabelledImages, tta: bool = True,
                            held_out: dict[int, Prediction] | None = None) -> pd.DataFrame:
    """Uncalibrated probabilities of each member on its own validation fold. `held_out`, when given, receives
    the full prediction (with metadata) of every held-out image, keyed by its position in `data`."""
    card = ModelCard.load(weights)
    folds = _member_folds(weights, data)
    device = default_device()
    rows = []
    for member in card.members:
        index = np.flatnonzero(folds == member.validation_fold)
        predictor = Predictor([load_member(weights, member, card.model_config, device)], card, device=device, tta=tta,
                              gradcam=False, calibrate=False)
        images = [data.images[i] for i in index]
        with_meta = predictor.predict(images, [data.metadata[i] for i in index])
        without_meta = predictor.predict(images, None)
        if held_out is not None:
            held_out.update(zip(index.tolist(), with_meta))
        for i, a, b in zip(index, with_meta, without_meta):
            row = {"image_id": data.image_ids[i], "fold": member.validation_fold, "label": CLASSES[data.labels[i]]}
            row.update({c: p for c, p in zip(CLASSES, a.probabilities)})
            row.update({f"{c}_nometa": p for c, p in zip(CLASSES, b.probabilities)})
            if data.masks is not None:
                row["jaccard"] = jaccard(a.outline.mask, data.masks[i])
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


def _report(metrics: dict, version: str) -> str:
    rows = []
    for key, name in (("with_metadata", "with metadata"), ("without_metadata", "without metadata")):
        m = metrics[key]
        rows.append(
            f"| {name} | {m['balanced_accuracy']:.3f} | {m['malignant_auc']:.3f} | {m['sensitivity_at_90_specificity']:.3f} "
            f"| {m['expected_calibration_error']:.3f} |"
        )
    recall = metrics["with_metadata"]["recall"]
    precision = metrics["with_metadata"]["precision"]
    lines = [
        f"# Evaluation of {version}",
        "",
        f"{metrics['evaluated_on']}; folds {metrics['folds']}, {metrics['with_metadata']['n_images']} images.",
        "",
        "| input | balanced accuracy | malignant AUC | sensitivity at 90 % specificity | ECE |",
        "|---|---|---|---|---|",
        *rows,
        "",
        "| class | " + " | ".join(CLASSES) + " |",
        "|---|" + "---|" * len(CLASSES),
        "| recall | " + " | ".join(f"{recall[c]:.2f}" for c in CLASSES) + " |",
        "| precision | " + " | ".join(f"{precision[c]:.2f}" for c in CLASSES) + " |",
    ]
    if "mask" in metrics:
        mask = metrics["mask"]
        lines += ["", f"Lesion mask ({mask['method']}): Jaccard {mask['jaccard']:.3f}, Dice {mask['dice']:.3f}, "
                  f"ISIC thresholded Jaccard {mask['thresholded_jaccard_065']:.3f}."]
    lines += ["", "![confusion matrix](confusion.png)", "", "![ROC](roc.png)", ""]
    return "\n".join(lines)


def evaluate(weights: Path, data_root: Path, out: Path, limit: int | None = None, tta: bool = True, update_card: bool = False) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    data = load_ham10000(data_root, limit=limit)
    card = ModelCard.load(weights)
    held_out: dict[int, Prediction] = {}
    oof = out_of_fold_predictions(weights, data, tta=tta, held_out=held_out)
    metrics = summarise(oof)
    metrics.update(model_version=card.version, tta=tta)
    trust, calibration, policy, index = evaluate_trust(weights, data, oof, held_out, out, tta)
    metrics.update(trust)
    oof.to_csv(out / "oof_predictions.csv", index=False, float_format="%.6f")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    plot_confusion(np.asarray(metrics["with_metadata"]["confusion_matrix"]), out / "confusion.png", "Held-out HAM10000, with metadata")
    plot_roc(oof, out / "roc.png")
    (out / "report.md").write_text(_report(metrics, card.version))
    if update_card:
        card = ModelCard.load(weights)
        card.metrics, card.calibration, card.flag_policy, card.index = metrics, calibration, policy, index
        card.save(weights)
        write_model_card_markdown(weights)
    return metrics
