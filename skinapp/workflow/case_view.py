"""What the case-review page shows, worked out from stored records: which case opens, the model's outline and its
measurements on the image, the lines drawn over it, the model's answer in words, the texts around saving a
decision (drafts, conflicts, what was saved), the corrections form's choices and the lengths dragged on the
measuring tool. Pure functions and typed records; the pages (pages/2_Case_review.py, pages/6_Lesion_over_time.py)
only lay them out. No Streamlit here.

User strings (names, notes, patient ids, flag reasons) in the texts made here are already passed through
`plain_markdown`: the page shows them as they are.
"""

from __future__ import annotations

import datetime as dt
import io
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from PIL import Image

from skinapp.inference.measurements import LesionMeasurements, measured_outline
from skinapp.model.card import ModelCard
from skinapp.outcomes import OTHER
from skinapp.reporting.overlay import OVERLAYS, STRUCTURE_LAYER, overlay
from skinapp.reporting.text import (
    class_recall_text,
    decision_rule_text,
    older_model_text,
    percent_text,
    plain_markdown,
    prediction_set_text,
)
from skinapp.reporting.viewer import Line, jpeg_data_url
from skinapp.store import CaseRecord, Decision, Store, StoredCase, StoredPrediction
from skinapp.store.records import SCALE, Measurement
from skinapp.trust.flags import RED_WARNINGS, RISK_CANNOT_EXCLUDE
from skinapp.trust.risk import LOW
from skinapp.vocab import CLASS_NAMES, CLASSES, FINE_SITES, REGION_OF_SITE, REGIONS
from skinapp.workflow.queue import ReviewQueue
from skinapp.workflow.reports import metrics_of

LOW_TIER_TEXT = ("**Low risk tier**: the malignancy probability is below the safety net. This is not a statement "
                 "that the lesion is benign; the clinical picture decides.")

# ---------------------------------------------------------------------------------------------------- which case


def case_id_of(value: object) -> int | None:
    """A case id from the address bar (text) or the session (a number); None where it is not one."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    try:
        return int(value)
    except ValueError:
        return None


def current_case_id(wanted: int | None, queue: ReviewQueue, exists: Callable[[int], bool]) -> int | None:
    """The case to show: the one asked for where it is in the queue, or is a case at all (opened from elsewhere:
    a link, the patient page); else the queue's first; None where the queue is empty and nothing else was asked."""
    if wanted is not None and wanted not in queue and exists(wanted):
        return wanted
    return wanted if wanted in queue else (queue.case_ids[0] if len(queue) else None)


def missing_case_text(case_id: int) -> str:
    return (f"Case {case_id} is not in the case database, so it cannot be shown. Open a case from the worklist "
            "to go on reviewing.")


# ----------------------------------------------------------------------------------- the outline and the image


@dataclass(frozen=True)
class OutlineReading:
    """The model's lesion outline on the stored image, and what is measured on it (None: no lesion found)."""

    contour: tuple[tuple[float, float], ...]   # (x, y) points in image pixels; empty where there is no outline
    measured: LesionMeasurements | None


def outline_reading(stored: StoredPrediction, image: np.ndarray, mm_per_pixel: float | None) -> OutlineReading:
    """Stored prediction → its outline on this image (from the attention map, at the image's size) → the
    measurements on it (in millimetres where a pixel's size is known)."""
    outline, measured = measured_outline(stored, image, mm_per_pixel)
    return OutlineReading(tuple((x, y) for x, y in outline.contour.tolist()), measured)


OUTLINE_COLOUR, OUTLINE_DIAMETER_COLOUR = "#00d000", "#ffd400"
RULER_COLOUR, DIAMETER_COLOUR = "#ff00ff", "#00c8ff"


