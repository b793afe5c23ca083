"""Case review: the image with switchable overlays, the model's answer with its uncertainty and flags, the
metadata it used, and the reviewer's decision (saved at once, never silently over a colleague's)."""

import datetime as dt
import io
import math

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image
from streamlit_image_coordinates import streamlit_image_coordinates

from app_shared import (
    LESION_PAGE,
    get_assessor,
    get_predictor,
    get_store,
    installed_card,
    open_case,
    reviewer,
    run_guarded,
)
from skinapp.inference.measurements import LesionMeasurements, measure_lesion
from skinapp.reporting.charts import CHART_CONFIG, probability_chart
from skinapp.reporting.overlay import OVERLAYS, VIEWER_LEGENDS, as_prediction, overlay
from skinapp.reporting.text import (
    class_recall_text,
    decision_rule_text,
    older_model_text,
    percent_text,
    plain_markdown,
    prediction_set_text,
)
from skinapp.reporting.viewer import VIEWER_CONFIG, Line, jpeg_data_url, viewer_figure
from skinapp.store import DECISIONS, DecisionConflict, InvalidText, PredictionChanged
from skinapp.store.limits import LIMITS
from skinapp.store.records import DIAMETER, SCALE
from skinapp.trust.assessment import training_image_path
from skinapp.trust.flags import SUSPICIOUS
from skinapp.vocab import CLASS_NAMES, CLASSES, FINE_SITES, REGION_OF_SITE, REGIONS, SEXES
from skinapp.workflow.analysis import reanalyse_case
from skinapp.workflow.followup import series_of_case
from skinapp.workflow.queue import ReviewQueue
from skinapp.workflow.reports import metrics_of, patient_subject, report_file, report_name
from skinapp.workflow.worklist import worklist


@st.cache_data(max_entries=64, show_spinner="Computing Grad-CAM …")
def _gradcam_for(case_id: int, class_name: str, weights_sha256: str) -> object:
    store, predictor = get_store(), get_predictor()
    if predictor is None or predictor.card.identity != weights_sha256:
        return None  # the model that made this prediction is not the one loaded: do not mix them
    case = store.case(case_id)
    return predictor.explain_class(_case_image(case_id), class_name, case.metadata)


@st.cache_data(max_entries=32, show_spinner=False)
def _case_image(case_id: int) -> np.ndarray:
    return get_store().case_image(case_id)  # a stored image never changes: safe to keep


@st.cache_data(max_entries=64, show_spinner=False)
def _outline(case_id: int, prediction_id: int, mm_per_pixel: float | None) -> tuple[list, LesionMeasurements | None]:
    stored = get_store().latest_prediction(case_id)
    if stored is None or stored.id != prediction_id:
        return [], None
    image = _case_image(case_id)
    outline = as_prediction(stored, image.shape).outline
    return outline.contour.tolist(), measure_lesion(outline.mask, image, mm_per_pixel)  # mm_per_pixel: part of the key


@st.cache_data(max_entries=16, show_spinner=False)
def _zoom_picture(case_id: int) -> tuple[str, tuple[int, int]] | None:
    """The zoom copy as a data URL and its size, where the case has one (the stored JPEG, not encoded again)."""
    data = get_store().zoom_jpeg(case_id)
    return None if data is None else (jpeg_data_url(data), Image.open(io.BytesIO(data)).size)


@st.cache_data(max_entries=128, show_spinner=False)
def _picture_url(case_id: int, prediction_id: int, kind: str, opacity: float, cam_class: str | None) -> str:
    """The image with a heat-map overlay drawn in, as a JPEG data URL (outlines are drawn by the viewer)."""
    image, stored = _case_image(case_id), get_store().latest_prediction(case_id)
    if stored is None or stored.id != prediction_id or kind in (OVERLAYS[0], OVERLAYS[1]):
        return jpeg_data_url(image)
    cam = _gradcam_for(case_id, cam_class, stored.weights_sha256) if cam_class else None
    return jpeg_data_url(overlay(image, as_prediction(stored, image.shape), kind, opacity, cam))


