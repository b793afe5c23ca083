"""What the store hands out: typed, immutable records of cases, predictions, decisions, outcomes and audit entries."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from skinapp.inference.outline import LesionOutline, lesion_outline
from skinapp.inference.prediction import Prediction
from skinapp.io.case import Acquisition
from skinapp.outcomes import DIAGNOSIS_BY_CODE, OTHER, OUTCOME_KINDS, Diagnosis, diagnosis_label
from skinapp.trust.flags import Flag, malignancy_spread, needs_manual_check
from skinapp.vocab import Metadata

DECISIONS: dict[str, str] = {
    "agree": "Agree with the model",
    "disagree": "Disagree (give the diagnosis)",
    "biopsy": "Needs biopsy or excision",
    "follow_up": "Follow-up",
    "manual_check": "Manual check needed",
}
MODEL_FIELDS = {"age", "sex", "site_region", "site_fine"}  # what the model reads besides the image


class AddedCase(NamedTuple):
    id: int
    new: bool
    filled: tuple[str, ...]  # metadata fields an earlier import lacked and this one gave

    @property
    def model_input_changed(self) -> bool:
        return any(f in MODEL_FIELDS for f in self.filled)


@dataclass(frozen=True)
class StoredCase:
    id: int
    name: str
    source: str
    frame: int | None
    patient_id: str | None
    lesion_id: str | None
    study_date: str | None
    metadata: Metadata
    is_dermoscopic: bool
    original_size: tuple[int, int]
    pixel_spacing_mm: tuple[float, float] | None
    acquisition: Acquisition
    notes: list[str]
    imported_at: dt.datetime
    imported_by: str
    edited: tuple[str, ...] = ()                 # metadata a reviewer corrected after import (`Store.edit_case`)
    ruler_mm_per_pixel: float | None = None      # the latest ruler calibration on the stored image, if any
    sop_instance_uid: str | None = None          # the DICOM image's UID, where it came from DICOM (the PACS finds it by it)

    @property
    def mm_per_pixel(self) -> float | None:
        """A pixel's size on the stored image: a reviewer's ruler calibration first, else the DICOM pixel spacing."""
        if self.ruler_mm_per_pixel is not None:
            return self.ruler_mm_per_pixel
        return None if self.pixel_spacing_mm is None else float(np.mean(self.pixel_spacing_mm))

    @property
    def scale_source(self) -> str | None:
        if self.ruler_mm_per_pixel is not None:
            return "calibrated on the ruler in the image"
        return "pixel spacing in the DICOM file" if self.pixel_spacing_mm is not None else None


SCALE, DIAMETER = "scale", "diameter"


@dataclass(frozen=True)
class Measurement:
    """A length a reviewer measured on the stored image: a known length on the ruler (SCALE) or the lesion's
    longest diameter (DIAMETER, in mm by the scale in force when it was measured)."""

    id: int
    case_id: int
    at: dt.datetime
    measured_by: str
    kind: str
    points: tuple[tuple[float, float], tuple[float, float]]
    length_mm: float

    @property
    def length_px(self) -> float:
        (x0, y0), (x1, y1) = self.points
        return float(np.hypot(x1 - x0, y1 - y0))


@dataclass(frozen=True, kw_only=True)
class StoredPrediction(Prediction):
    """A `Prediction` as the store keeps it: every output the model gave, plus where and when it was stored, the
    identity of the model that made it and the flags raised on it. Nothing is rebuilt or dropped on the way."""

    id: int
    case_id: int
    weights_sha256: str    # the model identity (`ModelCard.identity`) that made it
    created_at: dt.datetime
    flags: list[Flag]

    @property
    def outline(self) -> LesionOutline:
        """Worked out on each call, never kept: the store shares its decoded predictions between sessions, and a
        kept mask would add most of a megabyte to each (`workflow.case_view` keeps the one on screen)."""
        return lesion_outline(self.attention_grid, *self.image_size)

    @property
    def calibrated(self) -> bool:
        return self.temperature != 1.0

    @property
    def follows_decision_rule(self) -> bool:
        return self.decision_scores is not None

    @property
    def malignancy_spread(self) -> float:
        """Standard deviation of P(malignant) over test-time views and ensemble members."""
        return malignancy_spread(self.view_probabilities)

    @property
    def needs_manual_check(self) -> bool:
        return needs_manual_check(self.flags)


@dataclass(frozen=True)
class Decision:
    id: int
    case_id: int
    reviewer: str
    created_at: dt.datetime
    decision: str
    diagnosis: str | None
    note: str
    replaces_id: int | None
    prediction_id: int | None = None    # the prediction the reviewer saw (None: the case had none)
    model_version: str | None = None    # …the model that made it
    predicted_class: str | None = None  # …and its call

    @property
    def label(self) -> str:
        if self.decision == "disagree" and self.diagnosis:
            if self.diagnosis == OTHER:
                return "Disagree: another diagnosis (in the note)"
            return f"Disagree: {diagnosis_label(self.diagnosis)}"  # older decisions hold one of the seven classes
        return DECISIONS.get(self.decision, self.decision)

    def made_on(self, prediction: StoredPrediction | None) -> bool:
        """Whether this decision was made on `prediction` (the case's latest): if not, the case was analysed
        again after it and the decision belongs to the earlier result."""
        return self.prediction_id == (prediction.id if prediction is not None else None)

    @property
    def made_on_text(self) -> str:
        if self.prediction_id is None:
            return "no model result"
        call = f"{self.predicted_class}, " if self.predicted_class else ""
        return f"{call}model {self.model_version or 'unknown'} (result {self.prediction_id})"


@dataclass(frozen=True)
class OutcomeEntry:
    """An outcome to record (`Store.record_outcomes`): what the lesion turned out to be (skinapp.outcomes)."""

    case_id: int
    kind: str
    result_date: dt.date
    diagnosis: str | None = None
    breslow_mm: float | None = None
    diagnosis_text: str | None = None   # "other" only: the diagnosis in words
    lab_reference: str | None = None
    note: str = ""

    def same_as(self, other: Outcome | OutcomeEntry) -> bool:
        """Says the same as `other` (importing a laboratory's file twice adds nothing)."""
        fields = ("case_id", "kind", "result_date", "diagnosis", "breslow_mm", "diagnosis_text", "lab_reference", "note")
        return all(getattr(self, f) == getattr(other, f) for f in fields)


@dataclass(frozen=True)
class Outcome:
    """What the lesion turned out to be, as entered: a histopathology result or a clinical outcome. A correction is a
    new outcome naming the one it replaces (`replaces_id`); the latest is the case's outcome."""

    id: int
    case_id: int
    kind: str
    result_date: dt.date
    diagnosis: str | None
    breslow_mm: float | None
    diagnosis_text: str | None
    lab_reference: str | None
    note: str
    entered_by: str
    entered_at: dt.datetime
    replaces_id: int | None

    @property
    def entry(self) -> Diagnosis | None:
        return DIAGNOSIS_BY_CODE.get(self.diagnosis or "")

    @property
    def kind_label(self) -> str:
        return OUTCOME_KINDS.get(self.kind, self.kind)

    @property
    def diagnosis_label(self) -> str:
        """"Invasive melanoma (MEL_INV), Breslow 0.8 mm"; "Other: pigmented poroma"; "" without a diagnosis."""
        entry = self.entry
        if entry is None:
            return ""
        if entry.code == OTHER:
            return f"Other: {self.diagnosis_text or ''}"
        return entry.label + (f", Breslow {self.breslow_mm:g} mm" if self.breslow_mm is not None else "")

    @property
    def model_class(self) -> str | None:
        """The model's class this diagnosis counts as (None: no diagnosis, or one outside the classes)."""
        return self.entry.model_class if self.entry else None

    @property
    def malignancy(self) -> str:
        """"malignant", "benign", or "" where the outcome does not say (no diagnosis, or "other")."""
        if self.entry is None or self.entry.malignant is None:
            return ""
        return self.entry.malignancy_text

    @property
    def label(self) -> str:
        """The outcome in one line: "Histopathology result: Dermal nevus (DERM_NV), 2025-03-02"."""
        diagnosis = self.diagnosis_label
        return f"{self.kind_label}: {diagnosis + ', ' if diagnosis else ''}{self.result_date.isoformat()}"


class OutcomeConflict(RuntimeError):
    """Someone recorded an outcome on this case after the reviewer last looked at it."""

    def __init__(self, current: Outcome):
        super().__init__(f"{current.entered_by} recorded an outcome on this case at {current.entered_at:%H:%M}")
        self.current = current


@dataclass(frozen=True)
class CaseRecord:
    """A case with its latest prediction, decision and outcome, as the worklist needs it."""

    case: StoredCase
    prediction: StoredPrediction | None
    decision: Decision | None
    thumbnail_jpeg: bytes
    outcome: Outcome | None = None


class PredictionChanged(RuntimeError):
    """The case was analysed again after the reviewer last looked at it: the decision would sit beside a result
    the reviewer never saw."""

    def __init__(self, current_prediction_id: int | None):
        super().__init__("the model analysed this case again while it was open")
        self.current_prediction_id = current_prediction_id


class DecisionConflict(RuntimeError):
    """Someone recorded a decision on this case after the reviewer last looked at it."""

    def __init__(self, current: Decision):
        super().__init__(f"{current.reviewer} recorded a decision on this case at {current.created_at:%H:%M}")
        self.current = current


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: dt.datetime
    actor: str
    action: str
    case_id: int | None
    details: dict = field(default_factory=dict)


@dataclass(frozen=True)
class AuditCheck:
    entries: int
    before_chain: int   # entries of an older version, sealed by the first chained entry
    decisions: int
    head: str           # the hash of the last entry
    problems: tuple[str, ...]
    outcomes: int = 0
    checkpoints: int = 0  # signed checkpoints the chain was checked against (`store/checkpoints.py`)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if self.ok:
            anchored = (f", against {self.checkpoints} signed checkpoint(s)" if self.checkpoints else
                        " (no signed checkpoint yet: `python -m skinapp audit checkpoint`)")
            return (f"audit trail intact: {self.entries} entries, {self.decisions} decisions and {self.outcomes} "
                    f"outcomes checked{anchored}; last entry's hash {self.head}")
        return f"audit trail damaged ({len(self.problems)} problem(s)): " + "; ".join(self.problems)
