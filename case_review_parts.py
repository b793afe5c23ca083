"""Parts of the case-review page (pages/2_Case_review.py), kept here to keep the page short: moving along the
review queue, and the panels beside the image and the decision (the model's answer, similar training cases, the
measuring tool, corrections, links to the lesion and the patient, the reports, the outcome). Layout only: what they
show is worked out in skinapp/workflow/case_view.py and outcome_view.py. Not in pages/: Streamlit would list it as a
page."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import streamlit as st

from app_components import measure_line
from app_shared import (
    LESION_PAGE,
    get_assessor,
    installed_card,
    model_for_result,
    open_case,
    pacs_server,
    reviewer,
    shipped_card,
)
from skinapp.inference.assessment import training_image_path
from skinapp.outcomes import BRESLOW_MAX_MM, EARLIEST_RESULT
from skinapp.pacs.exchange import send_state
from skinapp.pacs.send import send_result
from skinapp.reporting.body_map import body_map_figure, site_of_selection
from skinapp.reporting.charts import CHART_CONFIG, probability_chart
from skinapp.reporting.structure_text import structure_lines
from skinapp.reporting.viewer import jpeg_data_url
from skinapp.store import InvalidText, OutcomeConflict, Store, StoredCase, StoredPrediction
from skinapp.store.limits import LIMITS, checked
from skinapp.store.records import DIAMETER, SCALE
from skinapp.vocab import CLASS_NAMES, SEXES, SITE_PROFILE_MARK, Site
from skinapp.workflow import case_view as view
from skinapp.workflow import outcome_view
from skinapp.workflow.analysis import reanalyse_case
from skinapp.workflow.followup import series_of_case
from skinapp.workflow.letters import letter_file
from skinapp.workflow.queue import ReviewQueue
from skinapp.workflow.reports import FORMATS, patient_subject, report_file, report_name


def _move(case_id: int, target: int) -> None:
    """Go to another case, unless that would drop what the reviewer started here without saving."""
    if view.has_draft(*(st.session_state.get(k) for k in view.draft_keys(case_id))):
        st.session_state["pending_move"] = (case_id, target)
        st.rerun()
    open_case(target)


def navigation(queue: ReviewQueue, case_id: int) -> None:
    previous_id, next_id = queue.previous(case_id), queue.next(case_id)
    previous, counter, following = st.columns([1, 2, 1])
    if previous.button("← Previous (K)", shortcut="K", disabled=previous_id is None, key="previous_case",
                       width="stretch") and previous_id is not None:
        _move(case_id, previous_id)
    counter.markdown(f"<div style='text-align:center'>Case {queue.position(case_id)} of {len(queue)} in your review "
                     "queue</div>", unsafe_allow_html=True)  # fixed text only: no user string goes into HTML
    if following.button("Next (J) →", shortcut="J", disabled=next_id is None, key="next_case",
                        width="stretch") and next_id is not None:
        _move(case_id, next_id)
    pending = st.session_state.get("pending_move")
    if pending and pending[0] == case_id:
        st.warning("Your decision or note on this case is not saved. Save it below, or leave it unsaved.")
        leave, stay, _ = st.columns([1, 1, 2])
        if leave.button("Leave without saving", key="leave_unsaved"):
            st.session_state.pop("pending_move", None)
            for key in view.draft_keys(case_id):
                st.session_state.pop(key, None)
            open_case(pending[1])
        if stay.button("Stay on this case", key="stay_unsaved"):
            st.session_state.pop("pending_move", None)
            st.rerun()


def model_answer(stored: StoredPrediction) -> None:
    """Compact: the top diagnosis, the malignancy, the risk warning and up to three reasons in view; everything
    else (each diagnosis's probability, the set, the structures, which model) one click away."""
    answer = view.model_answer(stored, installed_card())
    st.caption("Model's top diagnosis")
    st.subheader(answer.call, anchor=False)
    st.metric("Malignancy probability", answer.malignancy, answer.malignancy_spread, delta_color="off",
              delta_arrow="off", help=view.MALIGNANCY_HELP)
    for warning in answer.suspicious:
        st.error(warning, icon=":material/priority_high:")
    for warning in answer.cannot_exclude:
        st.warning(warning, icon=":material/visibility:")
    if answer.low:
        st.info(answer.low)
    if answer.manual_check:
        st.error(answer.manual_check)
    for warning in answer.warnings[:view.REASONS_IN_VIEW]:
        st.warning(warning)
    if not stored.flags:
        st.success("No warning signs found for this prediction.")
    if answer.older_model:
        st.info(answer.older_model)
    with st.expander("Details: every diagnosis, the structures, the model", icon=":material/info:"):
        for warning in answer.warnings[view.REASONS_IN_VIEW:]:
            st.warning(warning)
        for caption in (answer.recall, answer.rule):
            if caption:
                st.caption(caption)
        if answer.prediction_set:
            st.markdown(answer.prediction_set)
        st.plotly_chart(probability_chart(answer.probabilities, answer.highlighted), config=CHART_CONFIG,
                        width="stretch", key="probability_chart")
        structures(stored)
        for caption in (answer.chart_caption, answer.metadata_caption, answer.model_caption):
            st.caption(caption)


def structures(stored: StoredPrediction) -> None:
    """Structures the model sees, with each probability and how well it was measured."""
    if stored.structures is None:
        return
    card, shipped = installed_card(), shipped_card()
    made_by = [c for c in (card, shipped) if c is not None and c.identity == stored.weights_sha256]
    lines, caption = structure_lines(stored, made_by[0].structures if made_by else None)
    st.markdown("**Structures the model sees**")
    if not lines:
        profiled = card is not None and stored.model_version.startswith(card.version + SITE_PROFILE_MARK)
        st.caption("Not shown: the structures' figures were measured for the installed model as shipped, and this "
                   "result was made by " + ("it with a site profile." if profiled else "another model."))
        return
    st.markdown("\n".join(f"- {'**' if line.likely else ''}{line.name}: {line.probability}{'**' if line.likely else ''} "
                          f"({line.auc})" for line in lines))
    st.caption(caption + " Show one on the image: layer “Where it sees a structure”.")


def similar_cases(stored: StoredPrediction) -> None:
    shown = st.expander("Similar labelled cases from the training data", key="similar_open", on_change="rerun")
    with shown:
        if not shown.open:
            return
        assessor = get_assessor()  # loaded only when asked for
        neighbours = assessor.similar_cases(stored.embedding, k=5) if assessor is not None else []
        if not neighbours:
            st.caption("No similar-case index ships with this model.")
            return
        st.caption("The five HAM10000 images the model finds most alike, with their confirmed diagnoses. Closeness: "
                   "100 is the same image to the model, 0 is as alike as a typical training image.")
        if training_image_path(neighbours[0].image_id) is None:
            st.caption("Their pictures are not shipped with the model (the HAM10000 licence does not allow it); they "
                       "appear where this machine has the HAM10000 images (administrators: SKINAPP_TRAINING_IMAGES).")
        for column, neighbour in zip(st.columns(len(neighbours)), neighbours, strict=True):
            picture = training_image_path(neighbour.image_id)
            if picture is not None:
                column.image(str(picture), width="stretch")
            column.markdown(f"**{CLASS_NAMES[neighbour.label]}** ({neighbour.label})")
            if neighbour.closeness is not None:
                column.progress(float(min(max(neighbour.closeness, 0.0), 1.0)))
            column.caption(f"{neighbour.closeness_text} · similarity {neighbour.similarity:.4f} · {neighbour.image_id}")


def measure_tool(store: Store, case: StoredCase, image: np.ndarray) -> None:
    """Calibrate on the ruler, then measure the longest diameter, by dragging across the image: the line is drawn
    while dragging, with its length beside it, and the result and its Save button sit beside the picture."""
    # The expanders open and close with a rerun: their state survives the page's reruns, and what is inside
    # (here a full-size picture for the browser) is only made while open.
    tool = st.expander("Measure in millimetres", key="measure_open", on_change="rerun")
    with tool:
        if not tool.open:
            return
        picture, beside = st.columns([3, 1], gap="medium")
        with beside:
            kind = st.radio("What to measure", (SCALE, DIAMETER), key="measure_kind",
                            format_func=lambda k: ("1. Calibrate: drag between two ruler marks" if k == SCALE
                                                   else "2. Measure: drag across the lesion's longest diameter"))
        zoom = store.zoom_jpeg(case.id)
        with picture:  # the sharper copy where there is one; lengths stay in the stored image's pixels
            drag = measure_line(jpeg_data_url(zoom if zoom is not None else image), image.shape[1], image.shape[0],
                                view.measurement_lines(store.measurements(case.id)),
                                case.mm_per_pixel if kind == DIAMETER else None, key=f"measure_drag_{case.id}")
        with beside:
            _measured(store, case, kind, view.dragged_length(drag, image.shape[1]))


def _measured(store: Store, case: StoredCase, kind: str, length: view.DraggedLength | None) -> None:
    if length is None:
        st.caption("Drag with the mouse from one end of the length to the other.")
        return
    name = reviewer() or ""
    try:
        if kind == SCALE:
            millimetres = st.number_input("Distance between the two marks (mm)", 0.1, 100.0, 5.0, 0.5, key="ruler_mm")
            st.caption(view.ruler_text(length, millimetres))
            if st.button("Save the scale", key="save_scale"):
                store.add_measurement(case.id, name, SCALE, length.points, millimetres)
                st.session_state["saved_message"] = view.scale_saved_text(length, millimetres)
                st.rerun()
        else:
            preview = view.diameter_text(length, case)
            if preview is None:
                st.warning("The image has no scale yet: calibrate on the ruler first.")
                return
            st.caption(preview)
            if st.button("Save the diameter", key="save_diameter"):
                saved = store.add_measurement(case.id, name, DIAMETER, length.points)
                st.session_state["saved_message"] = view.diameter_saved_text(saved)
                st.rerun()
    except InvalidText as exc:
        st.error(view.not_saved_text(exc))


def _body_map(case: StoredCase, sites: list[view.SiteChoice]) -> None:
    """Pick the site by pointing at it: the click sets the form's site below, which is saved with the form."""
    key, seen = f"fix_site_{case.id}", f"body_map_seen_{case.id}"
    st.session_state.setdefault(key, (case.metadata.site.region, case.metadata.site.fine))  # the form's site
    event = st.plotly_chart(body_map_figure(Site(*st.session_state[key]), height=300), on_select="rerun",
                            selection_mode="points", key=f"body_map_{case.id}", config={"displayModeBar": False},
                            width="stretch")
    picked = site_of_selection(event)
    choice = (picked.region, picked.fine) if picked is not None else None
    if choice != st.session_state.get(seen):  # a new click (a site chosen in the list later is left alone)
        st.session_state[seen] = choice
        if choice is not None and choice in sites:
            st.session_state[key] = choice
            st.rerun()
    st.caption("Click the lesion's site on the body (front or back), or choose it below; then save.")


def correction_form(store: Store, case: StoredCase) -> None:
    """Patient id, lesion id, age, sex, site and the date taken, corrected on the record (the imported values are
    kept)."""
    corrections = st.expander("Correct the patient or lesion details", key="correct_open", on_change="rerun")
    with corrections:
        if not corrections.open:
            return
        sites, _ = view.site_choices(case)
        _body_map(case, sites)
        with st.form(f"correct_{case.id}"):
            patient = st.text_input("Patient id", case.patient_id or "", max_chars=LIMITS["patient id"],
                                    key=f"fix_patient_{case.id}")
            lesion = st.text_input("Lesion id", case.lesion_id or "", max_chars=LIMITS["lesion id"], key=f"fix_lesion_{case.id}")
            age = st.number_input("Age (years)", 0.0, 120.0, case.metadata.age, 1.0, "%.0f", key=f"fix_age_{case.id}",
                                  placeholder="unknown")
            sex = st.selectbox("Sex", [None, *SEXES], index=[None, *SEXES].index(case.metadata.sex), key=f"fix_sex_{case.id}",
                               format_func=lambda v: v or "unknown")
            site = st.selectbox("Anatomic site", sites, key=f"fix_site_{case.id}", format_func=view.site_label)
            taken_on = st.date_input("Date the picture was taken", view.taken_on(case), min_value=dt.date(1900, 1, 1),
                                     max_value="today", format="YYYY-MM-DD", key=f"fix_taken_{case.id}",
                                     help="Read from the file where it says (DICOM acquisition date, photo's EXIF "
                                          "date); orders the lesion's pictures over time. Empty: unknown.")
            submitted = st.form_submit_button("Save the corrections")
        edited = view.edited_text(case)
        if edited:
            st.caption(edited)
        if not submitted:
            return
        try:
            _, model_input_changed = store.edit_case(case.id, reviewer() or "",
                                                     view.case_changes(patient, lesion, age, sex, site, taken_on))
        except InvalidText as exc:
            st.error(view.not_saved_text(exc))
            return
        predictor = None
        if model_input_changed:  # the model that made the result where it can run here (its site profile kept)
            predictor = model_for_result(store.latest_weights(case.id), for_new_result=True)
        if predictor is not None:
            with st.spinner("Analysing the case again with the corrected details …"):
                reanalyse_case(case.id, store, predictor, reviewer() or "", get_assessor())
        st.session_state["saved_message"] = view.corrections_saved_text(model_input_changed, predictor is not None)
        st.rerun()


def _downloads(store: Store, case: StoredCase, patient_ids: list[int]) -> None:
    who, installed, today = reviewer() or "unnamed", installed_card(), dt.datetime.now(dt.UTC)
    for kind, label in view.CASE_REPORTS:
        def make(kind: str = kind) -> bytes:  # made only when asked for: it draws and encodes every picture
            store.log_export(who, f"case report ({kind})", [case.id])
            return report_file(store, [case.id], who, kind, installed).data

        st.download_button(label, make, file_name=report_name(case.name, kind, today), mime=FORMATS[kind],
                           key=f"case_report_{kind}", on_click="ignore", icon=":material/download:", width="stretch")
    if patient := case.patient_id:
        def patient_pdf() -> bytes:
            store.log_export(who, "patient report (pdf)", patient_ids)
            return report_file(store, patient_ids, who, "pdf", installed, patient_id=patient).data

        st.download_button(f"All {len(patient_ids)} case(s) of this patient (PDF)", patient_pdf,
                           file_name=report_name(patient_subject(patient), "pdf", today), mime=FORMATS["pdf"],
                           key="patient_report", on_click="ignore", icon=":material/download:", width="stretch")


def related(store: Store, case: StoredCase) -> None:
    """Links to the lesion's other images and the patient's other lesions, the corrections and the reports."""
    records = view.related_records(store, case)  # one read serves the comparison and the patient's report
    series = series_of_case(records, case)
    if series and st.button(f"Compare {len(series)} images of this lesion", key="to_lesion", width="stretch"):
        st.session_state["lesion_case_id"] = case.id
        st.switch_page(LESION_PAGE)
    if case.patient_id and st.button("This patient's other lesions", key="to_patient", width="stretch"):
        st.session_state["patient_id"] = case.patient_id
        st.switch_page("pages/3_Patient_context.py")
    correction_form(store, case)
    _downloads(store, case, [r.case.id for r in records] if case.patient_id else [])
    _letter(store, case)


def _letter(store: Store, case: StoredCase) -> None:
    """A referral or report letter: the clinic's letterhead, the addressee and question, the decision first."""
    panel = st.expander("Write a referral or report letter (PDF)", key="letter_open", on_change="rerun")
    with panel:
        if not panel.open:
            return
        addressee = st.text_area("To", key=f"letter_to_{case.id}", max_chars=LIMITS["addressee"], height=90,
                                 placeholder="Name, department, address")
        question = st.text_area("Clinical question or reason for referral", key=f"letter_question_{case.id}",
                                max_chars=LIMITS["clinical question"], height=90)
        who = reviewer() or "unnamed"
        try:  # checked now, not when the file is made: a refused text is said here, never as an error page
            checked("addressee", addressee, multiline=True)
            checked("clinical question", question, multiline=True)
        except InvalidText as exc:
            st.error(view.not_saved_text(exc))
            return

        def make() -> bytes:  # written when the button is pressed, and recorded in the audit log
            store.log_export(who, "letter (pdf)", [case.id])
            return letter_file(store, case.id, who, addressee, question, installed_card()).data

        st.download_button("Download the letter", make, file_name=report_name(f"letter_{case.name}", "pdf",
                                                                              dt.datetime.now(dt.UTC)),
                           mime=FORMATS["pdf"], key="letter_download", on_click="ignore", icon=":material/download:",
                           width="stretch")
        st.caption("Your decision and diagnosis come first; the model's answer follows as decision support, named with "
                   "its version. The clinic's letterhead is set by an administrator.")


def outcome_panel(store: Store, case: StoredCase) -> None:
    """What the lesion turned out to be: the latest outcome always in view; the form and the history on request."""
    history = store.outcomes(case.id)
    latest = history[-1] if history else None
    st.markdown(outcome_view.latest_outcome_text(latest))
    panel = st.expander("Record the outcome (histopathology or follow-up)", key="outcome_open", on_change="rerun")
    with panel:
        if not panel.open:
            return
        seen_key = f"seen_outcome_{case.id}"
        with st.form(f"outcome_{case.id}"):
            kind = st.selectbox("Outcome", outcome_view.KIND_CHOICES, format_func=outcome_view.kind_choice_label,
                                key=f"outcome_kind_{case.id}")
            diagnosis = st.selectbox("Diagnosis", outcome_view.DIAGNOSIS_CHOICES, key=f"outcome_diagnosis_{case.id}",
                                     format_func=outcome_view.diagnosis_choice_label)
            breslow = st.number_input("Breslow thickness in mm (invasive melanoma only)", 0.0, BRESLOW_MAX_MM, None, 0.1,
                                      "%.2f", key=f"outcome_breslow_{case.id}", placeholder="none")
            words = st.text_input("The diagnosis in words (with “Other”)", max_chars=LIMITS["diagnosis in words"],
                                  key=f"outcome_words_{case.id}")
            today = dt.date.today()
            result_date = st.date_input("Date of the result", today, EARLIEST_RESULT, today, key=f"outcome_date_{case.id}")
            reference = st.text_input("Laboratory reference (optional)", max_chars=LIMITS["lab reference"],
                                      key=f"outcome_reference_{case.id}")
            note = st.text_area("Note on the outcome", max_chars=LIMITS["note"], height=68, key=f"outcome_note_{case.id}")
            submitted = st.form_submit_button("Save the outcome")
        if history:
            st.markdown("**Outcomes entered on this case** (latest first; each corrected the one below it)")
            st.dataframe(pd.DataFrame(outcome_view.outcome_history(history)), hide_index=True, width="stretch")
        if submitted:
            day = result_date if isinstance(result_date, dt.date) else None
            problem = outcome_view.outcome_problem(kind, day)
            if problem is not None or day is None:
                st.error(problem)
            else:
                seen = st.session_state.get(seen_key, latest.id if latest else None)
                try:
                    saved = store.record_outcome(outcome_view.outcome_entry(
                        case.id, kind, diagnosis, breslow, day, words, reference, note), reviewer() or "",
                        seen_outcome_id=seen)
                except OutcomeConflict as conflict:
                    st.warning(outcome_view.outcome_conflict_text(conflict.current))
                    latest = conflict.current
                except InvalidText as exc:
                    st.error(view.not_saved_text(exc))
                else:
                    st.session_state.pop(seen_key, None)
                    st.session_state["saved_message"] = outcome_view.outcome_saved_text(saved)
                    st.rerun()
        st.session_state[seen_key] = latest.id if latest else None


def pacs_panel(store: Store, case: StoredCase) -> None:
    """The result's copy in the clinic's PACS: where it stands, and an explicit send once a decision is saved."""
    server = pacs_server()
    if server is None:
        return
    state = send_state(store, case)
    st.caption(state.text)
    if not state.sendable:
        return
    if st.button("Send the result to the PACS", key=f"pacs_send_{case.id}", icon=":material/send:", width="stretch"):
        with st.spinner("Sending to the PACS …"):
            outcome = send_result(server, store, case.id, reviewer() or "unnamed")
        if outcome.sent:
            st.success(f"Sent: the PACS now holds the result and your decision in the image's study ({server.shown}).")
        else:
            st.error(f"Not sent: {outcome.message}. Nothing was marked as sent; try again later.")
