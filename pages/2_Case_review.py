"""Case review: the image with switchable overlays, the model's answer with its uncertainty and flags, the
metadata it used, and the reviewer's decision (saved at once, never silently over a colleague's)."""

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app_shared import get_assessor, get_predictor, get_store, installed_card, open_case, reviewer, run_guarded
from skinapp.reporting.case_report import case_report_html
from skinapp.reporting.overlay import OVERLAYS, as_prediction, overlay
from skinapp.reporting.text import decision_rule_text, older_model_text, plain_markdown, prediction_set_text
from skinapp.store import DECISIONS, DecisionConflict, InvalidText, PredictionChanged
from skinapp.store.limits import LIMITS
from skinapp.trust.assessment import training_image_path
from skinapp.trust.flags import SUSPICIOUS
from skinapp.vocab import CLASS_NAMES, CLASSES
from skinapp.workflow.queue import ReviewQueue
from skinapp.workflow.worklist import worklist


@st.cache_data(max_entries=64, show_spinner="Computing Grad-CAM …")
def _gradcam_for(case_id: int, class_name: str, weights_sha256: str) -> object:
    store, predictor = get_store(), get_predictor()
    if predictor is None or predictor.card.identity != weights_sha256:
        return None  # the model that made this prediction is not the one loaded: do not mix them
    case = store.case(case_id)
    return predictor.explain_class(store.case_image(case_id), class_name, case.metadata)


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


def _probability_chart(probabilities: dict[str, float]) -> go.Figure:
    names = [f"{CLASS_NAMES[c]} ({c})" for c in probabilities]
    figure = go.Figure(go.Bar(x=list(probabilities.values()), y=names, orientation="h",
                              text=[f"{p:.0%}" for p in probabilities.values()], textposition="auto"))
    figure.update_layout(height=280, margin=dict(l=0, r=0, t=10, b=0), xaxis=dict(range=[0, 1], tickformat=".0%"),
                         yaxis=dict(autorange="reversed"))
    return figure


def _similar_cases(stored) -> None:
    assessor = get_assessor()
    neighbours = assessor.similar_cases(stored.embedding, k=5) if assessor is not None else []
    with st.expander("Similar labelled cases from the training data", expanded=False):
        if not neighbours:
            st.caption("No similar-case index ships with this model.")
            return
        st.caption("The five HAM10000 images the model finds most alike (cosine similarity of its embedding), with "
                   "their confirmed diagnoses. Pictures appear where the training images are configured "
                   "(SKINAPP_TRAINING_IMAGES).")
        for column, neighbour in zip(st.columns(len(neighbours)), neighbours, strict=True):
            picture = training_image_path(neighbour.image_id)
            if picture is not None:
                column.image(str(picture), width="stretch")
            column.caption(f"{CLASS_NAMES[neighbour.label]} ({neighbour.label}) · similarity {neighbour.similarity:.2f} · "
                           f"{neighbour.image_id}")


