"""What the case-review page shows, worked out without Streamlit (skinapp/workflow/case_view.py), on records whose
numbers are chosen by hand (no model)."""

import dataclasses
import datetime as dt
import io
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from skinapp.io.case import Acquisition
from skinapp.model.measured import CardMetrics
from skinapp.reporting.overlay import OVERLAYS
from skinapp.reporting.text import plain_markdown
from skinapp.store import Decision, StoredCase, StoredPrediction
from skinapp.store.records import DIAMETER, SCALE, Measurement
from skinapp.trust.flags import SUSPICIOUS, Flag
from skinapp.vocab import CLASSES, Metadata, Site
from skinapp.workflow import case_view as view
from skinapp.workflow.queue import ReviewQueue
from skinapp.workflow.worklist import model_label

NOW = dt.datetime(2026, 1, 1, 9, 30, tzinfo=dt.UTC)
IMAGE = np.full((64, 96, 3), (226, 180, 160), np.uint8)


def _case(patient: str | None = "P1", lesion: str | None = "L1", site: Site | None = None, edited=(),
          pixel_spacing: tuple[float, float] | None = None) -> StoredCase:
    return StoredCase(id=7, name="lesion7", source="lesion7.png", frame=None, patient_id=patient, lesion_id=lesion,
                      study_date=None, metadata=Metadata(60, "male", site or Site("torso", "back")), is_dermoscopic=True,
                      original_size=(64, 96), pixel_spacing_mm=pixel_spacing, acquisition=Acquisition(), notes=[],
                      imported_at=NOW, imported_by="importer", edited=tuple(edited))


def _attention(blob: bool = True) -> np.ndarray:
    grid = np.zeros((16, 16))
    if blob:
        grid[4:12, 5:11] = 1.0  # a lesion in the middle of the model's grid
    return grid


def _stored(top: str = "NV", flags=(), attention: np.ndarray | None = None, prediction_set=None, prediction_id: int = 3,
            weights: str = "a" * 64, temperature: float = 1.5) -> StoredPrediction:
    """A stored result on IMAGE whose top call (its most probable class) is `top`."""
    p = np.full(len(CLASSES), 0.02)
    p[CLASSES.index(top)] = 1 - 0.02 * (len(CLASSES) - 1)
    return StoredPrediction(id=prediction_id, case_id=7, model_version="v2", weights_sha256=weights, created_at=NOW,
                            probabilities=p, view_probabilities=np.stack([p, p]), embedding=np.ones(4) / 2,
                            attention_grid=_attention() if attention is None else attention, refined_grid=np.zeros((16, 16)),
                            gradcam_grid=None, image_size=(IMAGE.shape[0], IMAGE.shape[1]), flags=list(flags),
                            metadata_used=Metadata(60, "male", Site("torso", "back")), temperature=temperature,
                            prediction_set=prediction_set)


def _decision(decision_id: int, reviewer: str = "Dr A", prediction_id: int | None = 3, decision: str = "agree",
              diagnosis: str | None = None) -> Decision:
    return Decision(decision_id, 7, reviewer, NOW, decision, diagnosis, f"note {decision_id}", None, prediction_id, "v2", "NV")


# ---------------------------------------------------------------------------------------------------- which case


def test_a_case_id_is_read_from_the_address_or_the_session_and_anything_else_is_none():
    assert view.case_id_of("12") == 12 and view.case_id_of(12) == 12
    for value in (None, "", "twelve", "1.5", True, 1.5, ["12"]):
        assert view.case_id_of(value) is None


def test_the_case_shown_is_the_one_asked_for_when_it_exists_else_the_queues_first():
    queue = ReviewQueue((4, 5, 6))
    exists = {4, 5, 6, 9}.__contains__
    assert view.current_case_id(5, queue, exists) == 5
    assert view.current_case_id(9, queue, exists) == 9        # opened from elsewhere: a link, the patient page
    assert view.current_case_id(99, queue, exists) == 4       # no such case: the queue's first
    assert view.current_case_id(None, queue, exists) == 4
    assert view.current_case_id(None, ReviewQueue(()), exists) is None
    assert view.current_case_id(9, ReviewQueue(()), exists) == 9
    assert "Case 99 is not in the case database" in view.missing_case_text(99)


# ----------------------------------------------------------------------------------- the outline and the image


