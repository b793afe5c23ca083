"""When to distrust the model: measured warning signs, each with a reason a clinician understands, combined
into one "needs manual check" decision.

Warning signs (features of one prediction):
- the diagnosis is uncertain: low calibrated confidence, small margin between the two top classes, high entropy;
- the model disagrees with itself across test-time views (flips, transpose) and ensemble members;
- the malignancy probability is unstable across views, or close to the 50 % line;
- the attention is inconsistent (Tymchenko et al.: such samples tend to be misclassified): split into several
  regions, or running into the image border;
- the image is far from the training images in the encoder's feature space (out of distribution), or the
  labelled images most like it in the model's embedding mostly have another diagnosis;
- metadata the model would have used is missing.

Some inputs are never scored silently: not a colour dermoscopy image, a blank frame, or an image far outside
the training data always needs a manual check. For the rest, `FlagPolicy` combines the signs with a logistic
model of "the model is wrong", fitted by `python -m skinapp evaluate` on out-of-fold predictions, with the
threshold set so that at most 20 % of held-out cases are flagged. Each sign also has its own threshold (the
90th percentile on held-out data) that decides which reasons are shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

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
    "FEATURES", "MAX_FLAGGED", "Evidence", "Flag", "FlagPolicy", "attention_regions", "features", "image_statistics",
    "malignancy_spread", "needs_manual_check",
]

MAX_FLAGGED = 0.20


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
        return cls(thresholds={"small_margin": 0.90, "view_disagreement": 0.26, "malignancy_spread": 0.10,
                               "malignancy_closeness": 0.90, "attention_regions": 3, "border_fraction": 0.25,
                               "knn_disagreement": 0.6, "missing_metadata": 1})

    @classmethod
    def from_dict(cls, values: dict | None) -> FlagPolicy:
        return cls(**values) if values else cls.provisional()

    def risk(self, values: dict[str, float]) -> float | None:
        """Estimated probability that the model is wrong on this case (None without a fitted model)."""
        if not self.weights:
            return None
        z = self.intercept + sum(w * (values[f] - self.means[f]) / self.scales[f] for f, w in self.weights.items())
        return float(1 / (1 + np.exp(-z)))

    def assess(self, evidence: Evidence) -> list[Flag]:
        values = features(evidence)
        hard: list[Flag] = []
        if not evidence.is_dermoscopic or (evidence.colourfulness is not None and evidence.colourfulness < 0.06):
            hard.append(Flag("not_dermoscopy", "This is not a colour dermoscopy image: the model was not made for it, "
                                               "so its output does not apply.", True))
        if evidence.contrast is not None and evidence.contrast < 4:
            hard.append(Flag("blank_image", "The image is almost uniform (blank or badly exposed): there is no lesion to "
                                            "assess.", True))
        if self.ood_threshold is not None and evidence.ood_distance is not None and evidence.ood_distance > self.ood_threshold:
            hard.append(Flag("out_of_distribution", SIGN_BY_CODE["ood_distance"].reason(evidence, values["ood_distance"]), True))
        if float(evidence.attention_grid.max() - evidence.attention_grid.min()) < 0.05:
            hard.append(Flag("no_lesion_found", "The model found no lesion to attend to in this image.", True))

        shown = [f for f in FEATURES if f in self.thresholds and f != "ood_distance" and values[f] >= self.thresholds[f]]
        risk = self.risk(values)
        if risk is not None and self.check_threshold is not None:
            check = risk >= self.check_threshold
        else:  # provisional (no fitted policy): any uncertainty sign raises the check
            check = any(SIGN_BY_CODE[f].uncertainty for f in shown)
        soft = [Flag(name, SIGN_BY_CODE[name].reason(evidence, values[name]), check and SIGN_BY_CODE[name].can_be_serious)
                for name in shown]
        if check and not any(f.serious for f in soft):
            share = f"the {MAX_FLAGGED:.0%}" if self.weights else "the"
            soft.insert(0, Flag("combined_uncertainty", f"Several weaker warning signs together put this case among "
                                                        f"{share} cases the model is least sure about.", True))
        return hard + soft


def needs_manual_check(flags: list[Flag]) -> bool:
    return any(flag.serious for flag in flags)
