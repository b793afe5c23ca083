"""Lesion over time: the images of one lesion side by side, two dates at a time, with the change in area,
diameter and malignancy between them."""

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from app_shared import get_store, open_case, run_guarded
from skinapp.reporting.text import percent_text, plain_markdown
from skinapp.reporting.viewer import VIEWER_CONFIG, Line, jpeg_data_url, viewer_figure
from skinapp.store import CaseRecord, Store
from skinapp.store.records import DIAMETER
from skinapp.vocab import CLASS_NAMES
from skinapp.workflow.case_view import DIAMETER_COLOUR, outline_lines, outline_reading
from skinapp.workflow.followup import LesionChange, LesionState, case_date, lesion_key, lesion_series


def _side(store: Store, record: CaseRecord, column: DeltaGenerator, key: str) -> LesionState:
    case, stored = record.case, record.prediction
    image = store.case_image(case.id)
    lengths = store.measurements(case.id)
    reading = outline_reading(stored, image, case.mm_per_pixel) if stored is not None else None
    lines = outline_lines(reading, with_diameter=False) if reading is not None else []
    lines += [Line(f"diameter {m.length_mm:.1f} mm", list(m.points), DIAMETER_COLOUR) for m in lengths if m.kind == DIAMETER]
    with column:
        st.subheader(f"{case_date(record)} · {plain_markdown(case.name)}", anchor=False)
        st.plotly_chart(viewer_figure(jpeg_data_url(image), image.shape[1], image.shape[0], lines, view_width=600),
                        config=VIEWER_CONFIG, width="stretch", key=f"viewer_{key}")
        if stored is not None:
            st.caption(f"Model: {CLASS_NAMES[stored.predicted_class]} ({stored.predicted_class}); malignancy "
                       f"{percent_text(stored.malignancy)} · model {plain_markdown(stored.model_version)}")
        if st.button("Open this case", key=f"open_{key}"):
            open_case(case.id)
    return LesionState.of(record, reading.measured if reading is not None else None, lengths)


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
    left, right = st.columns(2)
    change = LesionChange(_side(store, items[earlier], left, "earlier"), _side(store, items[later], right, "later"))
    st.subheader("Change", anchor=False)
    st.markdown("\n".join(f"- {plain_markdown(line)}" for line in change.describe()))
    st.caption("Sizes come from a reviewer's measured diameter where there is one, else from the model's outline, and "
               "are compared only in millimetres: two photographs are rarely taken at the same magnification. "
               "Calibrate each image on its ruler (case review → Measure in millimetres) to compare sizes.")


run_guarded(page)
