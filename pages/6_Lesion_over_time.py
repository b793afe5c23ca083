"""Lesion over time: the images of one lesion side by side, two dates at a time, zoomed and moved together, with
the change in area, diameter and malignancy between them."""

from typing import NamedTuple

import numpy as np
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from app_components import compare_pair
from app_shared import get_store, open_case, run_guarded
from skinapp.reporting.text import percent_text, plain_markdown
from skinapp.reporting.viewer import Line, jpeg_data_url
from skinapp.store import CaseRecord, Store
from skinapp.store.records import DIAMETER
from skinapp.vocab import CLASS_NAMES
from skinapp.workflow.case_view import DIAMETER_COLOUR, outline_lines, outline_reading
from skinapp.workflow.followup import LesionChange, LesionState, case_date, lesion_key, lesion_series


class _Side(NamedTuple):
    title: str
    image: np.ndarray
    lines: list[Line]
    state: LesionState


def _side(store: Store, record: CaseRecord) -> _Side:
    case, stored = record.case, record.prediction
    image = store.case_image(case.id)
    lengths = store.measurements(case.id)
    reading = outline_reading(stored, image, case.mm_per_pixel) if stored is not None else None
    lines = outline_lines(reading, with_diameter=False) if reading is not None else []
    lines += [Line(f"diameter {m.length_mm:.1f} mm", list(m.points), DIAMETER_COLOUR) for m in lengths if m.kind == DIAMETER]
    state = LesionState.of(record, reading.measured if reading is not None else None, lengths)
    return _Side(f"{case_date(record)} · {case.name}", image, lines, state)


def _about(record: CaseRecord, column: DeltaGenerator, key: str) -> None:
    case, stored = record.case, record.prediction
    with column:
        if stored is not None:
            st.caption(f"Model: {CLASS_NAMES[stored.predicted_class]} ({stored.predicted_class}); malignancy "
                       f"{percent_text(stored.malignancy)} · model {plain_markdown(stored.model_version)}")
        if st.button(f"Open {plain_markdown(case.name)}", key=f"open_{key}"):
            open_case(case.id)


def page() -> None:
    st.title("Lesion over time")
    store = get_store()
    series = lesion_series(store.case_records())
    if not series:
        st.info("No lesion has two or more images yet. Images are grouped by patient and lesion id, or by patient and "
                "anatomic site where the files give no lesion id. A case's lesion id can be corrected on its review "
                "page.")
        return
    keys = list(series)
    came_from = st.session_state.get("lesion_case_id") or st.session_state.get("case_id")
    own = next((lesion_key(r.case) for group in series.values() for r in group if r.case.id == came_from), None)
    key = st.selectbox("Lesion", keys, index=keys.index(own) if own in keys else 0, key="lesion_select",
                       format_func=lambda k: f"{k.label} · {len(series[k])} images")
    if key.by_site:
        st.warning("These images are grouped by anatomic site because the files give no lesion id: they may show "
                   "different lesions. Give them a lesion id on their review pages to be sure.")
    items = series[key]
    labels = [f"{case_date(r)} · {r.case.name}" for r in items]
    pick_earlier, pick_later = st.columns(2)
    earlier = pick_earlier.selectbox("Earlier image", range(len(items)), index=0, format_func=labels.__getitem__,
                                     key=f"earlier_{key.patient_id}_{key.lesion}")
    later = pick_later.selectbox("Later image", range(len(items)), index=len(items) - 1, format_func=labels.__getitem__,
                                 key=f"later_{key.patient_id}_{key.lesion}")
    sides = [_side(store, items[earlier]), _side(store, items[later])]
    compare_pair([(side.title, jpeg_data_url(side.image), side.image.shape[1], side.image.shape[0], side.lines)
                  for side in sides], key="lesion_pair")
    left, right = st.columns(2)
    _about(items[earlier], left, "earlier")
    _about(items[later], right, "later")
    change = LesionChange(sides[0].state, sides[1].state)
    st.subheader("Change", anchor=False)
    st.markdown("\n".join(f"- {plain_markdown(line)}" for line in change.describe()))
    st.caption("Sizes come from a reviewer's measured diameter where there is one, else from the model's outline, and "
               "are compared only in millimetres: two photographs are rarely taken at the same magnification. "
               "Calibrate each image on its ruler (case review → Measure in millimetres) to compare sizes.")


run_guarded(page)
