"""Weights on disk: safetensors files (never pickle) described by `model_card.json`, each with its sha256."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from skinapp.inference.postprocess import PostProcessing
from skinapp.inference.views import TTA_CHOICES
from skinapp.model.network import LesionNet, ModelConfig
from skinapp.model.preprocess import Preprocessing
from skinapp.trust.conformal import ConformalSets
from skinapp.trust.decision import DecisionRule
from skinapp.trust.safety_net import SafetyNet
from skinapp.vocab import CLASSES, metadata_encoding

CARD_FILE = "model_card.json"


class WeightsError(RuntimeError):
    """The weights folder is missing, incomplete, or does not match its model card."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Member:
    """One trained network of the ensemble: its file and the fold it never saw in training."""

    file: str
    sha256: str
    validation_fold: int
    best_epoch: int = -1   # the epoch kept: the last one when the schedule is fixed (no selection on the fold)
    history: str = ""      # its per-epoch training log, beside the weights


CARD_SCHEMA = 2


@dataclass
class ModelCard:
    """The model bundle's metadata (after MONAI bundles): what the code reads to build, feed and trust the model.

    `identity` hashes everything in it that changes an output (weights, class order, metadata encoding,
    preprocessing, test-time views, calibration, decision rule, conformal sets, safety net, flag policy,
    similar-case index), so a
    recalibration is a new model as far as stored predictions are concerned."""

    version: str
    config: dict
    members: list[Member]
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    calibration: dict = field(default_factory=dict)   # {"temperature": T, ...} fitted on out-of-fold data
    flag_policy: dict = field(default_factory=dict)   # flags.FlagPolicy fields, fitted on out-of-fold data
    index: dict = field(default_factory=dict)         # {"file": "embeddings.npz", "sha256": ...}
    preprocessing: dict = field(default_factory=dict)  # Preprocessing fields; empty: a model from before colour constancy
    decision_rule: dict = field(default_factory=dict)  # decision.DecisionRule fields, fitted on out-of-fold data; empty: argmax
    tta_views: int = 4                                 # test-time views the shipped model runs (1, 4 or 8)
    conformal: dict = field(default_factory=dict)     # conformal.ConformalSets fields; empty: no prediction sets
    safety_net: dict = field(default_factory=dict)    # safety_net.SafetyNet fields; empty: no safety net
    classes: list[str] = field(default_factory=lambda: list(CLASSES))       # the order of the network's outputs
    metadata_encoding: dict = field(default_factory=metadata_encoding)     # what the metadata input means
    schema: int = CARD_SCHEMA

    @property
    def temperature(self) -> float:
        return float(self.calibration.get("temperature", 1.0))

    @property
    def model_config(self) -> ModelConfig:
        return ModelConfig(**self.config)

    @property
    def preprocessing_spec(self) -> Preprocessing:
        return Preprocessing.from_dict({**self.preprocessing, "image_size": self.model_config.image_size})

    @property
    def rule(self) -> DecisionRule:
        return DecisionRule.from_dict(self.decision_rule)

    @property
    def conformal_sets(self) -> ConformalSets:
        return ConformalSets.from_dict(self.conformal)

    @property
    def melanoma_safety_net(self) -> SafetyNet:
        return SafetyNet.from_dict(self.safety_net)

    @property
    def postprocessing(self) -> PostProcessing:
        """The fitted chain from the networks' raw outputs to what is shown (`inference.postprocess`)."""
        return PostProcessing(self.temperature, self.rule, self.conformal_sets, self.melanoma_safety_net)

    @property
    def identity(self) -> str:
        """sha256 of everything in the card that changes what the model outputs (not the measured figures)."""
        content = {
            "members": [m.sha256 for m in self.members], "config": self.config, "classes": self.classes,
            "metadata_encoding": self.metadata_encoding, "preprocessing": self.preprocessing_spec.to_dict(),
            "tta_views": self.tta_views, "temperature": self.temperature, "decision_rule": self.decision_rule,
            "flag_policy": self.flag_policy, "index": self.index.get("sha256"),
        }
        if self.conformal or self.safety_net:  # keeps the identity of cards from before these existed
            content.update(conformal=self.conformal, safety_net=self.safety_net)
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()

    def check_compatible(self) -> None:
        """The code's class order and metadata encoding must be the ones the model was trained with."""
        if list(self.classes) != list(CLASSES):
            raise WeightsError(f"the model's classes {self.classes} are not this program's {list(CLASSES)}")
        if self.metadata_encoding != metadata_encoding():
            raise WeightsError("the model was trained with another metadata encoding than this program's; "
                               "use the skinapp release it was made with")
        try:
            self.preprocessing_spec  # noqa: B018  (built to validate)
            rule = self.rule
            self.conformal_sets  # noqa: B018
            self.melanoma_safety_net  # noqa: B018
        except (TypeError, ValueError) as exc:
            raise WeightsError(f"the model card's preprocessing or decision rule is not valid: {exc}") from exc
        if rule.prior and len(rule.prior) != len(self.classes):
            raise WeightsError("the model card's decision rule does not have one prior per class")
        if self.tta_views not in TTA_CHOICES:
            raise WeightsError(f"the model card asks for {self.tta_views} test-time views; {TTA_CHOICES} are possible")

    def save(self, folder: Path) -> None:
        (Path(folder) / CARD_FILE).write_text(json.dumps(asdict(self), indent=2, sort_keys=False) + "\n")

    @classmethod
    def load(cls, folder: Path) -> ModelCard:
        path = Path(folder) / CARD_FILE
        if not path.is_file():
            raise WeightsError(f"no trained model in {folder}: {CARD_FILE} is missing")
        try:
            raw = json.loads(path.read_text())
            raw["members"] = [Member(**m) for m in raw["members"]]
            card = cls(**raw)
        except (ValueError, TypeError, KeyError) as exc:
            raise WeightsError(f"{path} is not a valid model card: {exc}") from exc
        card.check_compatible()
        return card


def save_weights(model: LesionNet, path: Path, half: bool = False) -> str:
    """Write the state dict as safetensors with the config embedded; returns the file's sha256.

    `half` stores floating-point tensors as fp16 (half the size; loading casts them back to fp32)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    save_file(state, str(path), metadata={"config": model.config.to_json()})
    return sha256_of(path)


def load_member(folder: Path, member: Member, config: ModelConfig, device: str | torch.device = "cpu") -> LesionNet:
    path = Path(folder) / member.file
    if not path.is_file():
        raise WeightsError(f"weight file {path} named in the model card is missing")
    actual = sha256_of(path)
    if actual != member.sha256:
        raise WeightsError(
            f"weight file {path} does not match the model card (sha256 {actual[:12]}… instead of {member.sha256[:12]}…);"
            " it was changed or corrupted — restore it from the release"
        )
    model = LesionNet(config, pretrained_encoder=False)
    try:
        state = load_file(str(path))
    except SafetensorError as exc:
        raise WeightsError(f"weight file {path} is not a safetensors file ({exc}); it is never unpickled") from exc
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError) as exc:
        raise WeightsError(f"weight file {path} does not fit the architecture in the model card: {exc}") from exc
    return model.to(device).eval()


def load_ensemble(folder: Path, device: str | torch.device = "cpu") -> tuple[list[LesionNet], ModelCard]:
    card = ModelCard.load(folder)
    if not card.members:
        raise WeightsError(f"the model card in {folder} lists no weight files")
    return [load_member(folder, m, card.model_config, device) for m in card.members], card
