"""The card's description of the structure heads: their file, each structure's calibration and measured figures,
and which are shown to clinicians. Torch-free: pages and reports read it without loading the heads."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from skinapp.vocab import STRUCTURE_NAMES, STRUCTURES


@dataclass(frozen=True)
class StructureFigures:
    """One structure: how its head's output becomes a probability, and how well it was measured."""

    structure: str
    calibration: tuple[float, float]   # probability = σ(a · logit + b)
    auc: float                         # cross-validated on the labelled images, mean over seeds
    auc_low: float                     # 95 % bootstrap interval
    auc_high: float
    baseline_auc: float                # logistic regression on the members' plain pooled features
    positives: int
    ece: float                         # calibration error of the probabilities, cross-fitted
    shown: bool                        # measured well enough to be shown to clinicians

    @property
    def name(self) -> str:
        return STRUCTURE_NAMES[self.structure]

    def probability(self, logits: np.ndarray | float) -> np.ndarray:
        a, b = self.calibration
        return 1.0 / (1.0 + np.exp(-(a * np.asarray(logits, float) + b)))

    @classmethod
    def from_dict(cls, raw: dict) -> StructureFigures:
        return cls(**{**raw, "calibration": tuple(raw["calibration"])})


@dataclass(frozen=True)
class StructureSection:
    file: str
    sha256: str
    figures: tuple[StructureFigures, ...]
    images: int                        # labelled images measured on
    folds: int
    seeds: int
    min_auc_shown: float
    source: str                        # the labels' provenance
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if tuple(f.structure for f in self.figures) != STRUCTURES:
            raise ValueError(f"the structure heads read {[f.structure for f in self.figures]}, not {list(STRUCTURES)}")

    def of(self, structure: str) -> StructureFigures:
        return self.figures[STRUCTURES.index(structure)]

    @property
    def shown(self) -> tuple[StructureFigures, ...]:
        return tuple(f for f in self.figures if f.shown)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """(..., S) logits → calibrated probabilities, structure by structure (last axis)."""
        logits = np.asarray(logits, float)
        return np.stack([f.probability(logits[..., k]) for k, f in enumerate(self.figures)], axis=-1)

    def to_dict(self) -> dict:
        return {**asdict(self), "figures": [{**asdict(f), "calibration": list(f.calibration)} for f in self.figures]}

    @classmethod
    def from_dict(cls, raw: dict | None) -> StructureSection | None:
        if not raw:
            return None
        return cls(**{**raw, "figures": tuple(StructureFigures.from_dict(f) for f in raw["figures"])})

    def identity_content(self) -> dict:
        """What changes the outputs: the heads' weights and their calibration."""
        return {"sha256": self.sha256, "calibration": [list(f.calibration) for f in self.figures]}
