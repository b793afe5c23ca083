"""When to distrust the model: measured warning signs, each with a reason a clinician understands, combined
into one "needs manual check" decision.

Warning signs (features of one prediction, `signs.py`):
- the diagnosis is uncertain: low calibrated confidence in the top call, a close call, high entropy, a conformal
  set of several diagnoses, or a malignant diagnosis in the set while the call is benign;
- the model disagrees with itself: across test-time views (flips, transpose) and ensemble members (mutual
  information), or in its malignancy probability;
- the attention is inconsistent (Tymchenko et al.: such samples tend to be misclassified): split into several
  regions, or running into the image border;
- the image is far from the training images in the encoder's feature space (out of distribution), or the
  labelled images most like it in the model's embedding mostly have another diagnosis;
- metadata the model would have used is missing.

Some inputs are never scored silently: not a colour dermoscopy image, a blank frame, or an image far outside
the training data always needs a manual check. For the rest, `FlagPolicy` combines a few of the model's own
uncertainty signs (`SCORE_SIGNS`) with non-negative weights fitted on out-of-fold predictions: more doubt
never lowers the risk, so when another clinic's images make the model less sure the flags rise instead of
going quiet (a free logistic model over every sign learned HAM10000's quirks, with weights of both signs, and
flagged a third as many cases elsewhere). The threshold flags at most 20 % of held-out cases, the cases that are
always checked counted in. Every flag names the signs that raised it; each sign also has its own threshold (the
90th percentile on held-out data) that decides which are shown as information. The melanoma safety net
(`safety_net.py`) is shown beside the flags: a suspicious case is never shown without a word of warning.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from skinapp.trust.risk import CANNOT_EXCLUDE, HIGH
from skinapp.trust.signs import (
    FEATURES,
    SIGN_BY_CODE,
    Evidence,
    attention_regions,
    features,
    image_statistics,
    malignancy_spread,
)

__all__ = [
    "FEATURES", "FIXED_CHECKS", "MAX_FLAGGED", "RED_WARNINGS", "RISK_CANNOT_EXCLUDE", "RISK_HIGH", "SCORE_SIGNS",
    "SUSPICIOUS", "Evidence", "Flag", "FlagPolicy", "attention_regions",
    "beyond_training_data", "features", "fixed_hard_flags", "image_statistics", "malignancy_spread", "needs_manual_check",
]

MAX_FLAGGED = 0.20
# The signs the combined score may use: the model's own doubt, which grows on unfamiliar images. Image properties
# (attention shape, border, metadata, distance to the training data) describe the acquisition more than the
# model's reliability and are shown as information or hard flags instead.
SCORE_SIGNS: tuple[str, ...] = ("uncertainty", "small_margin", "entropy", "view_disagreement", "mutual_information",
                                "malignancy_spread", "prediction_set_size", "knn_disagreement")
# Fixed reason thresholds: a malignant class in the set while the call is benign is always worth saying.
FIXED_REASON_THRESHOLDS = {"malignant_in_set": 1.0}
SUSPICIOUS = "suspicious"  # the safety net's flag code (models without graded risk)
RISK_HIGH, RISK_CANNOT_EXCLUDE = "risk_high", "risk_cannot_exclude"  # the graded risk's warnings (`risk.py`)
RED_WARNINGS = (SUSPICIOUS, RISK_HIGH)  # shown first, in red; "cannot exclude" is amber and never says excision
NAMED_SHARE = 0.25  # a sign is named as a cause of the check when it gives at least this share of the raised risk


@dataclass(frozen=True)
class Flag:
    code: str        # stable identifier, e.g. "views_disagree"
    reason: str      # what the clinician reads
    serious: bool    # serious flags put the case up for a manual check


@dataclass
class FlagPolicy:
    """Thresholds and the combined check, as fitted on out-of-fold data (or provisional defaults)."""

    thresholds: dict[str, float]                  # a sign at or above its threshold is shown as a reason
    ood_threshold: float | None = None            # beyond this distance: always a manual check
    weights: dict[str, float] = field(default_factory=dict)  # logistic model of an error on standardised signs
    means: dict[str, float] = field(default_factory=dict)
    scales: dict[str, float] = field(default_factory=dict)
    intercept: float = 0.0
    check_threshold: float | None = None          # risk at or above this: manual check
    fitted_on: str = "provisional defaults (no out-of-fold fit in the model card)"

    @classmethod
    def provisional(cls) -> FlagPolicy:
        return cls(thresholds={"small_margin": 0.90, "view_disagreement": 0.26, "mutual_information": 0.15,
                               "malignancy_spread": 0.10, "malignancy_closeness": 0.90, "prediction_set_size": 3,
                               "attention_regions": 3, "border_fraction": 0.25, "knn_disagreement": 0.6,
                               "missing_metadata": 1})

    @classmethod
    def from_dict(cls, values: dict | None) -> FlagPolicy:
        return cls(**values) if values else cls.provisional()

    def risk(self, values: dict[str, float]) -> float | None:
        """Estimated probability that the model is wrong on this case (None without a fitted model)."""
        if not self.weights:
            return None
        z = self.intercept + sum(w * (values[f] - self.means[f]) / self.scales[f] for f, w in self.weights.items())
        return float(1 / (1 + np.exp(-z)))

    def contributions(self, values: dict[str, float]) -> dict[str, float]:
        """Each weighted sign's push on the risk (weight × standardised value), largest first."""
        pushes = {f: w * (values[f] - self.means[f]) / self.scales[f] for f, w in self.weights.items()}
        return dict(sorted(pushes.items(), key=lambda item: -item[1]))

    def causes(self, values: dict[str, float]) -> list[str]:
        """The signs that raised the combined check: those pushing the risk up by at least NAMED_SHARE of the total
        upward push (at least the strongest one)."""
        pushes = {f: v for f, v in self.contributions(values).items() if v > 0}
        if not pushes:
            return [max(self.weights, key=lambda f: self.weights[f])] if self.weights else []
        total = sum(pushes.values())
        named = [f for f, v in pushes.items() if v >= NAMED_SHARE * total]
        return named or [next(iter(pushes))]

    def assess(self, evidence: Evidence) -> list[Flag]:
        values = features(evidence)
        hard = fixed_hard_flags(evidence)
        if self.ood_threshold is not None and evidence.ood_distance is not None \
                and beyond_training_data(evidence.ood_distance, self.ood_threshold):
            hard.append(Flag("out_of_distribution", SIGN_BY_CODE["ood_distance"].reason(evidence, values["ood_distance"]), True))

        thresholds = {**self.thresholds, **FIXED_REASON_THRESHOLDS}
        shown = [f for f in FEATURES if f in thresholds and f != "ood_distance" and values[f] >= thresholds[f]]
        risk = self.risk(values)
        if risk is not None and self.check_threshold is not None:
            check = risk >= self.check_threshold
            causes = self.causes(values) if check else []
        else:  # provisional (no fitted policy): any uncertainty sign raises the check
            check = any(SIGN_BY_CODE[f].uncertainty for f in shown)
            causes = [f for f in shown if SIGN_BY_CODE[f].uncertainty]
        ordered = causes + [f for f in shown if f not in causes]
        soft = [Flag(name, SIGN_BY_CODE[name].reason(evidence, values[name]),
                     check and (name in causes or SIGN_BY_CODE[name].can_be_serious)) for name in ordered]
        warning = risk_warning(evidence)
        if warning is not None:
            soft.insert(0, warning)
        return hard + soft