def test_the_outline_and_its_measurements_come_from_the_stored_attention_map_at_the_images_size():
    stored = _stored()
    reading = view.outline_reading(stored, IMAGE, mm_per_pixel=0.1)
    assert reading.contour and reading.measured is not None
    assert reading.contour == tuple(map(tuple, stored.outline.contour.tolist()))  # on the analysed image: its own outline
    xs, ys = zip(*reading.contour, strict=True)
    assert 0 <= min(xs) <= max(xs) < IMAGE.shape[1] and 0 <= min(ys) <= max(ys) < IMAGE.shape[0]
    assert 44 < np.mean(xs) < 52 and 28 < np.mean(ys) < 36  # the blob (columns 5–11, rows 4–12 of 16) on 96 × 64
    assert reading.measured.longest_diameter_mm == pytest.approx(reading.measured.longest_diameter_px * 0.1)
    unscaled = view.outline_reading(stored, IMAGE, None).measured
    assert unscaled is not None and unscaled.longest_diameter_mm is None
    assert unscaled.area_px == reading.measured.area_px

    larger = np.zeros((128, 192, 3), np.uint8)  # a zoom copy twice the size: the outline follows it
    on_larger = view.outline_reading(stored, larger, None)
    assert on_larger.measured is not None
    assert on_larger.measured.area_px == pytest.approx(4 * reading.measured.area_px, rel=0.1)


def test_a_flat_attention_map_has_no_outline_and_nothing_to_measure_or_draw():
    reading = view.outline_reading(_stored(attention=_attention(blob=False)), IMAGE, 0.1)
    assert reading == view.OutlineReading((), None)
    assert view.outline_lines(reading) == []


def test_the_outline_is_drawn_closed_with_its_longest_diameter_dotted_unless_asked_not_to():
    reading = view.outline_reading(_stored(), IMAGE, None)
    outline, diameter = view.outline_lines(reading)
    assert outline.closed and outline.colour == view.OUTLINE_COLOUR and list(outline.points) == list(reading.contour)
    assert reading.measured is not None and list(diameter.points) == list(reading.measured.diameter_ends)
    assert diameter.dash == "dot"
    assert view.outline_lines(reading, with_diameter=False) == [outline]


def test_rulers_and_measured_diameters_are_named_with_their_length_and_who_measured():
    lengths = [Measurement(1, 7, NOW, "Dr A", SCALE, ((0, 0), (10, 0)), 5.0),
               Measurement(2, 7, NOW, "Dr B", DIAMETER, ((1, 1), (30, 1)), 6.25)]
    ruler, diameter = view.measurement_lines(lengths)
    assert ruler.name == "ruler, 5 mm" and ruler.colour == view.RULER_COLOUR and list(ruler.points) == [(0, 0), (10, 0)]
    assert diameter.name == "diameter 6.2 mm (by Dr B)" and diameter.colour == view.DIAMETER_COLOUR


def test_heat_maps_are_drawn_into_the_picture_and_the_other_layers_leave_it_as_it_is():
    stored = _stored()
    assert not view.shows_heat_map(OVERLAYS[0]) and not view.shows_heat_map(OVERLAYS[1])
    assert all(view.shows_heat_map(kind) for kind in OVERLAYS[2:])
    assert view.layer_picture(IMAGE, stored, OVERLAYS[1], 0.5) is IMAGE
    assert view.layer_picture(IMAGE, None, OVERLAYS[2], 0.5) is IMAGE
    looked = view.layer_picture(IMAGE, stored, OVERLAYS[2], 0.5)
    assert looked.shape == IMAGE.shape and not np.array_equal(looked, IMAGE)


def test_the_zoom_copy_is_handed_on_as_stored_with_its_size():
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((30, 50, 3), np.uint8)).save(buffer, "JPEG")
    zoom = view.zoom_picture(buffer.getvalue())
    assert zoom is not None and zoom.size == (50, 30) and zoom.url.startswith("data:image/jpeg;base64,")
    assert view.zoom_picture(None) is None


# ------------------------------------------------------------------------------------------ the model's answer


