"""The one post-processing chain (after MONAI's inferer / post-transform split): the members' raw outputs for an
image → calibrated probabilities → the decision rule's call → the conformal set → the melanoma safety net →
the graded risk tier → the `Prediction`. The app, `predict`, `evaluate` and the benches all go through `PostProcessing.finish`, so
what `evaluate` measures is what the app shows. numpy only."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from skinapp.inference.outline import resize_map
from skinapp.inference.prediction import Prediction, RawOutputs
from skinapp.model.card import ModelCard
from skinapp.model.structure_card import StructureSection
from skinapp.trust.calibration import apply_temperature
from skinapp.trust.conformal import ConformalSets
from skinapp.trust.decision import DecisionRule
from skinapp.trust.risk import RiskTiers
from skinapp.trust.safety_net import SafetyNet
from skinapp.vocab import CLASSES, MALIGNANT_INDICES


@dataclass(frozen=True)
class PostProcessing:
    """Everything fitted on out-of-fold data that turns the networks' raw probabilities into what is shown.
    The default is the identity: raw probabilities, highest probability, no set, no net."""

    temperature: float = 1.0
    rule: DecisionRule = field(default_factory=DecisionRule)
    conformal: ConformalSets = field(default_factory=ConformalSets)
    safety_net: SafetyNet = field(default_factory=SafetyNet)
    risk_tiers: RiskTiers = field(default_factory=RiskTiers)
    structures: StructureSection | None = None  # the structure heads' calibration; None: no structures

    @classmethod
    def from_card(cls, card: ModelCard) -> PostProcessing:
        """The chain `evaluate` fitted and wrote into the card."""
        return cls(card.temperature, card.decision_rule, card.conformal, card.safety_net, card.risk_tiers,
                   card.structures)

    def calibrated(self, probabilities: np.ndarray) -> np.ndarray:
        return apply_temperature(probabilities, self.temperature)

    def finish(self, raw: RawOutputs, model_version: str, gradcam_grid: np.ndarray | None = None) -> Prediction:
        """The `Prediction` for one image. `gradcam_grid` is the map for the call (computed by the caller, which
        holds the network, once the call is known: `call_of`)."""
        probabilities = self.calibrated(raw.probabilities)
        scores = self.rule.scores(probabilities) if self.rule.active else None
        ranking = probabilities if scores is None else scores
        call = int(np.argmax(ranking))
        malignancy = float(probabilities[list(MALIGNANT_INDICES)].sum())
        return Prediction(
            probabilities=probabilities,
            view_probabilities=self.calibrated(raw.view_probabilities),
            embedding=raw.embedding,
            attention_grid=raw.attention_grid,
            refined_grid=raw.refined_grids[call],
            gradcam_grid=gradcam_grid,
            image_size=raw.image_size,
            model_version=model_version,
            metadata_used=raw.metadata_used,
            temperature=self.temperature,
            image_features=raw.image_features,
            decision_scores=scores,
            prediction_set=self.conformal.prediction_set(ranking) if self.conformal.active else None,
            suspicious=bool(self.safety_net.suspicious(malignancy)) if self.safety_net.active else None,
            risk_tier=self.risk_tiers.tier(malignancy, self.safety_net),
            **self._structures(raw),
        )

    def _structures(self, raw: RawOutputs) -> dict:
        """Calibrated structure probabilities, and per location on the lesion (weighted by σ(M) on their grid)."""
        if self.structures is None or raw.structure_logits is None or raw.structure_grids is None:
            return {}
        grids = np.moveaxis(self.structures.probabilities(np.moveaxis(raw.structure_grids, 0, -1)), -1, 0)
        on_lesion = resize_map(raw.attention_grid, *grids.shape[-2:]).clip(0, 1)
        return {"structures": self.structures.probabilities(raw.structure_logits),
                "structure_grids": (grids * on_lesion[None]).astype(np.float32)}

    def call_of(self, raw: RawOutputs) -> int:
        """The top call `finish` will make, without building the rest."""
        probabilities = self.calibrated(raw.probabilities)
        return int(np.argmax(self.rule.scores(probabilities)))


def with_held_out_sets(prediction: Prediction, set_mask: np.ndarray, suspicious: bool,
                       risk_tier: str | None = None) -> Prediction:
    """The prediction with its conformal set, safety-net mark and risk tier replaced by cross-fitted ones
    (thresholds fitted without the image's lesion), as `evaluate` measures images the fit itself saw."""
    ranking = prediction.probabilities if prediction.decision_scores is None else prediction.decision_scores
    members = tuple(CLASSES[k] for k in np.argsort(-ranking, kind="stable") if set_mask[k])
    return dataclasses.replace(prediction, prediction_set=members, suspicious=bool(suspicious),
                               risk_tier=risk_tier if risk_tier is not None else prediction.risk_tier)
