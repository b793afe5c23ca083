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

import cv2
import numpy as np

from skinapp.vocab import CLASS_NAMES, CLASSES, MALIGNANT_INDICES, Metadata

FEATURES: tuple[str, ...] = (
    "uncertainty", "small_margin", "entropy", "view_disagreement", "malignancy_spread", "malignancy_closeness",
    "attention_regions", "border_fraction", "ood_distance", "knn_disagreement", "missing_metadata",
)
MAX_FLAGGED = 0.20


@dataclass(frozen=True)
class Flag:
    code: str        # stable identifier, e.g. "views_disagree"
    reason: str      # what the clinician reads
    serious: bool    # serious flags put the case up for a manual check


@dataclass(frozen=True)
class Evidence:
    """What the flags look at: one prediction's numbers (calibrated probabilities), independent of storage."""

    probabilities: np.ndarray          # (K,)
    view_probabilities: np.ndarray     # (members × views, K)
    attention_grid: np.ndarray         # (h, w) σ(M)
    is_dermoscopic: bool
    metadata: Metadata
    ood_distance: float | None = None  # `similar.TrainingDistribution.distance` of the image features
    neighbour_agreement: float | None = None  # share of the nearest labelled images with the predicted diagnosis
    colourfulness: float | None = None  # from `image_statistics`
    contrast: float | None = None


def image_statistics(image: np.ndarray) -> tuple[float, float]:
    """(mean HSV saturation in [0, 1], standard deviation of grey levels in [0, 255]) of an RGB image."""
    small = cv2.resize(image, (64, 64), interpolation=cv2.INTER_AREA)
    saturation = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)[..., 1].mean() / 255.0
    contrast = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).std()
    return float(saturation), float(contrast)


def malignancy_spread(view_probabilities: np.ndarray) -> float:
    return float(view_probabilities[:, list(MALIGNANT_INDICES)].sum(1).std())


def _attention_regions(attention: np.ndarray) -> tuple[np.ndarray, int]:
    """Otsu-thresholded attention and the number of separate regions larger than 5 % of the largest."""
    grey = (attention.clip(0, 1) * 255).astype(np.uint8)
    _, binary = cv2.threshold(grey, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    count, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    regions = int((areas >= 0.05 * areas.max()).sum()) if len(areas) else 0
    return binary.astype(bool), regions


def features(evidence: Evidence) -> dict[str, float]:
    """The warning signs as numbers, larger = more worrying."""
    p = np.clip(evidence.probabilities, 1e-12, 1)
    top2 = np.sort(p)[::-1][:2]
    votes = evidence.view_probabilities.argmax(1)
    malignancy = float(p[list(MALIGNANT_INDICES)].sum())
    mask, regions = _attention_regions(evidence.attention_grid)
    edge = np.concatenate([mask[0], mask[-1], mask[:, 0], mask[:, -1]])
    return {
        "uncertainty": float(1 - top2[0]),
        "small_margin": float(1 - (top2[0] - top2[1])),
        "entropy": float(-(p * np.log(p)).sum() / np.log(len(p))),
        "view_disagreement": float((votes != int(np.argmax(p))).mean()),
        "malignancy_spread": malignancy_spread(evidence.view_probabilities),
        "malignancy_closeness": float(1 - 2 * abs(malignancy - 0.5)),
        "attention_regions": float(regions),
        "border_fraction": float(edge.mean()) if mask.any() else 0.0,
        "ood_distance": float(evidence.ood_distance) if evidence.ood_distance is not None else 0.0,
        "knn_disagreement": 1.0 - evidence.neighbour_agreement if evidence.neighbour_agreement is not None else 0.0,
        "missing_metadata": float(len(evidence.metadata.missing_fields())),
    }


def _reason(name: str, evidence: Evidence, values: dict[str, float]) -> str:
    p = evidence.probabilities
    order = np.argsort(p)[::-1]
    first, second = CLASSES[int(order[0])], CLASSES[int(order[1])]
    malignancy = float(p[list(MALIGNANT_INDICES)].sum())
    votes = evidence.view_probabilities.argmax(1)
    return {
        "uncertainty": f"The model is not confident: its top diagnosis has only {p[order[0]]:.0%} (calibrated).",
        "small_margin": f"Close call between {CLASS_NAMES[first]} ({p[order[0]]:.0%}) and {CLASS_NAMES[second]} ({p[order[1]]:.0%}).",
        "entropy": "The probability is spread over several diagnoses.",
        "view_disagreement": f"The diagnosis changes when the image is flipped or turned: {(votes == order[0]).sum()} of "
                             f"{len(votes)} views agree.",
        "malignancy_spread": f"The malignancy probability varies by ±{values['malignancy_spread']:.0%} between views.",
        "malignancy_closeness": f"The malignancy probability ({malignancy:.0%}) is close to 50 %.",
        "attention_regions": f"The model's attention is split over {int(values['attention_regions'])} separate areas "
                             "instead of one lesion.",
        "border_fraction": "The lesion the model outlined runs into the image border: it may be cut off, or the model "
                           "looked at the edge of the picture.",
        "ood_distance": "This image is unlike the dermoscopy images the model learned from.",
        "knn_disagreement": f"Most of the labelled images the model finds most similar have another diagnosis than "
                            f"{CLASS_NAMES[first]}.",
        "missing_metadata": f"Not known: {', '.join(evidence.metadata.missing_fields())}. The model works without it, "
                            "slightly less accurately.",
    }[name]


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
    def provisional(cls) -> "FlagPolicy":
        return cls(thresholds={"small_margin": 0.90, "view_disagreement": 0.26, "malignancy_spread": 0.10,
                               "malignancy_closeness": 0.90, "attention_regions": 3, "border_fraction": 0.25,
                               "knn_disagreement": 0.6, "missing_metadata": 1})

    @classmethod
    def from_dict(cls, values: dict | None) -> "FlagPolicy":
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
            hard.append(Flag("out_of_distribution", _reason("ood_distance", evidence, values), True))
        if float(evidence.attention_grid.max() - evidence.attention_grid.min()) < 0.05:
            hard.append(Flag("no_lesion_found", "The model found no lesion to attend to in this image.", True))

        shown = [f for f in FEATURES if f in self.thresholds and f != "ood_distance" and values[f] >= self.thresholds[f]]
        risk = self.risk(values)
        if risk is not None:
            check = risk >= self.check_threshold
        else:  # provisional: any of the uncertainty signs
            check = any(f in {"small_margin", "view_disagreement", "malignancy_spread", "malignancy_closeness",
                              "attention_regions", "knn_disagreement"} for f in shown)
        soft = [Flag(name, _reason(name, evidence, values), check and name != "missing_metadata"
                     and name != "border_fraction") for name in shown]
        if check and not any(f.serious for f in soft):
            share = f"the {MAX_FLAGGED:.0%}" if self.weights else "the"
            soft.insert(0, Flag("combined_uncertainty", f"Several weaker warning signs together put this case among "
                                                        f"{share} cases the model is least sure about.", True))
        return hard + soft


def needs_manual_check(flags: list[Flag]) -> bool:
    return any(flag.serious for flag in flags)