def _review_queue(store) -> ReviewQueue:
    """The queue the reviewer entered from the worklist; entered any other way, the worklist's order now."""
    kept = st.session_state.get("review_queue")
    if kept:
        return ReviewQueue(tuple(kept))
    queue = ReviewQueue(tuple(r.case.id for r in worklist(store)))
    st.session_state["review_queue"] = queue.case_ids
    return queue


def _current_case_id(store, queue: ReviewQueue) -> int | None:
    wanted = st.query_params.get("case") or st.session_state.get("case_id")
    try:
        wanted = int(wanted)
    except (TypeError, ValueError):
        wanted = None
    if wanted is not None and wanted not in queue and store.case(wanted) is not None:
        return wanted
    return wanted if wanted in queue else (queue.case_ids[0] if len(queue) else None)


def _draft_keys(case_id: int) -> tuple[str, str, str]:
    return f"decision_{case_id}", f"diagnosis_{case_id}", f"note_{case_id}"


def _has_draft(case_id: int) -> bool:
    choice, diagnosis, note = (st.session_state.get(k) for k in _draft_keys(case_id))
    return choice is not None or diagnosis is not None or bool((note or "").strip())


def _move(case_id: int, target: int) -> None:
    """Go to another case, unless that would drop what the reviewer started here without saving."""
    if _has_draft(case_id):
        st.session_state["pending_move"] = (case_id, target)
        st.rerun()
    open_case(target)


def _navigation(queue: ReviewQueue, case_id: int) -> None:
    previous_id, next_id = queue.previous(case_id), queue.next(case_id)
    previous, counter, following = st.columns([1, 2, 1])
    if previous.button("← Previous (K)", shortcut="K", disabled=previous_id is None, key="previous_case", width="stretch"):
        _move(case_id, previous_id)
    counter.markdown(f"<div style='text-align:center'>Case {queue.position(case_id)} of {len(queue)} in your review "
                     "queue</div>", unsafe_allow_html=True)  # fixed text only: no user string goes into HTML
    if following.button("Next (J) →", shortcut="J", disabled=next_id is None, key="next_case", width="stretch"):
        _move(case_id, next_id)
    pending = st.session_state.get("pending_move")
    if pending and pending[0] == case_id:
        st.warning("Your decision or note on this case is not saved. Save it below, or leave it unsaved.")
        leave, stay, _ = st.columns([1, 1, 2])
        if leave.button("Leave without saving", key="leave_unsaved"):
            st.session_state.pop("pending_move", None)
            for key in _draft_keys(case_id):
                st.session_state.pop(key, None)
            open_case(pending[1])
        if stay.button("Stay on this case", key="stay_unsaved"):
            st.session_state.pop("pending_move", None)
            st.rerun()


def _similar_cases(stored) -> None:
    shown = st.expander("Similar labelled cases from the training data", key="similar_open", on_change="rerun")
    with shown:
        if not shown.open:
            return
        assessor = get_assessor()
        neighbours = assessor.similar_cases(stored.embedding, k=5) if assessor is not None else []
        if not neighbours:
            st.caption("No similar-case index ships with this model.")
            return
        st.caption("The five HAM10000 images the model finds most alike, with their confirmed diagnoses. Closeness: "
                   "100 is the same image to the model, 0 is as alike as a typical training image. Pictures appear "
                   "where the training images are configured (SKINAPP_TRAINING_IMAGES).")
        for column, neighbour in zip(st.columns(len(neighbours)), neighbours, strict=True):
            picture = training_image_path(neighbour.image_id)
            if picture is not None:
                column.image(str(picture), width="stretch")
            column.markdown(f"**{CLASS_NAMES[neighbour.label]}** ({neighbour.label})")
            if neighbour.closeness is not None:
                column.progress(float(min(max(neighbour.closeness, 0.0), 1.0)))
            column.caption(f"{neighbour.closeness_text} · similarity {neighbour.similarity:.4f} · {neighbour.image_id}")


_DECISION_KEYS = dict(zip(DECISIONS, ("1", "2", "3", "4", "5"), strict=True))


