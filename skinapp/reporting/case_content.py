"""What a case report says, once, as data: the HTML and the PDF report draw the same content.

Built from stored records only (no model is loaded): the pictures are the stored image with the stored maps
drawn over it, each with a label saying what it shows."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from skinapp.inference.measurements import LesionMeasurements, measured_outline
from skinapp.io.pixels import jpeg_bytes
from skinapp.model.measured import CardMetrics
from skinapp.model.structure_card import StructureSection
from skinapp.reporting.overlay import LAYER_LEGENDS, OVERLAYS, overlay
from skinapp.reporting.structure_text import structure_lines
from skinapp.reporting.text import class_recall_text, decision_rule_text, percent_text
from skinapp.store import Decision, Outcome, StoredCase, StoredPrediction
from skinapp.store.records import DIAMETER, Measurement
from skinapp.vocab import CLASS_NAMES, CLASSES

DISCLAIMER = "Decision support only: the model's output is not a diagnosis."
REPORT_IMAGE_SIDE = 640   # pictures in reports: enough to see the lesion, small enough to mail


@dataclass(frozen=True)
class Picture:
    title: str
    legend: str
    image: np.ndarray


def report_jpeg(image: np.ndarray) -> bytes:
    """A picture as both reports embed it (the HTML page inline, the PDF on its page)."""
    return jpeg_bytes(image, quality=85, max_side=REPORT_IMAGE_SIDE)


@dataclass(frozen=True)
class DecisionLine:
    when: str
    reviewer: str
    decision: str
    made_on: str
    note: str


@dataclass(frozen=True)
class OutcomeLine:
    result_date: str
    outcome: str          # "Histopathology result"
    diagnosis: str        # "Invasive melanoma (MEL_INV), Breslow 0.8 mm" (empty: none given)
    counts_as: str        # "MEL, malignant": the model class and malignancy it counts as
    lab_reference: str
    entered: str          # "2025-03-04 10:12 UTC by Dr A"
    note: str


def outcome_lines(history: Sequence[Outcome]) -> list[OutcomeLine]:
    """The case's outcomes, latest first: the first is the case's outcome, the others were corrected by it."""
    return [OutcomeLine(o.result_date.isoformat(), o.kind_label, o.diagnosis_label,
                        ", ".join(x for x in (o.model_class or "", o.malignancy) if x), o.lab_reference or "",
                        f"{o.entered_at:%Y-%m-%d %H:%M} UTC by {o.entered_by}", o.note) for o in reversed(history)]


OUTCOME_HEADER = ("Date", "Outcome", "Diagnosis", "Counts as", "Lab reference", "Entered", "Note")


@dataclass(frozen=True)
class CaseReport:
    case_id: int
    case_name: str
    generated_at: dt.datetime
    generated_by: str
    facts: list[tuple[str, str]]
    model: str | None                     # which model made the result, and when
    call: str | None                      # "Melanoma (MEL): 62 %"
    call_notes: list[str] = field(default_factory=list)
    probabilities: list[tuple[str, str]] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    measurements: list[str] = field(default_factory=list)
    structures: list[str] = field(default_factory=list)      # "Streaks: 72 % (measured AUC 0.81 (0.76–0.85))"
    structures_caption: str = ""
    pictures: list[Picture] = field(default_factory=list)
    decisions: list[DecisionLine] = field(default_factory=list)
    decision_warning: str | None = None
    outcomes: list[OutcomeLine] = field(default_factory=list)   # latest first; the first is the case's outcome

    @property
    def date(self) -> str:
        return f"{self.generated_at:%Y-%m-%d}"


def file_stem(case_name: str, date: str) -> str:
    """A report's file name: the case id the clinician sees and the date, in characters every system accepts."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", case_name).strip("._") or "case"
    return f"{safe[:80]}_{date}"


def _facts(case: StoredCase) -> list[tuple[str, str]]:
    age = "unknown" if case.metadata.age is None else f"{case.metadata.age:g}"
    facts = [("Case", case.name), ("Patient", case.patient_id or "not given"), ("Lesion", case.lesion_id or "not given"),
             ("Site", case.metadata.site.label), ("Age / sex", f"{age} / {case.metadata.sex or 'unknown'}"),
             ("Image taken", case.study_date or "not recorded"), ("File", case.source),
             ("Imported", f"{case.imported_at:%Y-%m-%d %H:%M} UTC by {case.imported_by}")]
    if case.edited:
        facts.append(("Corrected in the app", ", ".join(c.replace("_", " ") for c in case.edited)))
    return facts


