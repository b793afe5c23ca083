"""The melanoma safety net: a malignancy probability chosen on out-of-fold data so that at least 95 % of held-out
malignant lesions (MEL, BCC, AKIEC) are at or above it. Above it a model with graded risk (`risk.py`) says
"malignancy cannot be excluded" (or "high risk" above its High level); a model without says "suspicious —
consider excision".

It trades many false alarms for few missed malignancies, on purpose: a missed melanoma is the costliest
error. What it costs (the share of all cases it marks) is measured and shown in the model card.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from sklearn.model_selection import GroupKFold

TARGET_SENSITIVITY = 0.95


@dataclass(frozen=True)
class SafetyNet:
    threshold: float | None = None   # malignancy probability at or above which a case is suspicious; None: no net
    target_sensitivity: float = TARGET_SENSITIVITY

    @property
    def active(self) -> bool:
        return self.threshold is not None

    def suspicious(self, malignancy: np.ndarray | float) -> np.ndarray | bool:
        if self.threshold is None:
            return np.zeros(np.shape(malignancy), bool) if np.ndim(malignancy) else False
        result = np.asarray(malignancy) >= self.threshold
        return result if result.ndim else bool(result)

    def to_dict(self) -> dict:
        return {"method": "threshold on the calibrated malignancy probability (MEL + BCC + AKIEC) for the target "
                          "sensitivity on out-of-fold HAM10000", **asdict(self)}

    @classmethod
    def from_dict(cls, raw: dict | None) -> SafetyNet:
        if not raw:
            return cls()
        return cls(threshold=raw.get("threshold"), target_sensitivity=float(raw.get("target_sensitivity", TARGET_SENSITIVITY)))


def fit_safety_net(malignancy: np.ndarray, malignant: np.ndarray, sensitivity: float = TARGET_SENSITIVITY) -> SafetyNet:
    """The largest threshold that keeps at least `sensitivity` of the malignant cases at or above it."""
    values = np.sort(np.asarray(malignancy)[np.asarray(malignant, bool)])
    if len(values) == 0:
        raise ValueError("the safety net needs held-out malignant cases to be fitted on")
    allowed_misses = int(np.floor(len(values) * (1 - sensitivity) + 1e-9))
    return SafetyNet(float(values[allowed_misses]), sensitivity)


def net_report(suspicious: np.ndarray, malignant: np.ndarray) -> dict:
    malignant = np.asarray(malignant, bool)
    return {
        "n_images": len(suspicious),
        "malignant_sensitivity": float(suspicious[malignant].mean()) if malignant.any() else None,
        "share_marked": float(suspicious.mean()),
        "benign_marked": float(suspicious[~malignant].mean()) if (~malignant).any() else None,
    }


def cross_fitted_suspicious(malignancy: np.ndarray, malignant: np.ndarray, groups: np.ndarray, folds: int = 5,
                            sensitivity: float = TARGET_SENSITIVITY) -> np.ndarray:
    """Each case marked by a threshold fitted without its lesion."""
    marked = np.zeros(len(malignancy), bool)
    splits = min(folds, len(np.unique(groups)))
    for train, test in GroupKFold(splits).split(malignancy, malignant, groups):
        marked[test] = fit_safety_net(malignancy[train], malignant[train], sensitivity).suspicious(malignancy[test])
    return marked