def _decision_form(store, queue: ReviewQueue, case, latest, stored) -> None:
    """The decision is saved on what this page showed when the reviewer read it: the ids of the decision and
    the result on screen are kept from that run, so a colleague's decision or a re-analysis in between stops
    the save instead of slipping under it. Saved, the next case still to review in the queue opens."""
    st.subheader("Your decision", anchor=False)
    case_id = case.id
    name = reviewer()
    if not name:
        return  # signed out in another tab since the page was drawn
    choice_key, diagnosis_key, note_key = _draft_keys(case_id)
    seen_key, seen_result_key = f"seen_decision_{case_id}", f"seen_result_{case_id}"
    choice = st.session_state.get(choice_key)
    for decision, key in _DECISION_KEYS.items():  # the keys 1–5 press them; the chosen one carries a tick
        st.button(DECISIONS[decision], shortcut=key, key=f"pick_{decision}", width="stretch",
                  icon=":material/check_circle:" if decision == choice else None,
                  on_click=st.session_state.__setitem__, args=(choice_key, decision))
    diagnosis = st.selectbox("Your diagnosis (when you disagree)", [None, *CLASSES], key=diagnosis_key,
                             format_func=lambda c: "—" if c is None else f"{CLASS_NAMES[c]} ({c})")
    note = st.text_area("Note", key=note_key, max_chars=LIMITS["note"], height=68)
    submitted = st.button("Save decision", type="primary", shortcut="Ctrl+Enter", key="save_decision",
                          width="stretch")
    shown_result = stored.id if stored is not None else None
    if submitted:
        if choice is None:
            st.error("Choose a decision, then save.")
        elif choice == "disagree" and diagnosis is None:
            st.error("Choose the diagnosis you think is right, then save again.")
        else:
            seen = st.session_state.get(seen_key, latest.id if latest else None)
            seen_result = st.session_state.get(seen_result_key, shown_result)
            try:
                saved = store.record_decision(case_id, name, choice, diagnosis=diagnosis, note=note, seen_decision_id=seen,
                                              seen_prediction_id=seen_result)
            except DecisionConflict as conflict:
                other = conflict.current
                st.warning(f"Not saved: {plain_markdown(other.reviewer)} recorded “{plain_markdown(other.label)}” on this "
                           f"case at {other.created_at:%H:%M} UTC while you were looking at it. Read it below; press "
                           "Save again to record yours after theirs.")
                latest = other
            except PredictionChanged:
                st.warning("Not saved: the model analysed this case again while you had it open, so the result shown "
                           "above is new. Read it, then press Save again to record your decision on it.")
            except InvalidText as exc:
                st.error(f"Not saved: {plain_markdown(str(exc))}.")
            else:
                for key in (*_draft_keys(case_id), seen_key, seen_result_key, "pending_move"):
                    st.session_state.pop(key, None)
                following = queue.next_unreviewed(case_id, store.reviewed_cases(queue.case_ids))
                st.session_state["saved_message"] = (f"Saved on {plain_markdown(case.name)}: {plain_markdown(saved.label)}."
                                                     + ("" if following else " Every case in your queue is reviewed."))
                if following is not None:
                    open_case(following)
                st.rerun()
    st.session_state[seen_key] = latest.id if latest else None
    st.session_state[seen_result_key] = shown_result


# A fine site named like its region ("upper extremity") is the region itself, as `parse_site` reads it.
_SITE_CHOICES = [(None, None), *((r, None) for r in REGIONS),
                 *((REGION_OF_SITE[f], f) for f in FINE_SITES if f not in REGIONS)]


def _site_label(choice: tuple[str | None, str | None]) -> str:
    region, fine = choice
    return "unknown" if region is None else fine if fine is not None else f"{region} (region)"