def test_the_models_answer_in_words_with_its_warnings_sorted_by_weight():
    flags = [Flag(SUSPICIOUS, "Suspicious — consider *excision*", True), Flag("views_disagree", "views disagree", True),
             Flag("missing_metadata", "age <missing>", False)]
    answer = view.model_answer(_stored("MEL", flags, prediction_set=("MEL", "NV")), None)
    assert answer.call.startswith("Melanoma (MEL): ") and answer.call.endswith("%")
    assert answer.suspicious == (f"**{plain_markdown('Suspicious — consider *excision*')}**",)
    assert answer.manual_check is not None and answer.manual_check.startswith("**Manual check needed.** ")
    assert plain_markdown("views disagree") in answer.manual_check
    assert answer.warnings == (plain_markdown("age <missing>"),)
    assert answer.highlighted == ("MEL", "NV") and answer.prediction_set and answer.chart_caption.startswith("Dark bars")
    assert "calibrated on images the model never trained on" in answer.chart_caption
    assert answer.probabilities["MEL"] == pytest.approx(0.88) and list(answer.probabilities) == list(CLASSES)
    assert answer.metadata_caption == "Metadata the model used: age 60, sex male, site back."
    assert answer.model_caption.startswith("Model v2, model id aaaaaaaaaaaa, analysed 2026-01-01 09:30 UTC")
    assert answer.recall is None and answer.older_model is None and answer.rule is None  # no installed card to compare


def test_a_plain_answer_has_no_warnings_and_says_when_probabilities_are_not_calibrated():
    answer = view.model_answer(_stored("NV", temperature=1.0), None)
    assert answer.suspicious == () and answer.manual_check is None and answer.warnings == ()
    assert answer.highlighted == ("NV",) and answer.chart_caption.startswith("Dark bar: the top diagnosis.")
    assert "not calibrated" in answer.chart_caption and answer.prediction_set is None


def test_a_result_of_another_model_than_the_installed_one_says_so_and_quotes_no_recall():
    installed = SimpleNamespace(identity="b" * 64, version="v3", metrics=CardMetrics())
    answer = view.model_answer(_stored(), installed)
    assert answer.older_model is not None and "older model (v2)" in answer.older_model and "(v3)" in answer.older_model
    same = SimpleNamespace(identity="a" * 64, version="v2", metrics=CardMetrics())
    assert view.model_answer(_stored(), same).older_model is None
    profiled = dataclasses.replace(_stored(weights="c" * 64),
                                   model_version="v2 with site profile Clinic B (0123456789ab, 60 images)")
    text = view.model_answer(profiled, same).older_model  # its own identity, but not an older model
    assert text is not None and "installed model adapted to a site" in text and "older" not in text
    assert model_label(profiled, same.identity, same.version) == "site profile Clinic B (0123456789ab, 60 images)"
    assert model_label(profiled, same.identity, "v3").startswith("older model (v2 with site profile")  # older weights


# ------------------------------------------------------------------------------------------------ the case itself


def test_the_case_facts_are_shown_as_text_not_markup():
    facts = view.case_facts_text(_case(patient="<b>P1</b>", lesion=None))
    assert facts.startswith(f"Patient: {plain_markdown('<b>P1</b>')} · lesion not given · date taken unknown · "
                            "imported 2026-01-01 09:30 UTC")
    assert facts.endswith("by importer")


# ------------------------------------------------------------------------------------------------- the decision


def test_a_draft_is_anything_chosen_or_written_and_is_kept_under_the_cases_own_keys():
    assert view.draft_keys(7) == ("decision_7", "diagnosis_7", "note_7") and view.draft_keys(7).note == "note_7"
    assert not view.has_draft(None, None, None) and not view.has_draft(None, None, "  \n")
    assert view.has_draft("agree", None, None) and view.has_draft(None, "MEL", None) and view.has_draft(None, None, "x")


def test_a_decision_needs_a_choice_and_a_disagreement_its_diagnosis():
    assert view.decision_problem(None, None) == "Choose a decision, then save."
    assert view.decision_problem("disagree", None) == "Choose the diagnosis you think is right, then save again."
    assert view.decision_problem("disagree", "MEL") is None and view.decision_problem("agree", None) is None


def test_the_texts_around_saving_name_people_as_text():
    other = _decision(2, reviewer="<script>Dr B</script>", decision="biopsy")
    conflict = view.conflict_text(other)
    assert conflict.startswith(f"Not saved: {plain_markdown('<script>Dr B</script>')} recorded “Needs biopsy")
    assert "at 09:30 UTC" in conflict
    assert view.not_saved_text(ValueError("note too *long*")) == f"Not saved: {plain_markdown('note too *long*')}."
    saved = _decision(3, decision="disagree", diagnosis="MEL")
    assert view.saved_text(_case(), saved, following=8) == f"Saved on lesion7: {plain_markdown('Disagree: Melanoma (MEL)')}."
    assert view.saved_text(_case(), saved, following=None).endswith(". Every case in your queue is reviewed.")


