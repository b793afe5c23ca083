"""Risk levels a clinic's administrator adopted in place of the card's: the safety net's and High's, refitted on the
clinic's own verified lesions (`skinapp.workflow.clinic_record.refit_levels`).

Adopted levels change what the model outputs (the tier, the safety net's mark, the flags that follow from it), so the
model with them is another model: `applied_to` gives a card whose identity differs from the shipped one, and every
result made with it is bound to that identity and names the levels in its version. Results made before keep the
identity they were made with. The levels belong to one card: they are never applied to another model."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, replace

from skinapp.model.card import ModelCard, WeightsError


@dataclass(frozen=True)
class ClinicLevels:
    base_identity: str        # the identity of the card the levels were fitted for
    net: float                # the safety net's level: Cannot exclude from here up
    high: float               # High from here up
    adopted_by: str
    adopted_at: dt.datetime
    malignant: int            # verified lesions the refit was fitted on
    benign: int
    kept_held_out: float      # verified malignant lesions kept in High or Cannot exclude, cross-validated by patient

    def __post_init__(self) -> None:
        if not (math.isfinite(self.net) and math.isfinite(self.high) and 0.0 < self.net <= 1.0 and 0.0 < self.high <= 1.0):
            raise ValueError(f"the levels {self.net!r} and {self.high!r} are not malignancy probabilities")

    @property
    def label(self) -> str:
        """"clinic levels of 2026-12-06": what a result's version says of them."""
        return f"clinic levels of {self.adopted_at:%Y-%m-%d}"

    def applied_to(self, card: ModelCard) -> ModelCard:
        """The card with these levels: another identity, the same weights. WeightsError for another model's card."""
        if card.identity != self.base_identity:
            raise WeightsError(f"the clinic's risk levels were adopted for model {self.base_identity[:12]}, not for the "
                               f"installed model {card.identity[:12]}; they are not applied")
        return replace(card, version=f"{card.version} with {self.label}",
                       safety_net=replace(card.safety_net, threshold=self.net),
                       risk_tiers=replace(card.risk_tiers, high=max(self.high, self.net)))

    def to_details(self) -> dict:
        """What the audit entry that adopts them holds: everything needed to apply them again."""
        return {"base_identity": self.base_identity, "net": self.net, "high": self.high, "malignant": self.malignant,
                "benign": self.benign, "kept_held_out": self.kept_held_out}

    @classmethod
    def from_details(cls, details: dict, adopted_by: str, adopted_at: dt.datetime) -> ClinicLevels:
        return cls(str(details["base_identity"]), float(details["net"]), float(details["high"]), adopted_by, adopted_at,
                   int(details["malignant"]), int(details["benign"]), float(details["kept_held_out"]))