def outline_lines(reading: OutlineReading, with_diameter: bool = True) -> list[Line]:
    """The outline as a closed line over the image and, with_diameter, its longest diameter dotted."""
    if not reading.contour:
        return []
    lines = [Line("lesion outline (the model's)", list(reading.contour), OUTLINE_COLOUR, closed=True)]
    if with_diameter and reading.measured is not None:
        lines.append(Line("longest diameter (outline)", list(reading.measured.diameter_ends), OUTLINE_DIAMETER_COLOUR,
                          dash="dot"))
    return lines


def measurement_lines(lengths: Iterable[Measurement]) -> list[Line]:
    """The reviewers' ruler calibrations and measured diameters as lines over the image."""
    return [Line(f"ruler, {m.length_mm:g} mm" if m.kind == SCALE else f"diameter {m.length_mm:.1f} mm (by {m.measured_by})",
                 list(m.points), RULER_COLOUR if m.kind == SCALE else DIAMETER_COLOUR) for m in lengths]


def shows_heat_map(kind: str) -> bool:
    """Whether the layer is drawn into the picture (a heat map); the image alone and the outline are not."""
    return kind not in (OVERLAYS[0], OVERLAYS[1])


def layer_picture(image: np.ndarray, stored: StoredPrediction | None, kind: str, opacity: float,
                  gradcam: np.ndarray | None = None, structure: str | None = None) -> np.ndarray:
    """The image with the layer's heat map drawn in (`gradcam`: another class's map; `structure`: the structure
    layer's); the image as it is for a layer without one, or where there is no prediction."""
    if stored is None or not shows_heat_map(kind):
        return image
    return overlay(image, stored.shown_at(image.shape), kind, opacity, gradcam, structure)


class LayerChoice(NamedTuple):
    """The viewer's layer as the reviewer set it."""

    kind: str
    opacity: float
    cam_class: str | None = None       # Grad-CAM of this class (None: the call's stored map)
    against: str | None = None         # …of its logit minus this class's (the contrast layer)
    structure: str | None = None       # the structure layer's structure


def layers_of(stored: StoredPrediction, shown_structures: Sequence[str]) -> tuple[str, ...]:
    """The layers a result can show: the structure layer only where its model reads structures and some of them
    were measured well enough to be shown (`shown_structures`, from the card of the model that made it)."""
    left_out = (STRUCTURE_LAYER,) if stored.structures is None or not shown_structures else ()
    return tuple(k for k in OVERLAYS if k not in left_out)


def shown_structures(stored: StoredPrediction, installed: ModelCard | None, shipped: ModelCard | None) -> tuple[str, ...]:
    """The structures a clinician may see for this result: those its model's card measured at or above the minimum
    AUC; none where the result is not the installed model's (its figures are not at hand)."""
    cards = [c for c in (installed, shipped) if c is not None and c.identity == stored.weights_sha256]
    if stored.structures is None or not cards or cards[0].structures is None:
        return ()
    return tuple(f.structure for f in cards[0].structures.shown)



class ZoomPicture(NamedTuple):
    url: str                   # the stored JPEG as a data URL, not encoded again
    size: tuple[int, int]      # its width and height


def zoom_picture(jpeg: bytes | None) -> ZoomPicture | None:
    """The sharper copy a case has for zooming in, where it has one."""
    return None if jpeg is None else ZoomPicture(jpeg_data_url(jpeg), Image.open(io.BytesIO(jpeg)).size)


# ------------------------------------------------------------------------------------------ the model's answer


MALIGNANCY_HELP = ("P(melanoma) + P(basal cell carcinoma) + P(actinic keratosis / intraepithelial carcinoma); the ± is "
                   "the standard deviation over the flipped and turned views the model looked at.")


