"""When to distrust the model: each flag is a measured property of one prediction with a reason in plain words.

The thresholds are provisional: on 400 held-out HAM10000 images (fold 0, shipped model) the serious flags
together marked about 21 % of cases and about half of the model's errors. Issue 5 replaces them with
thresholds chosen on all out-of-fold data (and adds calibrated probabilities and out-of-distribution
distance); the structure stays: a `Flag` per concern, `needs_manual_check` when any of them is serious.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from skinapp.vocab import CLASS_NAMES, CLASSES, MALIGNANT_INDICES, Metadata


@dataclass(frozen=True)
class Flag:
    code: str        # stable identifier, e.g. "views_disagree"
    reason: str      # what the clinician reads
    serious: bool    # serious flags put the case up for a manual check


@dataclass(frozen=True)
class Evidence:
    """What the flags look at: a prediction's numbers, independent of how it is stored."""

    probabilities: np.ndarray          # (K,)
    view_probabilities: np.ndarray     # (members × views, K)
    attention_grid: np.ndarray         # (h, w) σ(M)
    gradcam_grid: np.ndarray | None
    is_dermoscopic: bool
    metadata: Metadata


MARGIN = 0.10                    # top-1 minus top-2 probability below this: the diagnosis is a close call
VIEW_AGREEMENT = 0.75            # fewer views than this agreeing with the final diagnosis: unstable
MALIGNANCY_SPREAD = 0.10         # standard deviation of P(malignant) over views and members above this
MALIGNANCY_BAND = (0.45, 0.55)   # P(malignant) this close to 50 %: neither reassuring nor clear
BORDER_FRACTION = 0.25           # share of the image border covered by the attention mask
OUTSIDE_EVIDENCE = 0.9           # share of Grad-CAM mass outside the lesion outline (informative only: the
                                 # stride-32 Grad-CAM is coarse, and on held-out data this barely predicted errors)


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


def attention_flags(attention: np.ndarray, gradcam: np.ndarray | None) -> list[Flag]:
    """Tymchenko et al.: samples with inconsistent attention maps tend to be misclassified."""
    flags: list[Flag] = []
    if float(attention.max() - attention.min()) < 0.05:
        return [Flag("no_lesion_found", "The model found no lesion to attend to in this image.", True)]
    mask, regions = _attention_regions(attention)
    if regions > 2:
        flags.append(Flag("fragmented_attention", f"The model's attention is split over {regions} separate areas "
                                                  "instead of one lesion.", True))
    edge = np.concatenate([mask[0], mask[-1], mask[:, 0], mask[:, -1]])
    if mask.any() and edge.mean() > BORDER_FRACTION:
        flags.append(Flag("touches_border", "The lesion the model outlined runs into the image border: it may be "
                                            "cut off, or the model looked at the edge of the picture.", False))
    if gradcam is not None and mask.any():
        cam = cv2.resize(gradcam.astype(np.float32), mask.shape[::-1], interpolation=cv2.INTER_LINEAR).clip(0, None)
        if cam.sum() > 0:
            outside = float(cam[~mask].sum() / cam.sum())
            if outside > OUTSIDE_EVIDENCE:
                flags.append(Flag("evidence_outside_lesion", f"{outside:.0%} of the evidence for the diagnosis lies "
                                                             "outside the lesion outline.", False))
    return flags


def flag_prediction(evidence: Evidence) -> list[Flag]:
    flags: list[Flag] = []
    if not evidence.is_dermoscopic:
        flags.append(Flag("not_dermoscopy", "This is not a colour dermoscopy image: the model was not made for it, "
                                            "so its output does not apply.", True))
    probabilities = evidence.probabilities
    order = np.argsort(probabilities)[::-1]
    first, second = int(order[0]), int(order[1])
    if probabilities[first] - probabilities[second] < MARGIN:
        flags.append(Flag("close_call", f"Close call between {CLASS_NAMES[CLASSES[first]]} ({probabilities[first]:.0%}) "
                                        f"and {CLASS_NAMES[CLASSES[second]]} ({probabilities[second]:.0%}).", True))
    votes = evidence.view_probabilities.argmax(1)
    agreement = float((votes == first).mean())
    if agreement < VIEW_AGREEMENT:
        flags.append(Flag("views_disagree", f"The diagnosis changes when the image is flipped or turned: only "
                                            f"{(votes == first).sum()} of {len(votes)} views agree.", True))
    spread = malignancy_spread(evidence.view_probabilities)
    if spread > MALIGNANCY_SPREAD:
        flags.append(Flag("malignancy_unstable", f"The malignancy probability varies by ±{spread:.0%} between views.", True))
    malignancy = float(probabilities[list(MALIGNANT_INDICES)].sum())
    if MALIGNANCY_BAND[0] <= malignancy <= MALIGNANCY_BAND[1]:
        flags.append(Flag("malignancy_uncertain", f"The malignancy probability ({malignancy:.0%}) is in the uncertain "
                                                  "middle range.", True))
    flags += attention_flags(evidence.attention_grid, evidence.gradcam_grid)
    missing = evidence.metadata.missing_fields()
    if missing:
        flags.append(Flag("missing_metadata", f"Not known: {', '.join(missing)}. The model works without it, "
                                              "slightly less accurately.", False))
    return flags


def needs_manual_check(flags: list[Flag]) -> bool:
    return any(flag.serious for flag in flags)
