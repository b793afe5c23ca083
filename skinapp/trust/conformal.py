"""Conformal prediction sets: "the diagnosis is one of: melanoma, nevus", with a stated chance of holding the
true diagnosis (split conformal, adaptive prediction sets; Romano et al. 2020, Angelopoulos et al. 2021).

Classes are ranked by the decision rule's scores (so the top call always comes first). A class's
non-conformity is the score mass ranked above it plus half its own score: the midpoint of the randomised
APS score, which keeps the sets deterministic (the same image always gets the same set) and is still a valid
split-conformal score, so the coverage guarantee holds on data exchangeable with the calibration data. The
threshold is the ⌈(n+1)(1−α)⌉-th smallest non-conformity of the true class over out-of-fold HAM10000 images.
On images from elsewhere the guarantee does not hold by construction; `evaluate` measures the coverage there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from sklearn.model_selection import GroupKFold

from skinapp.vocab import CLASSES, MALIGNANT_INDICES

COVERAGE = 0.90


def nonconformity(scores: np.ndarray) -> np.ndarray:
    """(n, K) scores → (n, K) non-conformity of each class: mass ranked above it plus half its own."""
    order = np.argsort(-scores, axis=1, kind="stable")
    ranked = np.take_along_axis(scores, order, axis=1)
    above = np.cumsum(ranked, axis=1) - ranked
    values = np.empty_like(scores)
    np.put_along_axis(values, order, above + 0.5 * ranked, axis=1)
    return values


@dataclass(frozen=True)
class ConformalSets:
    threshold: float | None = None   # None: no sets (a model evaluated before conformal sets existed)
    coverage: float = COVERAGE       # the target coverage the threshold was fitted for
    calibration_images: int = 0

    @property
    def active(self) -> bool:
        return self.threshold is not None

    def masks(self, scores: np.ndarray) -> np.ndarray:
        """(…, K) decision scores → (…, K) booleans: which classes are in each set. The top call is always in."""
        scores = np.asarray(scores, dtype=float)
        flat = scores.reshape(-1, scores.shape[-1])
        inside = nonconformity(flat) <= (self.threshold if self.threshold is not None else np.inf)
        inside[np.arange(len(flat)), flat.argmax(1)] = True
        return inside.reshape(scores.shape)

    def prediction_set(self, scores: np.ndarray) -> tuple[str, ...]:
        """The classes in the set, the top call first, then by decreasing score."""
        inside = self.masks(scores)
        return tuple(CLASSES[k] for k in np.argsort(-np.asarray(scores), kind="stable") if inside[k])

    def to_dict(self) -> dict:
        return {"method": "split conformal, adaptive prediction sets (deterministic midpoint score) on the decision "
                          "rule's scores", **asdict(self)}

    @classmethod
    def from_dict(cls, raw: dict | None) -> ConformalSets:
        if not raw:
            return cls()
        return cls(threshold=raw.get("threshold"), coverage=float(raw.get("coverage", COVERAGE)),
                   calibration_images=int(raw.get("calibration_images", 0)))


def fit_conformal(scores: np.ndarray, labels: np.ndarray, coverage: float = COVERAGE) -> ConformalSets:
    """The split-conformal threshold from held-out images' scores and true labels."""
    n = len(labels)
    if n == 0:
        raise ValueError("conformal sets need held-out images to be fitted on")
    true_class = nonconformity(scores)[np.arange(n), labels]
    rank = min(int(np.ceil((n + 1) * coverage)), n)
    return ConformalSets(float(np.sort(true_class)[rank - 1]), coverage, n)


def set_report(masks: np.ndarray, labels: np.ndarray) -> dict:
    """Coverage reached, set sizes, and how often a malignant class is in the set (by true class)."""
    n = len(labels)
    covered = masks[np.arange(n), labels]
    sizes = masks.sum(1)
    malignant = np.isin(labels, MALIGNANT_INDICES)
    return {
        "n_images": n,
        "coverage": float(covered.mean()),
        "coverage_by_class": {CLASSES[k]: float(covered[labels == k].mean()) for k in np.unique(labels)},
        "mean_set_size": float(sizes.mean()),
        "single_class_share": float((sizes == 1).mean()),
        "malignant_cases_with_a_malignant_class_in_set": float(masks[malignant][:, list(MALIGNANT_INDICES)].any(1).mean())
        if malignant.any() else None,
    }


def cross_fitted_masks(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray, folds: int = 5,
                       coverage: float = COVERAGE) -> np.ndarray:
    """Each image's set from a threshold fitted without its lesion: an honest estimate of the coverage."""
    masks = np.zeros(scores.shape, bool)
    splits = min(folds, len(np.unique(groups)))
    for train, test in GroupKFold(splits).split(scores, labels, groups):
        masks[test] = fit_conformal(scores[train], labels[train], coverage).masks(scores[test])
    return masks
