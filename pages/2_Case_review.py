"""Case review: the image with switchable overlays, the model's answer with its uncertainty and flags, the
metadata it used, and the reviewer's decision (saved at once, never silently over a colleague's). The layout
only: what is shown is worked out in skinapp/workflow/case_view.py."""

import numpy as np
import pandas as pd
import streamlit as st

import app_shared as shared
from app_shared import get_store, installed_card, model_for_result, open_case, reviewer, run_guarded, shipped_card
from case_review_parts import measure_tool, model_answer, navigation, outcome_panel, pacs_panel, related, similar_cases
from skinapp.reporting.overlay import CONTRAST_LAYER, OVERLAYS, STRUCTURE_LAYER, VIEWER_LEGENDS
from skinapp.reporting.text import plain_markdown
from skinapp.reporting.viewer import VIEWER_CONFIG, Line, jpeg_data_url, viewer_figure
from skinapp.store import Store
from skinapp.store.limits import LIMITS, InvalidText
from skinapp.store.records import DECISIONS, Decision, DecisionConflict, PredictionChanged, StoredCase, StoredPrediction
from skinapp.vocab import CLASS_NAMES, CLASSES, STRUCTURE_NAMES
from skinapp.workflow import case_view as view
from skinapp.workflow.outcome_view import DIAGNOSIS_CHOICES, diagnosis_choice_label
from skinapp.workflow.queue import ReviewQueue
from skinapp.workflow.worklist import worklist


@st.cache_data(max_entries=64, show_spinner="Drawing the map …")
def _gradcam_for(case_id: int, class_name: str, weights_sha256: str, against: str | None = None) -> np.ndarray | None:
    store, predictor = get_store(), model_for_result(weights_sha256)
    if predictor is None:
        return None  # the model that made this prediction cannot be run here: do not mix models
    case = store.case(case_id)
    return None if case is None else predictor.explain_class(_case_image(case_id), class_name, case.metadata, against)


@st.cache_data(max_entries=32, show_spinner=False)
def _case_image(case_id: int) -> np.ndarray:
    return get_store().case_image(case_id)  # a stored image never changes: safe to keep


@st.cache_data(max_entries=64, show_spinner=False)
def _outline(case_id: int, prediction_id: int, mm_per_pixel: float | None) -> view.OutlineReading | None:
    stored = get_store().latest_prediction(case_id)
    if stored is None or stored.id != prediction_id:
        return None
    return view.outline_reading(stored, _case_image(case_id), mm_per_pixel)  # mm_per_pixel: part of the key


@st.cache_data(max_entries=16, show_spinner=False)
def _zoom_picture(case_id: int) -> view.ZoomPicture | None:
    return view.zoom_picture(get_store().zoom_jpeg(case_id))


@st.cache_data(max_entries=128, show_spinner=False)
def _picture_url(case_id: int, prediction_id: int, layer: view.LayerChoice) -> str:
    """The image with a heat-map overlay drawn in, as a JPEG data URL (outlines are drawn by the viewer)."""
    image, stored = _case_image(case_id), get_store().latest_prediction(case_id)
    if stored is None or stored.id != prediction_id:
        return jpeg_data_url(image)
    cam = _gradcam_for(case_id, layer.cam_class, stored.weights_sha256, layer.against) if layer.cam_class else None
    return jpeg_data_url(view.layer_picture(image, stored, layer.kind, layer.opacity, cam, layer.structure))


def _review_queue(store: Store) -> ReviewQueue:
    """The queue the reviewer last entered from the worklist (kept across reloads and sessions); never entered,
    the worklist's order now, kept as theirs."""
    kept = shared.kept_review_queue()
    if kept:
        return ReviewQueue(kept)
    queue = ReviewQueue(shared.keep_review_queue([r.case.id for r in worklist(store)]))
    st.session_state["review_queue"] = queue.case_ids
    return queue


_DECISION_KEYS = dict(zip(DECISIONS, ("1", "2", "3", "4", "5"), strict=True))