def _viewer(case, stored, image: np.ndarray) -> None:
    """The zoomable image with the chosen layer, its legend in words, and what was measured on it."""
    lines: list[Line] = []
    height, width = image.shape[:2]
    picture_size = None
    if stored is None:
        url, measured = jpeg_data_url(image), None
        if (zoom := _zoom_picture(case.id)) is not None:
            url, picture_size = zoom
    else:
        layer, strength = st.columns([3, 2])
        kind = layer.selectbox("Show", OVERLAYS, index=1, key="overlay_kind")
        opacity = strength.slider("Overlay strength", 0.0, 1.0, 0.45, 0.05, key="overlay_opacity",
                                  disabled=kind in (OVERLAYS[0], OVERLAYS[1]))
        cam_class = None
        if kind == OVERLAYS[4]:
            target = st.selectbox("Show what drove the model towards", CLASSES, index=CLASSES.index(stored.predicted_class),
                                  format_func=lambda c: f"{CLASS_NAMES[c]} ({c})", key="gradcam_class")
            if target != stored.predicted_class:
                cam_class = target
                if _gradcam_for(case.id, target, stored.weights_sha256) is None:
                    st.caption("Grad-CAM for another class needs the model that made this prediction; it is not loaded.")
                    cam_class = None
        zoom = _zoom_picture(case.id) if kind in (OVERLAYS[0], OVERLAYS[1]) else None
        if zoom is not None:
            url, picture_size = zoom  # the image without a heat map: the sharper copy, for zooming in
        else:
            url = _picture_url(case.id, stored.id, kind, opacity, cam_class)
        contour, measured = _outline(case.id, stored.id, case.mm_per_pixel)
        if kind != OVERLAYS[0] and contour:
            lines.append(Line("lesion outline (the model's)", [tuple(p) for p in contour], "#00d000", closed=True))
            if measured is not None:
                lines.append(Line("longest diameter (outline)", list(measured.diameter_ends), "#ffd400", dash="dot"))
        st.caption(VIEWER_LEGENDS[kind])
    for length in get_store().measurements(case.id):
        name = (f"ruler, {length.length_mm:g} mm" if length.kind == SCALE else f"diameter {length.length_mm:.1f} mm "
                f"(by {length.measured_by})")
        lines.append(Line(name, list(length.points), "#ff00ff" if length.kind == SCALE else "#00c8ff"))
    figure = viewer_figure(url, width, height, lines, view_width=400, picture_size=picture_size)
    st.plotly_chart(figure, config=VIEWER_CONFIG, width="stretch", key="case_viewer")
    st.caption("Scroll to zoom, drag to move; double-click to see the whole image again.")
    if measured is not None:
        st.markdown("**Measured on the model's lesion outline** (approximate: a poor outline gives poor measurements)")
        st.markdown("\n".join(f"- {plain_markdown(line)}" for line in measured.describe()))
        if case.scale_source:
            st.caption(f"Scale: {case.scale_source}.")


class _StoredJpeg:
    """A stored JPEG handed to the measuring component as it is: it takes "an object with a save method"."""

    def __init__(self, data: bytes):
        self.data = data

    def save(self, buffer, **_) -> None:
        buffer.write(self.data)