@dataclass(frozen=True)
class ModelAnswer:
    """The model's result on the case as the page shows it, in words (user strings already made plain)."""

    call: str                          # "Melanoma (MEL): 62 %"
    recall: str | None                 # how often this model finds the class, for the installed model
    rule: str | None                   # why the call differs from the most probable class (balanced rule)
    malignancy: str
    malignancy_spread: str
    prediction_set: str | None
    suspicious: tuple[str, ...]        # the red malignancy warning (High risk; or an older model's safety net)
    cannot_exclude: tuple[str, ...]    # the amber one: malignancy cannot be excluded (never the excision wording)
    low: str | None                    # a graded model's Low tier, said as what it is (never "benign")
    manual_check: str | None           # the serious flags' reasons, when the case needs a manual check
    warnings: tuple[str, ...]          # the other flags' reasons
    probabilities: dict[str, float]
    highlighted: tuple[str, ...]       # the classes the chart shows dark
    chart_caption: str
    metadata_caption: str
    model_caption: str
    older_model: str | None            # the result is not the installed model's


REASONS_IN_VIEW = 3  # warning reasons shown beside the image; the rest are under the answer's details


def model_answer(stored: StoredPrediction, installed: ModelCard | None) -> ModelAnswer:
    top = stored.predicted_class
    metrics = metrics_of(installed, stored.weights_sha256)
    calibration = ("Probabilities are calibrated on images the model never trained on: in the evaluation, a "
                   "diagnosis shown at 80 % was right about 80 % of the time." if stored.calibrated else
                   "These probabilities are not calibrated: read them as a ranking, not as frequencies.")
    meta = stored.metadata_used
    age = plain_markdown(f"{meta.age:g}") if meta.age is not None else "unknown"
    return ModelAnswer(
        call=f"{CLASS_NAMES[top]} ({top}): {percent_text(float(stored.probabilities[CLASSES.index(top)]))}",
        recall=(class_recall_text(metrics, top) or None) if metrics is not None else None,
        rule=(decision_rule_text(top, stored.most_probable_class, float(stored.probabilities.max()))
              if stored.follows_decision_rule else None),
        malignancy=percent_text(stored.malignancy),
        malignancy_spread=f"± {stored.malignancy_spread * 100:.0f} points across views",
        prediction_set=prediction_set_text(stored.prediction_set) if stored.prediction_set else None,
        suspicious=tuple(f"**{plain_markdown(f.reason)}**" for f in stored.flags if f.code in RED_WARNINGS),
        cannot_exclude=tuple(f"**{plain_markdown(f.reason)}**" for f in stored.flags if f.code == RISK_CANNOT_EXCLUDE),
        low=(LOW_TIER_TEXT if stored.risk_tier == LOW else None),
        manual_check=("**Manual check needed.** " + " ".join(plain_markdown(f.reason) for f in stored.flags if f.serious)
                      if stored.needs_manual_check else None),
        warnings=tuple(plain_markdown(f.reason) for f in stored.flags
                       if not f.serious and f.code not in (*RED_WARNINGS, RISK_CANNOT_EXCLUDE)),
        probabilities=dict(zip(CLASSES, map(float, stored.probabilities), strict=True)),
        highlighted=stored.prediction_set or (top,),
        chart_caption=("Dark bars: the possible diagnoses (the model's set). " if stored.prediction_set
                       else "Dark bar: the top diagnosis. ") + calibration,
        metadata_caption=(f"Metadata the model used: age {age}, sex {plain_markdown(meta.sex or 'unknown')}, "
                          f"site {plain_markdown(meta.site.label)}."),
        model_caption=(f"Model {plain_markdown(stored.model_version)}, model id {stored.weights_sha256[:12]}, "
                       f"analysed {stored.created_at:%Y-%m-%d %H:%M} UTC."),
        older_model=(older_model_text(stored.model_version, installed.version)
                     if installed is not None and metrics is None else None),
    )


# ------------------------------------------------------------------------------------------------ the case itself


def case_facts_text(case: StoredCase) -> str:
    """Patient, lesion, when the picture was taken, import and acquisition in one line."""
    patient, lesion = case.patient_id, case.lesion_id
    taken = f"taken {case.study_date}" if case.study_date else "date taken unknown"
    return (f"Patient: {plain_markdown(patient) if patient else 'not given'} · lesion "
            f"{plain_markdown(lesion) if lesion else 'not given'} · {taken} · imported {case.imported_at:%Y-%m-%d %H:%M} UTC by "
            f"{plain_markdown(case.imported_by)}"
            + (f" · {plain_markdown(case.acquisition.describe())}" if not case.acquisition.is_empty else ""))