def _decision_form(store: Store, queue: ReviewQueue, case: StoredCase, latest: Decision | None,
                   stored: StoredPrediction | None) -> None:
    """The decision is saved on what this page showed when the reviewer read it: the ids of the decision and
    the result on screen are kept from that run, so a colleague's decision or a re-analysis in between stops
    the save instead of slipping under it. Saved, the next case still to review in the queue opens."""
    st.subheader("Your decision", anchor=False)
    name = reviewer()
    if not name:
        return  # signed out in another tab since the page was drawn
    keys = view.draft_keys(case.id)
    seen_key, seen_result_key = f"seen_decision_{case.id}", f"seen_result_{case.id}"
    choice = st.session_state.get(keys.choice)
    for decision, key in _DECISION_KEYS.items():  # the keys 1–5 press them; the chosen one carries a tick
        st.button(DECISIONS[decision], shortcut=key, key=f"pick_{decision}", width="stretch",
                  icon=":material/check_circle:" if decision == choice else None,
                  on_click=st.session_state.__setitem__, args=(keys.choice, decision))
    diagnosis = st.selectbox("Your diagnosis (when you disagree; “Other”: write it in the note)", DIAGNOSIS_CHOICES,
                             key=keys.diagnosis, format_func=diagnosis_choice_label)
    note = st.text_area("Note", key=keys.note, max_chars=LIMITS["note"], height=68)
    shown_result = stored.id if stored is not None else None
    if st.button("Save decision", type="primary", shortcut="Ctrl+Enter", key="save_decision", width="stretch"):
        problem = view.decision_problem(choice, diagnosis, note)
        if problem is not None:
            st.error(problem)
        elif choice is not None:  # always, once nothing is missing
            seen = st.session_state.get(seen_key, latest.id if latest else None)
            seen_result = st.session_state.get(seen_result_key, shown_result)
            try:
                saved = store.record_decision(case.id, name, choice, diagnosis=diagnosis, note=note, seen_decision_id=seen,
                                              seen_prediction_id=seen_result)
            except DecisionConflict as conflict:
                st.warning(view.conflict_text(conflict.current))
                latest = conflict.current
            except PredictionChanged:
                st.warning(view.PREDICTION_CHANGED_TEXT)
            except InvalidText as exc:
                st.error(view.not_saved_text(exc))
            else:
                for key in (*keys, seen_key, seen_result_key, "pending_move"):
                    st.session_state.pop(key, None)
                following = queue.next_unreviewed(case.id, store.reviewed_cases(queue.case_ids))
                st.session_state["saved_message"] = view.saved_text(case, saved, following)
                if following is not None:
                    open_case(following)
                st.rerun()
    st.session_state[seen_key] = latest.id if latest else None
    st.session_state[seen_result_key] = shown_result


def _layer_controls(case_id: int, stored: StoredPrediction) -> view.LayerChoice:
    """Which layer to show, how strongly, and what it explains (another class, the top two, a structure)."""
    layer, strength = st.columns([3, 2])
    structures = view.shown_structures(stored, installed_card(), shipped_card())
    kind = layer.selectbox("Show", view.layers_of(stored, structures), index=1, key="overlay_kind")
    opacity = strength.slider("Overlay strength", 0.0, 1.0, 0.45, 0.05, key="overlay_opacity",
                              disabled=not view.shows_heat_map(kind))
    plain = view.LayerChoice(kind, opacity)
    if kind == STRUCTURE_LAYER:
        found = stored.structure_probabilities()
        structure = st.selectbox("Structure", structures, key="structure_layer", format_func=lambda s: (
            f"{STRUCTURE_NAMES[s]} ({found[s] * 100:.0f} %)"))
        return plain._replace(structure=structure)
    if kind == CONTRAST_LAYER:
        top, runner_up = stored.predicted_class, stored.runner_up_class
        st.caption(f"What speaks for {CLASS_NAMES[top]} ({top}) rather than {CLASS_NAMES[runner_up]} ({runner_up}).")
        if _gradcam_for(case_id, top, stored.weights_sha256, runner_up) is None:
            st.caption("This map needs the model that made this prediction; it is not loaded.")
            return plain
        return plain._replace(cam_class=top, against=runner_up)
    if kind != OVERLAYS[4]:
        return plain
    target = st.selectbox("Show what drove the model towards", CLASSES, index=CLASSES.index(stored.predicted_class),
                          format_func=lambda c: f"{CLASS_NAMES[c]} ({c})", key="gradcam_class")
    if target == stored.predicted_class:
        return plain
    if _gradcam_for(case_id, target, stored.weights_sha256) is None:
        st.caption("A map for another diagnosis needs the model that made this prediction; it is not loaded.")
        return plain
    return plain._replace(cam_class=target)