def _measurement_lines(case: StoredCase, measured: LesionMeasurements | None, lengths: list[Measurement]) -> list[str]:
    lines = []
    if measured is not None:
        lines.append("Measured on the model's lesion outline (approximate: a poor outline gives poor measurements):")
        lines += measured.describe()
        if case.scale_source:
            lines.append(f"Scale: {case.scale_source}.")
    by_hand = [m for m in lengths if m.kind == DIAMETER]
    if by_hand:
        latest = by_hand[-1]
        lines.append(f"Longest diameter measured by {latest.measured_by}: {latest.length_mm:.1f} mm "
                     f"({latest.at:%Y-%m-%d}).")
    return lines


def case_report(case: StoredCase, image: np.ndarray, stored: StoredPrediction | None, history: list[Decision],
                generated_by: str, lengths: Sequence[Measurement] = (), card_metrics: CardMetrics | None = None,
                now: dt.datetime | None = None, outcomes: Sequence[Outcome] = (),
                structures: StructureSection | None = None) -> CaseReport:
    """card_metrics: the metrics of the model card of the model that made `stored` (for its recall), if known, and
    `structures` its structure heads' figures (the structures measured well enough are listed);
    outcomes: what the lesion turned out to be, as entered, oldest first."""
    lengths = list(lengths)
    report = partial(CaseReport, case_id=case.id, case_name=case.name, generated_at=now or dt.datetime.now(dt.UTC),
                     generated_by=generated_by, facts=_facts(case), outcomes=outcome_lines(outcomes))
    decisions = [DecisionLine(f"{d.created_at:%Y-%m-%d %H:%M} UTC", d.reviewer, d.label, d.made_on_text, d.note)
                 for d in history]
    warning = None
    if history and not history[-1].made_on(stored):
        warning = (f"The latest decision was made on an earlier result ({history[-1].made_on_text}); the case was "
                   "analysed again since and awaits review of the result in this report.")
    if stored is None:
        return report(model=None, call=None, pictures=[Picture("The image", LAYER_LEGENDS[OVERLAYS[0]], image)],
                          decisions=decisions, decision_warning=warning,
                          measurements=_measurement_lines(case, None, lengths))
    prediction = stored.shown_at(image.shape)
    _, measured = measured_outline(prediction, image, case.mm_per_pixel)
    top = stored.predicted_class
    notes = []
    rule = (decision_rule_text(top, stored.most_probable_class, float(stored.probabilities.max()))
            if stored.follows_decision_rule else None)
    if rule:
        notes.append(rule)
    recall = class_recall_text(card_metrics, top) if card_metrics is not None else None
    if recall:
        notes.append(recall)
    if stored.prediction_set:
        notes.append("Possible diagnoses (a set that held the true diagnosis about 90 % of the time on "
                     "held-out images): " + ", ".join(f"{CLASS_NAMES[c]} ({c})" for c in stored.prediction_set) + ".")
    notes.append(f"Malignancy probability {percent_text(stored.malignancy)} (± {stored.malignancy_spread * 100:.0f} "
                 "percentage points across the views the model looked at).")
    if not stored.calibrated:
        notes.append("These probabilities are not calibrated: read them as a ranking, not as frequencies.")
    seen, seen_caption = structure_lines(stored, structures)
    layers = [OVERLAYS[1], OVERLAYS[2]] + ([OVERLAYS[4]] if stored.gradcam_grid is not None else [])
    pictures = [Picture("The image", LAYER_LEGENDS[OVERLAYS[0]], image)] + [
        Picture(layer, LAYER_LEGENDS[layer], overlay(image, prediction, layer)) for layer in layers]
    return report(
        model=(f"Model {stored.model_version} (model id {stored.weights_sha256[:12]}), analysed "
               f"{stored.created_at:%Y-%m-%d %H:%M} UTC."),
        call=f"{CLASS_NAMES[top]} ({top}): {percent_text(float(stored.probabilities[CLASSES.index(top)]))}",
        call_notes=notes,
        probabilities=[(f"{CLASS_NAMES[c]} ({c})", percent_text(float(p)))
                       for c, p in zip(CLASSES, stored.probabilities, strict=True)],
        flags=[f.reason for f in stored.flags],
        measurements=_measurement_lines(case, measured, lengths),
        structures=[f"{line.name}: {line.probability} ({line.auc})" for line in seen], structures_caption=seen_caption,
        pictures=pictures, decisions=decisions, decision_warning=warning,
    )
