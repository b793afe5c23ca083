"""What the networks say about one image (`RawOutputs`) and what the model says once post-processed
(`Prediction`). numpy only, so the app's pages can read one from the store without loading torch."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cached_property
from typing import Self

import numpy as np

from skinapp.inference.outline import LesionOutline, lesion_outline, resize_map
from skinapp.vocab import CLASSES, MALIGNANT_INDICES, STRUCTURES, Metadata


@dataclass(frozen=True)
class RawOutputs:
    """What the ensemble's members said about one image, before calibration, decision rule, sets and net: the
    inferer's output and the post-processing chain's input (`postprocess.PostProcessing`)."""

    view_probabilities: np.ndarray     # (members × views, K) softmax of each member on each test-time view
    attention_grid: np.ndarray         # (h, w) σ(M), averaged over members and views (mapped back to the identity view)
    refined_grids: np.ndarray          # (K, h, w) σ(M)·C for every class, averaged likewise
    embedding: np.ndarray              # (D,) L2-normalised, the members' embeddings side by side
    image_features: np.ndarray | None  # (C,) pooled top encoder features per member, side by side
    image_size: tuple[int, int]        # (height, width) of the analysed image
    metadata_used: Metadata = field(default_factory=Metadata)
    structure_logits: np.ndarray | None = None  # (S,) in STRUCTURES order, averaged over members and views
    structure_grids: np.ndarray | None = None   # (S, h, w) the same per location, mapped back to the identity view

    @property
    def probabilities(self) -> np.ndarray:
        """(K,) the plain average over members and views."""
        return self.view_probabilities.mean(axis=0)


@dataclass(frozen=True)
class Prediction:
    """Everything the model says about one image. Maps are kept on the model's grid and scaled on demand; the
    lesion outline is derived from the attention map at the analysed image's size, in one place (`outline`)."""

    probabilities: np.ndarray          # (K,) in CLASSES order, averaged over views and members, calibrated
    view_probabilities: np.ndarray     # (members × views, K), each calibrated the same way
    embedding: np.ndarray              # (D,) L2-normalised
    attention_grid: np.ndarray         # (h, w) σ(M) in [0, 1]
    refined_grid: np.ndarray           # (h, w) σ(M)·C for the predicted class, in logit units
    gradcam_grid: np.ndarray | None    # (h', w') in [0, 1] for the predicted class
    image_size: tuple[int, int]        # (height, width) of the analysed image
    model_version: str
    metadata_used: Metadata = field(default_factory=Metadata)
    temperature: float = 1.0           # the calibration applied (1.0: none)
    image_features: np.ndarray | None = None  # (C,) pooled top encoder features: what the out-of-distribution check reads
    decision_scores: np.ndarray | None = None  # (K,) the decision rule's scores; None: the top call is the highest probability
    prediction_set: tuple[str, ...] | None = None  # the conformal set, top call first; None: the model has none
    suspicious: bool | None = None     # at or above the melanoma safety net; None: the model has none
    risk_tier: str | None = None       # trust.risk: "high", "cannot_exclude" or "low"; None: the model has no tiers
    structures: np.ndarray | None = None       # (S,) calibrated probability of each of STRUCTURES; None: no heads
    structure_grids: np.ndarray | None = None  # (S, h, w) calibrated probability per location, on the lesion

    @cached_property
    def outline(self) -> LesionOutline:
        """Binary lesion mask, contour and bounding box at the analysed image's resolution (worked out once)."""
        return lesion_outline(self.attention_grid, *self.image_size)

    def shown_at(self, image_shape: tuple[int, ...]) -> Self:
        """The prediction as drawn on a copy of its image of another size (a zoom copy): maps and outline follow
        the copy. On the analysed image itself it is the prediction unchanged."""
        size = (int(image_shape[0]), int(image_shape[1]))
        return self if size == tuple(self.image_size) else dataclasses.replace(self, image_size=size)

    @property
    def predicted_index(self) -> int:
        """The top call: the decision rule's choice, which can differ from the highest probability."""
        return int(np.argmax(self.probabilities if self.decision_scores is None else self.decision_scores))

    @property
    def runner_up_class(self) -> str:
        """The second in the call's own ranking (the decision rule's scores, or the probabilities)."""
        ranking = self.probabilities if self.decision_scores is None else self.decision_scores
        return CLASSES[int(np.argsort(-ranking, kind="stable")[1])]

    @property
    def most_probable_class(self) -> str:
        return CLASSES[int(np.argmax(self.probabilities))]

    @property
    def predicted_class(self) -> str:
        return CLASSES[self.predicted_index]

    @property
    def malignancy(self) -> float:
        """P(MEL) + P(BCC) + P(AKIEC)."""
        return float(self.probabilities[list(MALIGNANT_INDICES)].sum())

    def class_probabilities(self) -> dict[str, float]:
        return {c: float(p) for c, p in zip(CLASSES, self.probabilities, strict=True)}

    def attention_map(self) -> np.ndarray:
        return resize_map(self.attention_grid, *self.image_size)

    def refined_mask(self) -> np.ndarray:
        return resize_map(self.refined_grid, *self.image_size)

    def structure_probabilities(self) -> dict[str, float]:
        """{structure: probability}; empty where the model reads no structures."""
        if self.structures is None:
            return {}
        return {s: float(p) for s, p in zip(STRUCTURES, self.structures, strict=True)}

    def structure_map(self, structure: str) -> np.ndarray | None:
        """Where the model sees `structure`, at the analysed image's size, in [0, 1]."""
        if self.structure_grids is None:
            return None
        return resize_map(self.structure_grids[STRUCTURES.index(structure)], *self.image_size).clip(0, 1)

    def gradcam(self) -> np.ndarray | None:
        return None if self.gradcam_grid is None else resize_map(self.gradcam_grid, *self.image_size).clip(0, 1)
