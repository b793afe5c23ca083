"""The dermoscopic structures a result reports, in a clinician's words: only those measured well enough, each with
its probability and measured AUC, and a caption saying what the list is and what is left out."""

from __future__ import annotations

from dataclasses import dataclass

from skinapp.inference.prediction import Prediction
from skinapp.model.structure_card import StructureSection
from skinapp.reporting.text import percent_text


@dataclass(frozen=True)
class StructureLine:
    structure: str
    name: str
    probability: str                   # "72 %"
    auc: str                           # "measured AUC 0.81 (0.76–0.85)"
    likely: bool                       # at 50 % or more


def structure_lines(stored: Prediction, section: StructureSection | None) -> tuple[list[StructureLine], str]:
    """The structures shown to clinicians (measured AUC ≥ the card's minimum), most probable first, and a caption
    naming those left out and why. `section`: the card of the model that made the result (None: not installed)."""
    found = stored.structure_probabilities()
    if not found or section is None:
        return [], ""
    lines = sorted((StructureLine(f.structure, f.name, percent_text(found[f.structure]),
                                  f"measured AUC {f.auc:.2f} ({f.auc_low:.2f}–{f.auc_high:.2f})", found[f.structure] >= 0.5)
                    for f in section.shown), key=lambda line: -found[line.structure])
    hidden = [f.name for f in section.figures if not f.shown]
    caption = ("Hints, not a 7-point checklist score: each probability is the model's, calibrated on "
               f"{section.images} labelled images; AUC says how well it told presence from absence there.")
    if hidden:
        caption += (f" Not shown: {', '.join(hidden)} (measured AUC below {section.min_auc_shown:.2f}, too unreliable "
                    "to show).")
    return lines, caption