def related_records(store: Store, case: StoredCase) -> list[CaseRecord]:
    """The patient's cases (or, without a patient id, the lesion's): one read serves the comparison over time and
    the patient's report."""
    if case.patient_id:
        return store.case_records(patient_id=case.patient_id)
    return store.case_records(lesion_id=case.lesion_id) if case.lesion_id else []


# ------------------------------------------------------------------------------------------------- the decision


class DraftKeys(NamedTuple):
    """Where the page keeps a decision the reviewer started on a case and has not saved."""

    choice: str
    diagnosis: str
    note: str


def draft_keys(case_id: int) -> DraftKeys:
    return DraftKeys(f"decision_{case_id}", f"diagnosis_{case_id}", f"note_{case_id}")


def has_draft(choice: object, diagnosis: object, note: str | None) -> bool:
    """Whether leaving the case would drop something the reviewer chose or wrote."""
    return choice is not None or diagnosis is not None or bool((note or "").strip())


def decision_problem(choice: str | None, diagnosis: str | None, note: str | None = "") -> str | None:
    """What is missing before a decision can be saved; None when it can be."""
    if choice is None:
        return "Choose a decision, then save."
    if choice == "disagree" and diagnosis is None:
        return "Choose the diagnosis you think is right, then save again."
    if choice == "disagree" and diagnosis == OTHER and not (note or "").strip():
        return "Write the diagnosis you think is right in the note, then save again."
    return None


def conflict_text(other: Decision) -> str:
    """A colleague's decision came in while the reviewer had the case open."""
    return (f"Not saved: {plain_markdown(other.reviewer)} recorded “{plain_markdown(other.label)}” on this case at "
            f"{other.created_at:%H:%M} UTC while you were looking at it. Read it below; press Save again to record "
            "yours after theirs.")


PREDICTION_CHANGED_TEXT = ("Not saved: the model analysed this case again while you had it open, so the result shown "
                           "above is new. Read it, then press Save again to record your decision on it.")


def not_saved_text(problem: Exception) -> str:
    return f"Not saved: {plain_markdown(str(problem))}."


def saved_text(case: StoredCase, saved: Decision, following: int | None) -> str:
    return (f"Saved on {plain_markdown(case.name)}: {plain_markdown(saved.label)}."
            + ("" if following else " Every case in your queue is reviewed."))


def back_to_review_text(latest: Decision | None, stored: StoredPrediction | None) -> str | None:
    """Where the last decision was made on an earlier result than the one shown, the warning that says so."""
    if latest is None or latest.made_on(stored):
        return None
    return (f"Back to review: the last decision ({plain_markdown(latest.label)}, by {plain_markdown(latest.reviewer)}) "
            f"was made on an earlier result ({plain_markdown(latest.made_on_text)}). The case was analysed again "
            "since; it is kept below beside the result it was made on.")


def decision_history(history: Sequence[Decision]) -> list[dict[str, str]]:
    """The case's decisions, latest first, as table rows (shown as text, not markdown)."""
    return [{"when (UTC)": f"{d.created_at:%Y-%m-%d %H:%M}", "reviewer": d.reviewer, "decision": d.label,
             "made on": d.made_on_text, "note": d.note} for d in reversed(history)]


# ------------------------------------------------------------------------------------------------ corrections


SiteChoice = tuple[str | None, str | None]   # (region, fine site)
# A fine site named like its region ("upper extremity") is the region itself, as `parse_site` reads it.
SITE_CHOICES: list[SiteChoice] = [(None, None), *((r, None) for r in REGIONS),
                                  *((REGION_OF_SITE[f], f) for f in FINE_SITES if f not in REGIONS)]


