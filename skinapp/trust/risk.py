"""Graded malignancy risk: three tiers from the calibrated malignancy probability, so that the strongest warning
is kept for the few lesions that earn it.

- *High* — at or above the level that at most 10 % of held-out benign lesions reach: "consider excision or
  biopsy".
- *Cannot exclude* — from the melanoma safety net (the level 95 % of held-out malignant lesions reach) up to
  *High*: "a second look or dermoscopic follow-up", never the excision wording.
- *Low* — below the safety net. Never called "benign": the model only says it found nothing that reaches the net.

Both levels are fitted by `evaluate` on out-of-fold data and travel in the model card.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from sklearn.model_selection import GroupKFold

from skinapp.trust.safety_net import TARGET_SENSITIVITY, SafetyNet, fit_safety_net

HIGH, CANNOT_EXCLUDE, LOW = "high", "cannot_exclude", "low"
TIERS = (HIGH, CANNOT_EXCLUDE, LOW)
# A result of a model without tiers: at or above its safety net, which it worded "suspicious — consider excision".
SUSPICIOUS_UNGRADED = "suspicious"
# What each is called wherever a clinician reads it (worklist, case page, reports, the clinic page, the card).
TIER_NAMES = {HIGH: "High risk of malignancy", CANNOT_EXCLUDE: "Malignancy cannot be excluded",
              LOW: "Low (below the safety net)", SUSPICIOUS_UNGRADED: "Suspicious (safety net of an ungraded model)"}
TIER_SHORT_NAMES = {HIGH: "High risk", CANNOT_EXCLUDE: "Cannot exclude", LOW: "Low",
                    SUSPICIOUS_UNGRADED: "Suspicious (ungraded)"}
HIGH_BENIGN_SHARE = 0.10  # at most this share of held-out benign lesions reach High


@dataclass(frozen=True)
class RiskTiers:
    """The High level; the lower level is the safety net's (one threshold, one meaning)."""

    high: float | None = None        # malignancy at or above which a lesion is High; None: no tiers
    benign_share: float = HIGH_BENIGN_SHARE

    @property
    def active(self) -> bool:
        return self.high is not None

    def tier(self, malignancy: float, net: SafetyNet) -> str | None:
        """The tier of one lesion, or None where the model has no tiers or no safety net."""
        if self.high is None or net.threshold is None:
            return None
        if malignancy >= max(self.high, net.threshold):
            return HIGH
        return CANNOT_EXCLUDE if malignancy >= net.threshold else LOW

    def tiers(self, malignancy: np.ndarray, net: SafetyNet) -> np.ndarray:
        return np.asarray([self.tier(float(m), net) for m in np.asarray(malignancy)], dtype=object)

    def to_dict(self) -> dict:
        return {"method": "High: the calibrated malignancy at or above which at most "
                          f"{self.benign_share:.0%} of held-out benign lesions lie; Cannot exclude: from the safety "
                          "net up to High; Low: below the safety net", **asdict(self)}

    @classmethod
    def from_dict(cls, raw: dict | None) -> RiskTiers:
        if not raw:
            return cls()
        return cls(high=raw.get("high"), benign_share=float(raw.get("benign_share", HIGH_BENIGN_SHARE)))


def fit_risk_tiers(malignancy: np.ndarray, malignant: np.ndarray, benign_share: float = HIGH_BENIGN_SHARE) -> RiskTiers:
    """The lowest level that at most `benign_share` of the benign lesions reach."""
    benign = np.sort(np.asarray(malignancy, float)[~np.asarray(malignant, bool)])[::-1]
    if len(benign) == 0:
        raise ValueError("the risk tiers need held-out benign cases to be fitted on")
    allowed = int(np.floor(len(benign) * benign_share + 1e-9))
    if allowed >= len(benign):
        return RiskTiers(float(benign[-1]), benign_share)
    # just above the (allowed + 1)-th highest benign value: that lesion and all below it stay under High
    return RiskTiers(float(np.nextafter(benign[allowed], np.inf)), benign_share)


def cross_fitted_tiers(malignancy: np.ndarray, malignant: np.ndarray, groups: np.ndarray, folds: int = 5,
                       sensitivity: float = TARGET_SENSITIVITY) -> np.ndarray:
    """Each lesion's tier under levels (High and the safety net) fitted without it."""
    tiers = np.empty(len(malignancy), dtype=object)
    splits = min(folds, len(np.unique(groups)))
    for train, test in GroupKFold(splits).split(malignancy, malignant, groups):
        net = fit_safety_net(malignancy[train], malignant[train], sensitivity)
        tiers[test] = fit_risk_tiers(malignancy[train], malignant[train]).tiers(malignancy[test], net)
    return tiers


def tier_report(tiers: np.ndarray, malignant: np.ndarray) -> dict:
    """Per tier: the share of all malignant and of all benign lesions in it, its PPV (the share of its lesions
    that are malignant) and the number needed to excise (lesions excised per malignant one found: 1 / PPV)."""
    tiers, malignant = np.asarray(tiers, dtype=object), np.asarray(malignant, bool)
    report = {}
    for tier in TIERS:
        inside = tiers == tier
        found = int((inside & malignant).sum())
        report[tier] = {
            "n_images": int(inside.sum()),
            "malignant_share": float(found / malignant.sum()) if malignant.any() else None,
            "benign_share": float((inside & ~malignant).sum() / (~malignant).sum()) if (~malignant).any() else None,
            "ppv": float(found / inside.sum()) if inside.any() else None,
            "number_needed_to_excise": float(inside.sum() / found) if found else None,
        }
    return report