_DECISION_KEYS = dict(zip(DECISIONS, ("1", "2", "3", "4", "5"), strict=True))
_SHORT_LABELS = {"agree": "Agree", "disagree": "Disagree", "biopsy": "Biopsy", "follow_up": "Follow-up",
                 "manual_check": "Manual check"}


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
    for column, (decision, key) in zip(st.columns(len(_DECISION_KEYS)), _DECISION_KEYS.items(), strict=True):
        column.button(_SHORT_LABELS.get(decision, decision), shortcut=key, key=f"pick_{decision}",
                      help=f"{DECISIONS[decision]} (key {key})", width="stretch",
                      on_click=st.session_state.__setitem__, args=(choice_key, decision))
    choice = st.radio("Decision (keys 1–5)", list(DECISIONS), key=choice_key, index=None,
                      format_func=lambda d: f"{_DECISION_KEYS[d]} · {DECISIONS[d]}")
    diagnosis = st.selectbox("Your diagnosis (when you disagree)", [None, *CLASSES], key=diagnosis_key,
                             format_func=lambda c: "—" if c is None else f"{CLASS_NAMES[c]} ({c})")
    note = st.text_area("Note", key=note_key, max_chars=LIMITS["note"], height=80)
    submitted = st.button("Save decision (Ctrl+Enter)", type="primary", shortcut="Ctrl+Enter", key="save_decision")
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
    image = store.case_image(case_id)

    st.title(f"Case {plain_markdown(case.name)}", anchor=False)
    saved_message = st.session_state.pop("saved_message", None)
    if saved_message:
        st.success(saved_message)
    _navigation(queue, case_id)
    if case.notes:
        for note in case.notes:
            st.caption(f"About this file: {plain_markdown(note)}")

    left, right = st.columns([3, 2], gap="large")
    with left:
        if stored is None:
            st.image(image, width="stretch")
            st.warning("The model did not analyse this image. Review it without model support.")
        else:
            prediction = as_prediction(stored, image.shape)
            kind = st.radio("Show", OVERLAYS, index=1, horizontal=True, key="overlay_kind")
            opacity = st.slider("Overlay opacity", 0.0, 1.0, 0.45, 0.05, key="overlay_opacity")
            cam = None
            if kind == OVERLAYS[4]:
                target = st.selectbox("Grad-CAM for", CLASSES, index=CLASSES.index(stored.predicted_class),
                                      format_func=lambda c: f"{CLASS_NAMES[c]} ({c})", key="gradcam_class")
                if target != stored.predicted_class:
                    cam = _gradcam_for(case_id, target, stored.weights_sha256)
                    if cam is None:
                        st.caption("Grad-CAM for another class needs the model that made this prediction; it is not loaded.")
            st.image(overlay(image, prediction, kind, opacity, cam), width="stretch")
            outline = prediction.outline
            if outline.bbox is not None:
                _, _, w, h = outline.bbox
                size = (f"; about {max(w, h) * case.pixel_spacing_mm[1]:.1f} mm across" if case.pixel_spacing_mm else
                        "; the file does not say how large a pixel is, so no size in mm")
                st.caption(f"Lesion outline from the refined attention mask (Otsu threshold + opening): "
                           f"{outline.area_fraction:.0%} of the image{size}.")
    with right:
        if stored is not None:
            top = stored.predicted_class
            st.caption("Model's top diagnosis")
            st.subheader(f"{CLASS_NAMES[top]} ({top}): {stored.probabilities[CLASSES.index(top)]:.0%}", anchor=False)
            if stored.follows_decision_rule:
                st.caption(decision_rule_text(stored.predicted_class, stored.most_probable_class,
                                              float(stored.probabilities.max())))
            st.metric("Malignancy probability", f"{stored.malignancy:.0%}", f"± {stored.malignancy_spread:.0%} across views",
                      delta_color="off", delta_arrow="off",
                      help="P(melanoma) + P(basal cell carcinoma) + P(actinic keratosis / intraepithelial carcinoma); "
                           "the ± is the standard deviation over the flipped and turned views the model looked at.")
            if stored.prediction_set:
                st.markdown(prediction_set_text(stored.prediction_set))
            for flag in stored.flags:
                if flag.code == SUSPICIOUS:
                    st.error(f"**{plain_markdown(flag.reason)}**", icon=":material/priority_high:")
            if stored.needs_manual_check:
                st.error("**Manual check needed.** " + " ".join(plain_markdown(f.reason) for f in stored.flags if f.serious))
            other_flags = [f for f in stored.flags if not f.serious and f.code != SUSPICIOUS]
            for flag in other_flags:
                st.warning(plain_markdown(flag.reason))
            if not stored.flags:
                st.success("No warning signs found for this prediction.")
            st.plotly_chart(_probability_chart(dict(zip(CLASSES, map(float, stored.probabilities), strict=True))),
                            width="stretch", key="probability_chart")
            st.caption("Probabilities are calibrated (temperature scaling on held-out data): in the evaluation, a "
                       "diagnosis shown at 80 % was right about 80 % of the time. See the model card."
                       if stored.calibrated else "These probabilities are not calibrated: read them as a ranking, not as "
                                                 "frequencies.")
            _similar_cases(stored)
            meta = stored.metadata_used
            st.caption("Metadata the model used: "
                       f"age {plain_markdown(f'{meta.age:g}') if meta.age is not None else 'unknown'}, "
                       f"sex {plain_markdown(meta.sex or 'unknown')}, site {plain_markdown(meta.site.label)}.")
            st.caption(f"Model {plain_markdown(stored.model_version)}, model id {stored.weights_sha256[:12]}, "
                       f"analysed {stored.created_at:%Y-%m-%d %H:%M} UTC.")
            installed = installed_card()
            if installed is not None and installed.identity != stored.weights_sha256:
                st.info(older_model_text(stored.model_version, installed.version))
        patient = case.patient_id
        st.caption(f"Patient: {plain_markdown(patient) if patient else 'not given'} · imported "
                   f"{case.imported_at:%Y-%m-%d %H:%M} UTC by {plain_markdown(case.imported_by)}"
                   + (f" · {plain_markdown(case.acquisition.describe())}" if not case.acquisition.is_empty else ""))
        if patient and st.button("Compare with this patient's other lesions", key="to_patient"):
            st.session_state["patient_id"] = patient
            st.switch_page("pages/3_Patient_context.py")

        latest = store.latest_decision(case_id)
        if latest is not None and not latest.made_on(stored):
            st.warning(f"Back to review: the last decision ({plain_markdown(latest.label)}, by "
                       f"{plain_markdown(latest.reviewer)}) was made on an earlier result "
                       f"({plain_markdown(latest.made_on_text)}). The case was analysed again since; it is kept below "
                       "beside the result it was made on.")
        _decision_form(store, queue, case, latest, stored)
        history = store.decisions(case_id)
        if history:
            st.subheader("Decisions on this case")
            st.dataframe(pd.DataFrame([{"when (UTC)": f"{d.created_at:%Y-%m-%d %H:%M}", "reviewer": d.reviewer,
                                        "decision": d.label, "made on": d.made_on_text, "note": d.note}
                                       for d in reversed(history)]),
                         hide_index=True, width="stretch")
        who = reviewer() or "unnamed"

        def report() -> str:  # made only when asked for: it draws and encodes every overlay
            store.log_export(who, "case report", [case_id])
            return case_report_html(case, image, stored, history, who)

        st.download_button("Download a report of this case (HTML)", report, file_name=f"case_{case.id}.html",
                           mime="text/html", key="case_report", on_click="ignore")


run_guarded(page)
