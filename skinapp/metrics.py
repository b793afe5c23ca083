"""Metrics shared by training (per-epoch validation) and the evaluate command. Pure numpy."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from skinapp.vocab import CLASSES, MALIGNANT_INDICES


def confusion(labels: np.ndarray, predicted: np.ndarray, n_classes: int = len(CLASSES)) -> np.ndarray:
    """Rows: true class, columns: predicted class."""
    return np.bincount(labels * n_classes + predicted, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def per_class_recall(matrix: np.ndarray) -> np.ndarray:
    return np.diag(matrix) / np.maximum(matrix.sum(axis=1), 1)


def per_class_precision(matrix: np.ndarray) -> np.ndarray:
    return np.diag(matrix) / np.maximum(matrix.sum(axis=0), 1)


def balanced_accuracy_of_calls(labels: np.ndarray, calls: np.ndarray, n_classes: int = len(CLASSES)) -> float:
    """Mean per-class recall over the classes present in labels (the ISIC 2018 task 3 metric)."""
    matrix = confusion(labels, calls, n_classes)
    present = matrix.sum(axis=1) > 0
    return float(per_class_recall(matrix)[present].mean())


def balanced_accuracy(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Balanced accuracy of the highest-probability calls."""
    return balanced_accuracy_of_calls(labels, probabilities.argmax(axis=1), probabilities.shape[1])


def recall_by_class(labels: np.ndarray, calls: np.ndarray) -> dict[str, float]:
    """Recall of each class present in labels, by class code."""
    matrix = confusion(labels, calls)
    present = matrix.sum(axis=1) > 0
    return {c: round(float(r), 4) for c, r, here in zip(CLASSES, per_class_recall(matrix), present, strict=True) if here}


def malignancy(probabilities: np.ndarray) -> np.ndarray:
    """P(malignant) = P(MEL) + P(BCC) + P(AKIEC)."""
    return probabilities[:, list(MALIGNANT_INDICES)].sum(axis=1)


def is_malignant(labels: np.ndarray) -> np.ndarray:
    return np.isin(labels, MALIGNANT_INDICES)


def malignant_auc(labels: np.ndarray, probabilities: np.ndarray) -> float:
    target = is_malignant(labels)
    if target.all() or not target.any():
        return float("nan")
    return float(roc_auc_score(target, malignancy(probabilities)))


def binary_sensitivity_at_specificity(target: np.ndarray, score: np.ndarray, specificity: float = 0.9) -> float:
    if target.all() or not target.any():
        return float("nan")
    fpr, tpr, _ = roc_curve(target, score)
    return float(tpr[fpr <= 1 - specificity].max(initial=0.0))


def sensitivity_at_specificity(labels: np.ndarray, probabilities: np.ndarray, specificity: float = 0.9) -> float:
    """Malignant (MEL, BCC, AKIEC) against benign, scored by the malignancy probability."""
    return binary_sensitivity_at_specificity(is_malignant(labels), malignancy(probabilities), specificity)


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, bins: int = 15) -> float:
    """Top-label ECE with equal-width confidence bins."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def jaccard(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of two boolean masks; 1.0 when both are empty."""
    predicted, truth = predicted.astype(bool), truth.astype(bool)
    union = np.logical_or(predicted, truth).sum()
    return float(np.logical_and(predicted, truth).sum() / union) if union else 1.0


def dice_from_jaccard(j: float) -> float:
    return 2 * j / (1 + j)


def classification_report(labels: np.ndarray, probabilities: np.ndarray) -> dict:
    matrix = confusion(labels, probabilities.argmax(axis=1), probabilities.shape[1])
    return {
        "n_images": len(labels),
        "balanced_accuracy": balanced_accuracy(labels, probabilities),
        "accuracy": float((probabilities.argmax(axis=1) == labels).mean()),
        "malignant_auc": malignant_auc(labels, probabilities),
        "sensitivity_at_90_specificity": sensitivity_at_specificity(labels, probabilities, 0.9),
        "expected_calibration_error": expected_calibration_error(labels, probabilities),
        "recall": dict(zip(CLASSES, per_class_recall(matrix).round(4).tolist(), strict=True)),
        "precision": dict(zip(CLASSES, per_class_precision(matrix).round(4).tolist(), strict=True)),
        "confusion_matrix": matrix.tolist(),
    }