def _measure_tool(store, case, image: np.ndarray) -> None:
    """Calibrate on the ruler, then measure the longest diameter, by dragging across the image."""
    # The expanders open and close with a rerun: their state survives the page's reruns, and what is inside
    # (here a full-size picture for the browser) is only made while open.
    tool = st.expander("Measure in millimetres", key="measure_open", on_change="rerun")
    with tool:
        if not tool.open:
            return
        kind = st.radio("What to measure", (SCALE, DIAMETER), horizontal=True, key="measure_kind",
                        format_func=lambda k: ("1. Calibrate: drag between two ruler marks" if k == SCALE
                                               else "2. Measure: drag across the lesion's longest diameter"))
        zoom = store.zoom_jpeg(case.id)
        picture = _StoredJpeg(zoom) if zoom is not None else image  # the sharper copy where there is one
        drag = streamlit_image_coordinates(picture, key=f"measure_drag_{case.id}", click_and_drag=True,
                                           use_column_width="always", cursor="crosshair", image_format="JPEG",
                                           jpeg_quality=90)
        if not drag or drag.get("x2") is None or not drag.get("width"):
            st.caption("Drag with the mouse from one end of the length to the other.")
            return
        factor = image.shape[1] / float(drag["width"])
        points = [[drag["x1"] * factor, drag["y1"] * factor], [drag["x2"] * factor, drag["y2"] * factor]]
        pixels = math.dist(*points)
        name = reviewer() or ""
        try:
            if kind == SCALE:
                millimetres = st.number_input("Distance between the two marks (mm)", 0.1, 100.0, 5.0, 0.5,
                                              key="ruler_mm")
                st.caption(f"{pixels:.0f} pixels dragged: {millimetres / max(pixels, 1e-9) * 1000:.1f} µm per pixel.")
                if st.button("Save the scale", key="save_scale"):
                    store.add_measurement(case.id, name, SCALE, points, millimetres)
                    st.session_state["saved_message"] = f"Scale saved: {millimetres:g} mm over {pixels:.0f} pixels."
                    st.rerun()
            else:
                if case.mm_per_pixel is None:
                    st.warning("The image has no scale yet: calibrate on the ruler first.")
                    return
                st.caption(f"{pixels:.0f} pixels dragged ≈ {pixels * case.mm_per_pixel:.1f} mm ({case.scale_source}).")
                if st.button("Save the diameter", key="save_diameter"):
                    saved = store.add_measurement(case.id, name, DIAMETER, points)
                    st.session_state["saved_message"] = f"Longest diameter saved: {saved.length_mm:.1f} mm."
                    st.rerun()
        except InvalidText as exc:
            st.error(f"Not saved: {plain_markdown(str(exc))}.")


def _correction_form(store, case) -> None:
    """Patient id, lesion id, age, sex and site, corrected on the record (the imported values are kept)."""
    corrections = st.expander("Correct the patient or lesion details", key="correct_open", on_change="rerun")
    with corrections:
        if not corrections.open:
            return
        site_now = (case.metadata.site.region, case.metadata.site.fine)
        # The site as stored is always offered, so saving another field never changes it unasked.
        sites = _SITE_CHOICES if site_now in _SITE_CHOICES else [*_SITE_CHOICES, site_now]
        with st.form(f"correct_{case.id}"):
            patient = st.text_input("Patient id", case.patient_id or "", max_chars=LIMITS["patient id"],
                                    key=f"fix_patient_{case.id}")
            lesion = st.text_input("Lesion id", case.lesion_id or "", max_chars=LIMITS["lesion id"], key=f"fix_lesion_{case.id}")
            age = st.number_input("Age (years)", 0.0, 120.0, case.metadata.age, 1.0, "%.0f", key=f"fix_age_{case.id}",
                                  placeholder="unknown")
            sex = st.selectbox("Sex", [None, *SEXES], index=[None, *SEXES].index(case.metadata.sex), key=f"fix_sex_{case.id}",
                               format_func=lambda v: v or "unknown")
            site = st.selectbox("Anatomic site", sites, key=f"fix_site_{case.id}", format_func=_site_label,
                                index=sites.index(site_now))
            submitted = st.form_submit_button("Save the corrections")
        if case.edited:
            st.caption("Corrected in the app before: " + ", ".join(c.replace("_", " ") for c in case.edited)
                       + ". The imported values stay on record.")
        if not submitted:
            return
        changes = {"patient_id": patient, "lesion_id": lesion, "age": age, "sex": sex, "site_region": site[0],
                   "site_fine": site[1]}
        try:
            _, model_input_changed = store.edit_case(case.id, reviewer() or "", changes)
        except InvalidText as exc:
            st.error(f"Not saved: {plain_markdown(str(exc))}.")
            return
        message = "Corrections saved."
        predictor = get_predictor() if model_input_changed else None
        if predictor is not None:
            with st.spinner("Analysing the case again with the corrected details …"):
                reanalyse_case(case.id, store, predictor, reviewer() or "", get_assessor())
            message += (" The model analysed the case again with them; a decision made before stays beside the earlier "
                        "result, and the case is back to review.")
        elif model_input_changed:
            message += " The model is not available, so the result shown is still the one made with the old details."
        st.session_state["saved_message"] = message
        st.rerun()


