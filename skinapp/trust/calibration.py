"""Calibrated probabilities: temperature scaling fitted on out-of-fold predictions (Guo et al. 2017).

One number T: calibrated = softmax(log p / T). It keeps every prediction's ranking of the classes (so the
predicted class and the balanced accuracy do not change) and only makes the stated confidence match how
often the model is right. It is fitted on held-out predictions, never on training images; its own effect is
measured by cross-fitting (fit on four fifths of the lesions, score on the fifth).
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import GroupKFold


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Rows of probabilities (any leading shape, classes last) recalibrated with temperature T."""
    if temperature == 1.0:
        return probabilities
    logits = np.log(np.clip(probabilities, 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=-1, keepdims=True)
    scaled = np.exp(logits)
    return scaled / scaled.sum(axis=-1, keepdims=True)


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The T that minimises the negative log-likelihood of the true labels."""
    import torch  # only to fit: applying a temperature needs numpy alone

    logits = torch.tensor(np.log(np.clip(probabilities, 1e-12, 1.0)), dtype=torch.float64)
    targets = torch.tensor(labels, dtype=torch.long)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([log_t], max_iter=100, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        optimiser.zero_grad()
        value = torch.nn.functional.cross_entropy(logits / log_t.exp(), targets)
        value.backward()
        return value

    optimiser.step(loss)
    return float(log_t.detach().exp())


def cross_fitted(probabilities: np.ndarray, labels: np.ndarray, groups: np.ndarray, folds: int = 5) -> np.ndarray:
    """Each row calibrated by a temperature fitted without its lesion: an honest estimate of the effect."""
    calibrated = np.empty_like(probabilities)
    splits = min(folds, len(np.unique(groups)))
    for train, test in GroupKFold(splits).split(probabilities, labels, groups):
        calibrated[test] = apply_temperature(probabilities[test], fit_temperature(probabilities[train], labels[train]))
    return calibrated


def reliability(labels: np.ndarray, probabilities: np.ndarray, bins: int = 15) -> list[tuple[float, float, int]]:
    """(mean confidence, accuracy, count) per equal-width bin of top-label confidence: the reliability diagram."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    which = np.clip(np.digitize(confidence, np.linspace(0, 1, bins + 1)[1:-1]), 0, bins - 1)
    return [(float(confidence[which == b].mean()), float(correct[which == b].mean()), int((which == b).sum()))
            for b in range(bins) if (which == b).any()]


def binary_calibration_error(target: np.ndarray, probability: np.ndarray, bins: int = 10) -> float:
    """ECE of one yes/no probability (e.g. malignancy): |observed rate − mean probability| per bin, weighted."""
    which = np.clip(np.digitize(probability, np.linspace(0, 1, bins + 1)[1:-1]), 0, bins - 1)
    return float(sum((which == b).mean() * abs(target[which == b].mean() - probability[which == b].mean())
                     for b in range(bins) if (which == b).any()))