def test_a_decision_made_on_an_earlier_result_sends_the_case_back_to_review():
    stored = _stored(prediction_id=3)
    assert view.back_to_review_text(None, stored) is None
    assert view.back_to_review_text(_decision(1, prediction_id=3), stored) is None
    text = view.back_to_review_text(_decision(1, prediction_id=2), stored)
    assert text is not None and text.startswith("Back to review: the last decision (Agree with the model, by Dr A)")
    assert view.back_to_review_text(_decision(1, prediction_id=None), None) is None


def test_the_decision_history_is_latest_first():
    rows = view.decision_history([_decision(1), _decision(2, reviewer="Dr B", prediction_id=None)])
    assert [r["reviewer"] for r in rows] == ["Dr B", "Dr A"] and rows[0]["made on"] == "no model result"
    assert list(rows[0]) == ["when (UTC)", "reviewer", "decision", "made on", "note"]
    assert rows[1]["when (UTC)"] == "2026-01-01 09:30" and rows[1]["note"] == "note 1"


# ------------------------------------------------------------------------------------------------ corrections


def test_the_sites_offered_always_hold_the_cases_own():
    sites, index = view.site_choices(_case(site=Site("torso", "back")))
    assert sites is view.SITE_CHOICES and sites[index] == ("torso", "back")
    unusual = ("torso", "left flank")
    sites, index = view.site_choices(_case(site=Site(*unusual)))
    assert sites[:-1] == view.SITE_CHOICES and sites[index] == unusual
    assert view.SITE_CHOICES[0] == (None, None) and view.site_label((None, None)) == "unknown"
    assert view.site_label(("torso", None)) == "torso (region)" and view.site_label(("torso", "back")) == "back"
    assert ("upper extremity", None) in view.SITE_CHOICES and ("upper extremity", "upper extremity") not in view.SITE_CHOICES


def test_corrections_go_to_the_store_by_field_and_the_message_says_what_happened_to_the_result():
    assert view.case_changes("P2", "L2", 35.0, None, ("torso", "back"), dt.date(2025, 3, 10)) == {
        "patient_id": "P2", "lesion_id": "L2", "age": 35.0, "sex": None, "site_region": "torso", "site_fine": "back",
        "study_date": "2025-03-10"}
    assert view.case_changes("P2", "L2", None, None, (None, None))["study_date"] is None
    assert view.corrections_saved_text(False, False) == "Corrections saved."
    assert "analysed the case again" in view.corrections_saved_text(True, True)
    assert "The model is not available" in view.corrections_saved_text(True, False)
    assert view.edited_text(_case()) is None
    assert view.edited_text(_case(edited=("age", "site_region", "study_date"))) == (
        "Corrected in the app before: age, site region, date taken. The imported values stay on record.")


# ------------------------------------------------------------------------------------------------- measuring


def test_a_drag_on_the_shown_picture_is_a_length_on_the_stored_image():
    assert view.dragged_length(None, 96) is None and view.dragged_length({}, 96) is None
    assert view.dragged_length({"x1": 1, "y1": 1, "x2": None, "y2": None, "width": 48}, 96) is None  # still dragging
    assert view.dragged_length({"x1": 1, "y1": 1, "x2": 4, "y2": 5, "width": 0}, 96) is None
    length = view.dragged_length({"x1": 0, "y1": 0, "x2": 3, "y2": 4, "width": 48}, 96)  # shown at half size
    assert length is not None and length.points == [[0.0, 0.0], [6.0, 8.0]] and length.pixels == pytest.approx(10.0)
    assert view.ruler_text(length, 1.0) == "10 pixels dragged: 100.0 µm per pixel."
    assert view.scale_saved_text(length, 1.0) == "Scale saved: 1 mm over 10 pixels."
    assert view.diameter_text(length, _case()) is None  # no scale yet: calibrate first
    scaled = view.diameter_text(length, _case(pixel_spacing=(0.2, 0.2)))
    assert scaled == "10 pixels dragged ≈ 2.0 mm (pixel spacing in the DICOM file)."
    assert view.diameter_saved_text(Measurement(1, 7, NOW, "Dr A", DIAMETER, ((0, 0), (6, 8)), 2.0)) == (
        "Longest diameter saved: 2.0 mm.")
