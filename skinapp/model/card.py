"""The model bundle's metadata, typed and versioned (after MONAI bundles): `model_card.json`, the single source
the code reads to build, feed and trust the model. No torch here, so the pages that only show results and the
card never load it.

Schema 3 (this code): every fitted part is a typed record (architecture, preprocessing, calibration, decision
rule, conformal sets, safety net, risk tiers, flag policy, similar-case index), and so is what was measured,
`metrics` (written by `evaluate`, typed in `measured.py`); what produced the weights is in `training`. Schema 2
cards (0.1 and 0.2 releases) are migrated on load; a newer schema than this code knows is refused with a plain
message.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from skinapp.model.architecture import ModelConfig
from skinapp.model.measured import CardMetrics
from skinapp.model.preprocess import Preprocessing
from skinapp.model.structure_card import StructureSection
from skinapp.trust.conformal import ConformalSets
from skinapp.trust.decision import DecisionRule
from skinapp.trust.flags import FlagPolicy
from skinapp.trust.risk import RiskTiers
from skinapp.trust.safety_net import SafetyNet
from skinapp.vocab import CLASSES, metadata_encoding

CARD_FILE = "model_card.json"
CARD_SCHEMA = 3
TTA_CHOICES = (1, 4, 8)  # test-time views a card may ask for (`inference.views`)


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


@dataclass(frozen=True)
class Calibration:
    """Temperature scaling fitted on out-of-fold predictions; 1.0: not calibrated. Its measured effect is in
    `metrics.calibration`."""

    temperature: float = 1.0
    method: str = ""

    @property
    def fitted(self) -> bool:
        return self.temperature != 1.0 or bool(self.method)


@dataclass(frozen=True)
class IndexEntry:
    """The similar-case / out-of-distribution index shipped beside the weights."""

    file: str
    sha256: str
    images: int = 0


@dataclass
class ModelCard:
    """`identity` hashes everything in the card that changes an output (weights, class order, metadata encoding,
    preprocessing, test-time views, calibration, decision rule, conformal sets, safety net, flag policy,
    similar-case index), so a recalibration is a new model as far as stored predictions are concerned."""

    version: str
    config: ModelConfig
    members: list[Member]
    preprocessing: Preprocessing = field(default_factory=Preprocessing)  # default: a model from before colour constancy
    tta_views: int = 4
    calibration: Calibration = field(default_factory=Calibration)
    decision_rule: DecisionRule = field(default_factory=DecisionRule)   # default: the highest probability
    conformal: ConformalSets = field(default_factory=ConformalSets)     # default: no prediction sets
    safety_net: SafetyNet = field(default_factory=SafetyNet)           # default: no safety net
    risk_tiers: RiskTiers = field(default_factory=RiskTiers)           # default: no graded risk
    flag_policy: FlagPolicy | None = None    # None: not fitted, the provisional policy applies
    index: IndexEntry | None = None
    structures: StructureSection | None = None  # the dermoscopic-structure heads (None: the model reads none)
    classes: list[str] = field(default_factory=lambda: list(CLASSES))        # the order of the network's outputs
    metadata_encoding: dict = field(default_factory=metadata_encoding)      # what the metadata input means
    training: dict = field(default_factory=dict)   # provenance: the recipe and data that produced the weights
    metrics: CardMetrics = field(default_factory=CardMetrics)   # what `evaluate` measured (the card's figures)
    schema: int = CARD_SCHEMA

    def __post_init__(self) -> None:
        # The network's input size is the architecture's: one value, wherever it is read.
        if self.preprocessing.image_size != self.config.image_size:
            self.preprocessing = Preprocessing.from_dict({**self.preprocessing.to_dict(),
                                                          "image_size": self.config.image_size})

    @property
    def temperature(self) -> float:
        return self.calibration.temperature

    @property
    def policy(self) -> FlagPolicy:
        return self.flag_policy if self.flag_policy is not None else FlagPolicy.provisional()

    @property
    def identity(self) -> str:
        """sha256 of everything in the card that changes what the model outputs (not the measured figures).
        Defined so that a card's identity is the same before and after the schema 2 → 3 migration."""
        content = {
            "members": [m.sha256 for m in self.members], "config": asdict(self.config), "classes": self.classes,
            "metadata_encoding": self.metadata_encoding, "preprocessing": self.preprocessing.to_dict(),
            "tta_views": self.tta_views, "temperature": self.temperature,
            "decision_rule": self.decision_rule.to_dict() if self.decision_rule != DecisionRule() else {},
            "flag_policy": vars(self.flag_policy) if self.flag_policy is not None else {},
            "index": self.index.sha256 if self.index is not None else None,
        }
        if self.conformal.active or self.safety_net.active:  # keeps the identity of cards from before these existed
            content.update(conformal=self.conformal.to_dict() if self.conformal.active else {},
                           safety_net=self.safety_net.to_dict() if self.safety_net.active else {})
        if self.risk_tiers.active:
            content.update(risk_tiers=self.risk_tiers.to_dict())
        if self.structures is not None:
            content.update(structures=self.structures.identity_content())
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()

    def check_compatible(self) -> None:
        """The code's class order and metadata encoding must be the ones the model was trained with."""
        if list(self.classes) != list(CLASSES):
            raise WeightsError(f"the model's classes {self.classes} are not this program's {list(CLASSES)}")
        if self.metadata_encoding != metadata_encoding():
            raise WeightsError("the model was trained with another metadata encoding than this program's; "
                               "use the skinapp release it was made with")
        if self.decision_rule.prior and len(self.decision_rule.prior) != len(self.classes):
            raise WeightsError("the model card's decision rule does not have one prior per class")
        if self.tta_views not in TTA_CHOICES:
            raise WeightsError(f"the model card asks for {self.tta_views} test-time views; {TTA_CHOICES} are possible")

    def to_dict(self) -> dict:
        return {
            "schema": self.schema, "version": self.version, "config": asdict(self.config),
            "members": [asdict(m) for m in self.members],
            "preprocessing": {k: v for k, v in self.preprocessing.to_dict().items() if k != "image_size"},
            "tta_views": self.tta_views, "calibration": asdict(self.calibration),
            "decision_rule": self.decision_rule.to_dict(), "conformal": self.conformal.to_dict(),
            "safety_net": self.safety_net.to_dict(), "risk_tiers": self.risk_tiers.to_dict(),
            "flag_policy": vars(self.flag_policy) if self.flag_policy is not None else None,
            "index": asdict(self.index) if self.index is not None else None,
            "structures": self.structures.to_dict() if self.structures is not None else None,
            "classes": self.classes, "metadata_encoding": self.metadata_encoding, "training": self.training,
            "metrics": self.metrics.to_dict(),
        }

    @classmethod
    def from_dict(cls, raw: dict) -> ModelCard:
        """A card of this schema, or an older one migrated; raises ValueError, TypeError or KeyError if malformed."""
        raw = migrated(raw)
        config = ModelConfig(**raw["config"])
        return cls(
            version=raw["version"], config=config, members=[Member(**m) for m in raw["members"]],
            preprocessing=Preprocessing.from_dict({**(raw.get("preprocessing") or {}), "image_size": config.image_size}),
            tta_views=int(raw.get("tta_views", 4)), calibration=Calibration(**(raw.get("calibration") or {})),
            decision_rule=DecisionRule.from_dict(raw.get("decision_rule")),
            conformal=ConformalSets.from_dict(raw.get("conformal")), safety_net=SafetyNet.from_dict(raw.get("safety_net")),
            risk_tiers=RiskTiers.from_dict(raw.get("risk_tiers")),
            flag_policy=FlagPolicy(**raw["flag_policy"]) if raw.get("flag_policy") else None,
            index=IndexEntry(**raw["index"]) if raw.get("index") else None,
            structures=StructureSection.from_dict(raw.get("structures")),
            classes=list(raw.get("classes", CLASSES)), metadata_encoding=raw.get("metadata_encoding", metadata_encoding()),
            training=raw.get("training") or {}, metrics=CardMetrics.from_dict(raw.get("metrics") or {}),
            schema=CARD_SCHEMA,
        )

    def save(self, folder: Path) -> None:
        (Path(folder) / CARD_FILE).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> ModelCard:
        path = Path(folder) / CARD_FILE
        if not path.is_file():
            raise WeightsError(f"no trained model in {folder}: {CARD_FILE} is missing")
        try:
            raw = json.loads(path.read_text())
        except ValueError as exc:
            raise WeightsError(f"{path} is not a valid model card: {exc}") from exc
        if not isinstance(raw, dict):
            raise WeightsError(f"{path} is not a valid model card: not a JSON object")
        schema = raw.get("schema", 2)
        if not isinstance(schema, int) or isinstance(schema, bool):
            raise WeightsError(f"{path} is not a valid model card: its schema is not a number ({schema!r})")
        if schema > CARD_SCHEMA:
            raise WeightsError(f"{path} is a model card of schema {schema}, newer than this skinapp understands "
                               f"(up to {CARD_SCHEMA}); install the skinapp release the model was made for")
        if schema < 2:
            raise WeightsError(f"{path} is a model card of schema {schema}, from before typed cards; retrain or "
                               "re-evaluate the model with this skinapp")
        try:
            card = cls.from_dict(raw)
        except (ValueError, TypeError, KeyError) as exc:
            raise WeightsError(f"{path} is not a valid model card: {exc}") from exc
        card.check_compatible()
        return card


def migrated(raw: dict) -> dict:
    """A card dict brought to the current schema. 2 → 3: `calibration` keeps only what was fitted (the measured
    errors it also held are in `metrics["calibration"]`, where they move if absent); empty sections become
    their defaults (`flag_policy` and `index`: null)."""
    raw = dict(raw)
    if raw.get("schema", 2) == 2:
        calibration = dict(raw.get("calibration") or {})
        fitted = {k: calibration.pop(k) for k in ("temperature", "method") if k in calibration}
        if calibration:
            metrics = dict(raw.get("metrics") or {})
            metrics.setdefault("calibration", {**fitted, **calibration})
            raw["metrics"] = metrics
        raw["calibration"] = fitted
        raw["flag_policy"] = raw.get("flag_policy") or None
        raw["index"] = raw.get("index") or None
        raw["schema"] = 3
    return raw