def risk_warning(evidence: Evidence) -> Flag | None:
    """The malignancy warning: graded where the model has risk tiers, else the safety net's one mark."""
    if not evidence.suspicious or evidence.safety_net is None or evidence.safety_net.threshold is None:
        return None
    malignancy, net = f"{evidence.malignancy:.0%}", evidence.safety_net
    if evidence.risk_tier == HIGH:
        return Flag(RISK_HIGH, f"High risk of malignancy — consider excision or biopsy. The malignancy probability "
                               f"({malignancy}) is in the highest tier, which few benign lesions reach (at most "
                               f"{evidence.high_benign_share:.0%} in the model's tests).", False)
    if evidence.risk_tier is not None and evidence.risk_tier != CANNOT_EXCLUDE:
        return None  # a graded model's Low: below the net (never a warning, never "benign")
    if evidence.risk_tier == CANNOT_EXCLUDE:
        return Flag(RISK_CANNOT_EXCLUDE, f"Malignancy cannot be excluded — a second look or dermoscopic follow-up. The "
                                         f"malignancy probability ({malignancy}) is at or above the level that "
                                         f"{net.target_sensitivity:.0%} of malignant lesions reached in the model's "
                                         f"tests ({net.threshold:.0%}).", False)
    return Flag(SUSPICIOUS, f"Suspicious — consider excision: the malignancy probability ({malignancy}) is at or "
                            f"above the level that {net.target_sensitivity:.0%} of malignant lesions reached in the "
                            f"model's tests ({net.threshold:.0%}).", False)


# The manual checks no fit decides, as the model card lists them (the out-of-distribution check comes on top).
FIXED_CHECKS = {"not_dermoscopy": "not a colour dermoscopy image", "blank_image": "a blank frame",
                "no_lesion_found": "an image in which the model finds no lesion"}


def fixed_hard_flags(evidence: Evidence) -> list[Flag]:
    """The manual checks no fit decides (`FIXED_CHECKS`): an image the model was not made for, or one with nothing
    to assess."""
    hard: list[Flag] = []
    if not evidence.is_dermoscopic or (evidence.colourfulness is not None and evidence.colourfulness < 0.06):
        hard.append(Flag("not_dermoscopy", "This is not a colour dermoscopy image: the model was not made for it, "
                                           "so its output does not apply.", True))
    if evidence.contrast is not None and evidence.contrast < 4:
        hard.append(Flag("blank_image", "The image is almost uniform (blank or badly exposed): there is no lesion to "
                                        "assess.", True))
    if float(evidence.attention_grid.max() - evidence.attention_grid.min()) < 0.05:
        hard.append(Flag("no_lesion_found", "The model found no lesion to attend to in this image.", True))
    return hard


def beyond_training_data(distance: float | np.ndarray, threshold: float) -> np.ndarray:
    """The out-of-distribution rule, stated once for the fit and the app: further from the training images than
    the threshold (a scalar or one distance per image)."""
    return np.asarray(distance, dtype=float) > threshold


def needs_manual_check(flags: list[Flag]) -> bool:
    return any(flag.serious for flag in flags)