def _viewer(case: StoredCase, stored: StoredPrediction | None, image: np.ndarray) -> None:
    """The zoomable image with the chosen layer, its legend in words, and what was measured on it."""
    height, width = image.shape[:2]
    lines: list[Line] = []
    reading: view.OutlineReading | None = None
    layer = _layer_controls(case.id, stored) if stored is not None else view.LayerChoice(OVERLAYS[0], 0.0)
    kind = layer.kind
    zoom = None if view.shows_heat_map(kind) else _zoom_picture(case.id)  # no heat map: the sharper copy, to zoom into
    url, picture_size = zoom if zoom is not None else (None, None)
    if stored is None:
        url = url or jpeg_data_url(image)
    else:
        url = url or _picture_url(case.id, stored.id, layer)
        reading = _outline(case.id, stored.id, case.mm_per_pixel)
        if reading is not None and kind != OVERLAYS[0]:
            lines += view.outline_lines(reading)
        st.caption(VIEWER_LEGENDS[kind])
    lines += view.measurement_lines(get_store().measurements(case.id))
    figure = viewer_figure(url, width, height, lines, view_width=560, picture_size=picture_size)
    st.plotly_chart(figure, config=VIEWER_CONFIG, width="stretch", key="case_viewer")
    st.caption("Scroll to zoom, drag to move; double-click to see the whole image again.")
    measured = reading.measured if reading is not None else None
    if measured is not None:
        st.markdown("**Measured on the model's lesion outline** (approximate: a poor outline gives poor measurements)")
        st.markdown("\n".join(f"- {plain_markdown(line)}" for line in measured.describe()))
        if case.scale_source:
            st.caption(f"Scale: {case.scale_source}.")


# Streamlit leaves 6 rem above the title; with 3 rem the decision form fits a 1440×900 screen unscrolled.
_LESS_SPACE_ABOVE = "<style>[data-testid='stMainBlockContainer']{padding-top:3rem}</style>"


def page() -> None:
    store = get_store()
    queue = _review_queue(store)
    wanted = view.case_id_of(st.query_params.get("case") or st.session_state.get("case_id"))
    case_id = view.current_case_id(wanted, queue, lambda c: store.case(c) is not None)
    case = store.case(case_id) if case_id is not None else None
    if case_id is None or case is None:
        st.title("Case review")
        if case_id is None:
            st.info("No cases yet. Import dermoscopy images or DICOM files to start.")
            return
        for key in ("case_id", "review_queue"):  # a queue from before: the next visit starts from the worklist
            st.session_state.pop(key, None)
        st.query_params.pop("case", None)
        st.warning(view.missing_case_text(case_id))
        st.page_link("app.py", label="Open the worklist", icon=":material/list:")
        return
    queue = queue.including(case_id)
    st.session_state["review_queue"] = queue.case_ids
    st.session_state["case_id"] = case_id
    st.query_params["case"] = str(case_id)
    stored = store.latest_prediction(case_id)
    image = _case_image(case_id)

    st.html(_LESS_SPACE_ABOVE)
    st.title(f"Case {plain_markdown(case.name)}", anchor=False)
    saved_message = st.session_state.pop("saved_message", None)
    if saved_message:
        st.success(saved_message)
    navigation(queue, case_id)
    for note in case.notes:
        st.caption(f"About this file: {plain_markdown(note)}")

    picture, answer, decision = st.columns([14, 6, 5], gap="small")  # the picture first: more than half the width
    with picture:
        if stored is None:
            st.warning("The model did not analyse this image. Review it without model support.")
        _viewer(case, stored, image)
    with decision:
        latest = store.latest_decision(case_id)
        back_to_review = view.back_to_review_text(latest, stored)
        if back_to_review:
            st.warning(back_to_review)
        _decision_form(store, queue, case, latest, stored)
        history = store.decisions(case_id)
        if history:
            st.markdown("**Decisions on this case**")
            st.dataframe(pd.DataFrame(view.decision_history(history)), hide_index=True, width="stretch")
        pacs_panel(store, case)
    with answer:
        if stored is not None:
            model_answer(stored)
        st.caption(view.case_facts_text(case))
        related(store, case)
        outcome_panel(store, case)
    measure_tool(store, case, image)  # the page's full width: a wide picture is measured more precisely
    if stored is not None:
        similar_cases(stored)


run_guarded(page)