def site_label(choice: SiteChoice) -> str:
    region, fine = choice
    return "unknown" if region is None else fine if fine is not None else f"{region} (region)"


def site_choices(case: StoredCase) -> tuple[list[SiteChoice], int]:
    """The sites offered and the index of the case's own: the site as stored is always offered, so saving
    another field never changes it unasked."""
    now = (case.metadata.site.region, case.metadata.site.fine)
    sites = SITE_CHOICES if now in SITE_CHOICES else [*SITE_CHOICES, now]
    return sites, sites.index(now)


def case_changes(patient_id: str, lesion_id: str, age: float | None, sex: str | None, site: SiteChoice,
                 taken_on: dt.date | None = None) -> dict[str, object]:
    """The corrections form's fields as `Store.edit_case` takes them."""
    return {"patient_id": patient_id, "lesion_id": lesion_id, "age": age, "sex": sex, "site_region": site[0],
            "site_fine": site[1], "study_date": taken_on.isoformat() if taken_on is not None else None}


_FIELD_WORDS = {"study_date": "date taken"}


def taken_on(case: StoredCase) -> dt.date | None:
    """The day the picture was taken, for the corrections form; None: unknown."""
    return dt.date.fromisoformat(case.study_date) if case.study_date else None


def edited_text(case: StoredCase) -> str | None:
    if not case.edited:
        return None
    return ("Corrected in the app before: " + ", ".join(_FIELD_WORDS.get(c, c.replace("_", " ")) for c in case.edited)
            + ". The imported values stay on record.")


def corrections_saved_text(model_input_changed: bool, analysed_again: bool) -> str:
    message = "Corrections saved."
    if analysed_again:
        return message + (" The model analysed the case again with them; a decision made before stays beside the "
                          "earlier result, and the case is back to review.")
    if model_input_changed:
        return message + " The model is not available, so the result shown is still the one made with the old details."
    return message


# ------------------------------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class DraggedLength:
    """A length dragged across the picture on the measuring tool, in the stored image's pixels."""

    points: list[list[float]]          # [[x1, y1], [x2, y2]], as `Store.add_measurement` takes them
    pixels: float


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def dragged_length(drag: Mapping[str, object] | None, image_width: int) -> DraggedLength | None:
    """The measuring component's drag (in the pixels of the picture as the browser showed it) on the stored
    image; None until a whole drag was made."""
    if not drag or drag.get("x2") is None or not drag.get("width"):
        return None
    x1, y1, x2, y2, shown_width = (_number(drag.get(k)) for k in ("x1", "y1", "x2", "y2", "width"))
    if x1 is None or y1 is None or x2 is None or y2 is None or not shown_width:
        return None
    factor = image_width / shown_width
    points = [[x1 * factor, y1 * factor], [x2 * factor, y2 * factor]]
    return DraggedLength(points, math.dist(*points))


def ruler_text(length: DraggedLength, millimetres: float) -> str:
    return f"{length.pixels:.0f} pixels dragged: {millimetres / max(length.pixels, 1e-9) * 1000:.1f} µm per pixel."


def diameter_text(length: DraggedLength, case: StoredCase) -> str | None:
    """The dragged length in millimetres by the case's scale; None where it has none yet."""
    if case.mm_per_pixel is None:
        return None
    return f"{length.pixels:.0f} pixels dragged ≈ {length.pixels * case.mm_per_pixel:.1f} mm ({case.scale_source})."


def scale_saved_text(length: DraggedLength, millimetres: float) -> str:
    return f"Scale saved: {millimetres:g} mm over {length.pixels:.0f} pixels."


def diameter_saved_text(saved: Measurement) -> str:
    return f"Longest diameter saved: {saved.length_mm:.1f} mm."


# ------------------------------------------------------------------------------------------------- downloads


CASE_REPORTS = (("pdf", "Case report (PDF)"), ("html", "Case report (HTML, for e-mail)"))