def _downloads(store, case, patient_ids: list[int]) -> None:
    who = reviewer() or "unnamed"
    installed = installed_card()
    today = dt.datetime.now(dt.UTC)
    for kind, label in (("pdf", "Case report (PDF)"), ("html", "Case report (HTML, for e-mail)")):
        def make(kind: str = kind) -> bytes:  # made only when asked for: it draws and encodes every picture
            store.log_export(who, f"case report ({kind})", [case.id])
            return report_file(store, [case.id], who, kind, installed).data

        st.download_button(label, make, file_name=report_name(case.name, kind, today), mime="application/pdf"
                           if kind == "pdf" else "text/html", key=f"case_report_{kind}", on_click="ignore",
                           icon=":material/download:", width="stretch")
    if case.patient_id:
        def patient_pdf() -> bytes:
            store.log_export(who, "patient report (pdf)", patient_ids)
            return report_file(store, patient_ids, who, "pdf", installed, patient_id=case.patient_id).data

        st.download_button(f"All {len(patient_ids)} case(s) of this patient (PDF)", patient_pdf,
                           file_name=report_name(patient_subject(case.patient_id), "pdf", today), mime="application/pdf",
                           key="patient_report", on_click="ignore", icon=":material/download:", width="stretch")


def _model_answer(case, stored) -> None:
    top = stored.predicted_class
    st.caption("Model's top diagnosis")
    st.subheader(f"{CLASS_NAMES[top]} ({top}): {percent_text(float(stored.probabilities[CLASSES.index(top)]))}",
                 anchor=False)
    installed = installed_card()
    metrics = metrics_of(installed, stored.weights_sha256)
    recall = class_recall_text(metrics, top) if metrics is not None else None
    if recall:
        st.caption(recall)
    if stored.follows_decision_rule:
        st.caption(decision_rule_text(stored.predicted_class, stored.most_probable_class, float(stored.probabilities.max())))
    st.metric("Malignancy probability", percent_text(stored.malignancy),
              f"± {stored.malignancy_spread * 100:.0f} points across views", delta_color="off", delta_arrow="off",
              help="P(melanoma) + P(basal cell carcinoma) + P(actinic keratosis / intraepithelial carcinoma); "
                   "the ± is the standard deviation over the flipped and turned views the model looked at.")
    if stored.prediction_set:
        st.markdown(prediction_set_text(stored.prediction_set))
    for flag in stored.flags:
        if flag.code == SUSPICIOUS:
            st.error(f"**{plain_markdown(flag.reason)}**", icon=":material/priority_high:")
    if stored.needs_manual_check:
        st.error("**Manual check needed.** " + " ".join(plain_markdown(f.reason) for f in stored.flags if f.serious))
    for flag in [f for f in stored.flags if not f.serious and f.code != SUSPICIOUS]:
        st.warning(plain_markdown(flag.reason))
    if not stored.flags:
        st.success("No warning signs found for this prediction.")
    highlighted = stored.prediction_set or (top,)
    st.plotly_chart(probability_chart(dict(zip(CLASSES, map(float, stored.probabilities), strict=True)), highlighted),
                    config=CHART_CONFIG, width="stretch", key="probability_chart")
    st.caption(("Dark bars: the diagnoses the model cannot exclude. " if stored.prediction_set else "Dark bar: the top "
                "diagnosis. ") + ("Probabilities are calibrated (temperature scaling on held-out data): in the "
                                  "evaluation, a diagnosis shown at 80 % was right about 80 % of the time."
                                  if stored.calibrated else "These probabilities are not calibrated: read them as a "
                                                            "ranking, not as frequencies."))
    meta = stored.metadata_used
    st.caption("Metadata the model used: "
               f"age {plain_markdown(f'{meta.age:g}') if meta.age is not None else 'unknown'}, "
               f"sex {plain_markdown(meta.sex or 'unknown')}, site {plain_markdown(meta.site.label)}.")
    st.caption(f"Model {plain_markdown(stored.model_version)}, model id {stored.weights_sha256[:12]}, "
               f"analysed {stored.created_at:%Y-%m-%d %H:%M} UTC.")
    if installed is not None and metrics is None:
        st.info(older_model_text(stored.model_version, installed.version))


