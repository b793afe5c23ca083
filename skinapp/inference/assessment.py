"""`Assessor`: the fitted flag policy and the similar-case index that ship with the weights, applied to a
prediction. Weights without them (an untrained test model, an older card) get provisional flags and no
similar cases, and say so."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from skinapp.config import training_images_dir
from skinapp.inference.prediction import Prediction
from skinapp.model.card import ModelCard, WeightsError, sha256_of
from skinapp.trust.flags import Evidence, Flag, FlagPolicy, image_statistics
from skinapp.trust.safety_net import SafetyNet
from skinapp.trust.similar import EmbeddingIndex, Neighbour, TrainingDistribution, load_index


@dataclass
class Assessor:
    policy: FlagPolicy
    index: EmbeddingIndex | None = None
    distribution: TrainingDistribution | None = None
    safety_net: SafetyNet | None = None

    @classmethod
    def from_weights(cls, folder: Path | None, card: ModelCard) -> Assessor:
        index = distribution = None
        if folder is not None and card.index is not None:
            path = Path(folder) / card.index.file
            if not path.is_file() or sha256_of(path) != card.index.sha256:
                raise WeightsError(f"{path} is missing or does not match the model card")
            index, distribution = load_index(path)
        net = card.safety_net
        return cls(card.policy, index, distribution, net if net.active else None)

    def under(self, card: ModelCard) -> Assessor:
        """The same checks reading the safety net of `card`, a card of the same weights with other risk levels (the
        clinic's adopted levels); itself where that net is the one it reads already, or the card has none."""
        if not card.safety_net.active or card.safety_net == self.safety_net:
            return self
        return dataclasses.replace(self, safety_net=card.safety_net)

    def member_view(self, member: int, n_members: int) -> Assessor:
        """The same checks for a prediction made by one ensemble member alone (as `evaluate` scores an image with
        the member that never trained on it): its neighbours and distances in that member's own space."""
        return Assessor(self.policy, self.index.member_view(member, n_members) if self.index is not None else None,
                        self.distribution.member(member) if self.distribution is not None else None, self.safety_net)

    def evidence(self, prediction: Prediction, image: np.ndarray | None, is_dermoscopic: bool,
                 exclude_lesion: str | None = None) -> Evidence:
        """`exclude_lesion`: a labelled lesion whose images may not count as its neighbours (`evaluate`, so that
        no held-out image finds itself)."""
        far = (self.distribution.distance(prediction.image_features)
               if self.distribution is not None and prediction.image_features is not None else None)
        agreement = (self.index.agreement(prediction.embedding, prediction.predicted_class, exclude_lesion=exclude_lesion)
                     if self.index else None)
        return evidence_of(prediction, image, is_dermoscopic, ood_distance=far, neighbour_agreement=agreement,
                           safety_net=self.safety_net)

    def assess(self, prediction: Prediction, image: np.ndarray | None, is_dermoscopic: bool = True,
               exclude_lesion: str | None = None) -> list[Flag]:
        return self.policy.assess(self.evidence(prediction, image, is_dermoscopic, exclude_lesion))

    def similar_cases(self, embedding: np.ndarray, k: int = 5) -> list[Neighbour]:
        return self.index.neighbours(embedding, k) if self.index is not None else []


def evidence_of(prediction: Prediction, image: np.ndarray | None, is_dermoscopic: bool = True, *,
                ood_distance: float | None = None, neighbour_agreement: float | None = None,
                safety_net: SafetyNet | None = None) -> Evidence:
    """What the flags read about one prediction: the one place `Evidence` is built, for the app and `evaluate`."""
    colourfulness, contrast = image_statistics(image) if image is not None else (None, None)
    return Evidence(
        prediction.probabilities, prediction.view_probabilities, prediction.attention_grid, is_dermoscopic,
        prediction.metadata_used, ood_distance=ood_distance, neighbour_agreement=neighbour_agreement,
        colourfulness=colourfulness, contrast=contrast, call=prediction.predicted_index,
        prediction_set=prediction.prediction_set, safety_net=safety_net,
        marked_suspicious=prediction.suspicious, risk_tier=prediction.risk_tier,  # decided once, by the chain
    )


def training_image_path(image_id: str) -> Path | None:
    """Where a similar case's picture is, when the training data folder is configured (SKINAPP_TRAINING_IMAGES)."""
    folder = training_images_dir()
    if folder is None:
        return None
    path = folder / f"{image_id}.jpg"
    return path if path.is_file() else None
