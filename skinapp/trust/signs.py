"""The warning signs, one class each (as pytorch-grad-cam has one class per method): what a sign measures on a
prediction, as a number where larger is more worrying, and the sentence a clinician reads when it is raised.

A sign's `code` is stable: fitted policies in model cards are keyed by it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np

from skinapp.trust.risk import HIGH_BENIGN_SHARE
from skinapp.trust.safety_net import SafetyNet
from skinapp.vocab import CLASS_NAMES, CLASSES, MALIGNANT_INDICES, Metadata

MALIGNANT_CLASSES = frozenset(CLASSES[k] for k in MALIGNANT_INDICES)


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
    call: int | None = None            # the top diagnosis shown (decision rule); None: the most probable class
    prediction_set: tuple[str, ...] | None = None  # the conformal set, top call first; None: the model has none
    safety_net: SafetyNet | None = None  # the melanoma safety net shipped with the model
    marked_suspicious: bool | None = None  # the net's decision where already taken (the prediction carries it)
    risk_tier: str | None = None       # trust.risk's tier, for models that grade the risk
    high_benign_share: float = HIGH_BENIGN_SHARE  # the share of held-out benign lesions that reach High

    @property
    def top_call(self) -> int:
        return int(np.argmax(self.probabilities)) if self.call is None else self.call

    @property
    def ranked(self) -> np.ndarray:
        """Class indices, most probable first."""
        return np.argsort(self.probabilities)[::-1]

    @property
    def malignancy(self) -> float:
        return float(self.probabilities[list(MALIGNANT_INDICES)].sum())

    @property
    def view_votes(self) -> np.ndarray:
        return self.view_probabilities.argmax(1)

    @property
    def suspicious(self) -> bool:
        if self.marked_suspicious is not None:
            return self.marked_suspicious
        return self.safety_net is not None and bool(self.safety_net.suspicious(self.malignancy))


def mutual_information(view_probabilities: np.ndarray) -> float:
    """Entropy of the mean over views and members minus their mean entropy (in nats): the part of the
    uncertainty that comes from the views and members disagreeing, not from each being unsure."""
    p = np.clip(view_probabilities, 1e-12, 1)
    mean = p.mean(0)
    return float(max(-(mean * np.log(mean)).sum() + (p * np.log(p)).sum(1).mean(), 0.0))


def image_statistics(image: np.ndarray) -> tuple[float, float]:
    """(mean HSV saturation in [0, 1], standard deviation of grey levels in [0, 255]) of an RGB image."""
    small = cv2.resize(image, (64, 64), interpolation=cv2.INTER_AREA)
    saturation = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)[..., 1].mean() / 255.0
    contrast = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).std()
    return float(saturation), float(contrast)


def malignancy_spread(view_probabilities: np.ndarray) -> float:
    return float(view_probabilities[:, list(MALIGNANT_INDICES)].sum(1).std())


def attention_regions(attention: np.ndarray) -> tuple[np.ndarray, int]:
    """Otsu-thresholded attention and the number of separate regions larger than 5 % of the largest."""
    grey = (attention.clip(0, 1) * 255).astype(np.uint8)
    _, binary = cv2.threshold(grey, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    _, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    regions = int((areas >= 0.05 * areas.max()).sum()) if len(areas) else 0
    return binary.astype(bool), regions


class Sign:
    """One warning sign."""

    code: ClassVar[str]
    name: ClassVar[str]                  # a few words, as a dermatologist would say it
    uncertainty: ClassVar[bool] = True   # raises the provisional check (no fitted policy) by itself
    can_be_serious: ClassVar[bool] = True  # shown as a reason for the manual check, not just for information

    def value(self, evidence: Evidence) -> float:
        raise NotImplementedError

    def reason(self, evidence: Evidence, value: float) -> str:
        raise NotImplementedError


class LowConfidence(Sign):
    code = "uncertainty"
    name = "low confidence"
    uncertainty = False

    def value(self, evidence: Evidence) -> float:
        return float(1 - evidence.probabilities[evidence.top_call])

    def reason(self, evidence: Evidence, value: float) -> str:
        return (f"The model is not confident: its top diagnosis, {CLASS_NAMES[CLASSES[evidence.top_call]]}, has only "
                f"{1 - value:.0%} (calibrated).")


class CloseCall(Sign):
    code = "small_margin"
    name = "close call between two diagnoses"

    def value(self, evidence: Evidence) -> float:
        first, second = np.sort(evidence.probabilities)[::-1][:2]
        return float(1 - (first - second))

    def reason(self, evidence: Evidence, value: float) -> str:
        p, (first, second) = evidence.probabilities, evidence.ranked[:2]
        return (f"Close call between {CLASS_NAMES[CLASSES[first]]} ({p[first]:.0%}) and "
                f"{CLASS_NAMES[CLASSES[second]]} ({p[second]:.0%}).")


class SpreadOverDiagnoses(Sign):
    code = "entropy"
    name = "probability spread over several diagnoses"
    uncertainty = False

    def value(self, evidence: Evidence) -> float:
        p = np.clip(evidence.probabilities, 1e-12, 1)
        return float(-(p * np.log(p)).sum() / np.log(len(p)))

    def reason(self, evidence: Evidence, value: float) -> str:
        return "The probability is spread over several diagnoses."


class ViewsDisagree(Sign):
    code = "view_disagreement"
    name = "diagnosis changes when the image is turned"

    def value(self, evidence: Evidence) -> float:
        return float((evidence.view_votes != int(np.argmax(evidence.probabilities))).mean())

    def reason(self, evidence: Evidence, value: float) -> str:
        votes = evidence.view_votes
        return (f"The diagnosis changes when the image is flipped or turned: {(votes == evidence.ranked[0]).sum()} of "
                f"{len(votes)} views agree.")


class MalignancyUnstable(Sign):
    code = "malignancy_spread"
    name = "unstable malignancy probability"

    def value(self, evidence: Evidence) -> float:
        return malignancy_spread(evidence.view_probabilities)

    def reason(self, evidence: Evidence, value: float) -> str:
        return f"The malignancy probability varies by ±{value:.0%} between views."


class MalignancyNearHalf(Sign):
    code = "malignancy_closeness"
    name = "malignancy probability near 50 %"

    def value(self, evidence: Evidence) -> float:
        return float(1 - 2 * abs(evidence.malignancy - 0.5))

    def reason(self, evidence: Evidence, value: float) -> str:
        return f"The malignancy probability ({evidence.malignancy:.0%}) is close to 50 %."


class ModelsDisagree(Sign):
    """Mutual information over test-time views and ensemble members (the "BALD" score of Houlsby et al. 2011)."""

    code = "mutual_information"
    name = "ensemble members and views disagree"

    def value(self, evidence: Evidence) -> float:
        return mutual_information(evidence.view_probabilities)

    def reason(self, evidence: Evidence, value: float) -> str:
        votes = evidence.view_votes
        named = ", ".join(f"{CLASS_NAMES[CLASSES[k]]} ({(votes == k).sum()})" for k in np.unique(votes)[::-1])
        return (f"The ensemble's networks and the flipped or turned views of the image do not tell the same story "
                f"(their votes: {named}).")


class SeveralDiagnosesPossible(Sign):
    code = "prediction_set_size"
    name = "several diagnoses possible"

    def value(self, evidence: Evidence) -> float:
        return float(len(evidence.prediction_set)) if evidence.prediction_set else 1.0

    def reason(self, evidence: Evidence, value: float) -> str:
        named = ", ".join(CLASS_NAMES[c] for c in evidence.prediction_set or ())
        return f"The model cannot narrow the diagnosis down: it is one of {named}."


class MalignancyNotRuledOut(Sign):
    code = "malignant_in_set"
    name = "malignancy not ruled out"

    def value(self, evidence: Evidence) -> float:
        if not evidence.prediction_set or CLASSES[evidence.top_call] in MALIGNANT_CLASSES:
            return 0.0
        return float(any(c in MALIGNANT_CLASSES for c in evidence.prediction_set))

    def reason(self, evidence: Evidence, value: float) -> str:
        malignant = [CLASS_NAMES[c] for c in evidence.prediction_set or () if c in MALIGNANT_CLASSES]
        return (f"A malignant diagnosis is not ruled out: {', '.join(malignant)} is among the possible diagnoses, "
                f"although the model's top call, {CLASS_NAMES[CLASSES[evidence.top_call]]}, is benign.")


class SplitAttention(Sign):
    """Tymchenko et al.: inconsistent attention maps predict errors."""

    code = "attention_regions"
    name = "attention split over several areas"

    def value(self, evidence: Evidence) -> float:
        return float(attention_regions(evidence.attention_grid)[1])

    def reason(self, evidence: Evidence, value: float) -> str:
        return f"The model's attention is split over {int(value)} separate areas instead of one lesion."


class AttentionAtBorder(Sign):
    code = "border_fraction"
    name = "lesion runs into the image border"
    uncertainty = False
    can_be_serious = False

    def value(self, evidence: Evidence) -> float:
        mask, _ = attention_regions(evidence.attention_grid)
        edge = np.concatenate([mask[0], mask[-1], mask[:, 0], mask[:, -1]])
        return float(edge.mean()) if mask.any() else 0.0

    def reason(self, evidence: Evidence, value: float) -> str:
        return ("The lesion the model outlined runs into the image border: it may be cut off, or the model looked at "
                "the edge of the picture.")


class UnlikeTrainingImages(Sign):
    code = "ood_distance"
    name = "image unlike the training images"
    uncertainty = False

    def value(self, evidence: Evidence) -> float:
        return float(evidence.ood_distance) if evidence.ood_distance is not None else 0.0

    def reason(self, evidence: Evidence, value: float) -> str:
        return "This image is unlike the dermoscopy images the model learned from."


class SimilarCasesDisagree(Sign):
    code = "knn_disagreement"
    name = "similar labelled cases have another diagnosis"

    def value(self, evidence: Evidence) -> float:
        return 1.0 - evidence.neighbour_agreement if evidence.neighbour_agreement is not None else 0.0

    def reason(self, evidence: Evidence, value: float) -> str:
        first = CLASSES[evidence.top_call]
        return f"Most of the labelled images the model finds most similar have another diagnosis than {CLASS_NAMES[first]}."


class MissingMetadata(Sign):
    code = "missing_metadata"
    name = "metadata missing"
    uncertainty = False
    can_be_serious = False

    def value(self, evidence: Evidence) -> float:
        return float(len(evidence.metadata.missing_fields()))

    def reason(self, evidence: Evidence, value: float) -> str:
        return (f"Not known: {', '.join(evidence.metadata.missing_fields())}. The model works without it, slightly "
                "less accurately.")


SIGNS: tuple[Sign, ...] = (
    LowConfidence(), CloseCall(), SpreadOverDiagnoses(), ViewsDisagree(), ModelsDisagree(), MalignancyUnstable(),
    MalignancyNearHalf(), SeveralDiagnosesPossible(), MalignancyNotRuledOut(), SplitAttention(), AttentionAtBorder(),
    UnlikeTrainingImages(), SimilarCasesDisagree(), MissingMetadata(),
)
SIGN_BY_CODE: dict[str, Sign] = {sign.code: sign for sign in SIGNS}
FEATURES: tuple[str, ...] = tuple(sign.code for sign in SIGNS)


def features(evidence: Evidence) -> dict[str, float]:
    """Every sign's value, larger = more worrying."""
    return {sign.code: sign.value(evidence) for sign in SIGNS}