# Streamlit leaves 6 rem above the title; with 3 rem the decision form fits a 1440×900 screen unscrolled.
_LESS_SPACE_ABOVE = "<style>[data-testid='stMainBlockContainer']{padding-top:3rem}</style>"


def page() -> None:
    store = get_store()
    queue = _review_queue(store)
    case_id = _current_case_id(store, queue)
    if case_id is None:
        st.title("Case review")
        st.info("No cases yet. Import dermoscopy images or DICOM files to start.")
        return
    queue = queue.including(case_id)
    st.session_state["review_queue"] = queue.case_ids
    st.session_state["case_id"] = case_id
    st.query_params["case"] = str(case_id)
    case = store.case(case_id)
    stored = store.latest_prediction(case_id)
    image = _case_image(case_id)

    st.html(_LESS_SPACE_ABOVE)
    st.title(f"Case {plain_markdown(case.name)}", anchor=False)
    saved_message = st.session_state.pop("saved_message", None)
    if saved_message:
        st.success(saved_message)
    _navigation(queue, case_id)
    if case.notes:
        for note in case.notes:
            st.caption(f"About this file: {plain_markdown(note)}")

    picture, answer, decision = st.columns([5, 4, 3], gap="medium")
    with picture:
        if stored is None:
            st.warning("The model did not analyse this image. Review it without model support.")
        _viewer(case, stored, image)
    with decision:
        latest = store.latest_decision(case_id)
        if latest is not None and not latest.made_on(stored):
            st.warning(f"Back to review: the last decision ({plain_markdown(latest.label)}, by "
                       f"{plain_markdown(latest.reviewer)}) was made on an earlier result "
                       f"({plain_markdown(latest.made_on_text)}). The case was analysed again since; it is kept below "
                       "beside the result it was made on.")
        _decision_form(store, queue, case, latest, stored)
        history = store.decisions(case_id)
        if history:
            st.markdown("**Decisions on this case**")
            st.dataframe(pd.DataFrame([{"when (UTC)": f"{d.created_at:%Y-%m-%d %H:%M}", "reviewer": d.reviewer,
                                        "decision": d.label, "made on": d.made_on_text, "note": d.note}
                                       for d in reversed(history)]),
                         hide_index=True, width="stretch")
    with answer:
        if stored is not None:
            _model_answer(case, stored)
        patient = case.patient_id
        st.caption(f"Patient: {plain_markdown(patient) if patient else 'not given'} · lesion "
                   f"{plain_markdown(case.lesion_id) if case.lesion_id else 'not given'} · imported "
                   f"{case.imported_at:%Y-%m-%d %H:%M} UTC by {plain_markdown(case.imported_by)}"
                   + (f" · {plain_markdown(case.acquisition.describe())}" if not case.acquisition.is_empty else ""))
        # One read of the patient's (or, without a patient id, the lesion's) cases serves the comparison and reports.
        related = (store.case_records(patient_id=patient) if patient else
                   store.case_records(lesion_id=case.lesion_id) if case.lesion_id else [])
        series = series_of_case(related, case)
        if series and st.button(f"Compare {len(series)} images of this lesion", key="to_lesion", width="stretch"):
            st.session_state["lesion_case_id"] = case_id
            st.switch_page(LESION_PAGE)
        if patient and st.button("This patient's other lesions", key="to_patient", width="stretch"):
            st.session_state["patient_id"] = patient
            st.switch_page("pages/3_Patient_context.py")
        _correction_form(store, case)
        _downloads(store, case, [r.case.id for r in related] if patient else [])
    _measure_tool(store, case, image)  # the page's full width: a wide picture is measured more precisely
    if stored is not None:
        _similar_cases(stored)


run_guarded(page)
