"""skinapp review workstation (Streamlit entry). A thin layer over the `skinapp` core."""

from __future__ import annotations


import pandas as pd
import plotly.express as px
import streamlit as st

from skinapp.cli import DEFAULT_WEIGHTS
from skinapp.inference import Predictor
from skinapp.io import InputFile, load_cases
from skinapp.model.checkpoint import WeightsError
from skinapp.overlay import heatmap_overlay, normalise, outline_overlay
from skinapp.vocab import CLASS_NAMES, CLASSES

st.set_page_config(page_title="skinapp — dermoscopy review", layout="wide")


@st.cache_resource(show_spinner="Loading the model …")
def load_predictor() -> Predictor:
    return Predictor.from_weights(DEFAULT_WEIGHTS)


def analyse(files) -> tuple[list, list, list]:
    cases, report = load_cases([InputFile.from_bytes(upload.name, upload.getvalue()) for upload in files])
    predictor = load_predictor()
    progress = st.progress(0.0, text="Analysing …")
    predictions = []
    analysed = []
    for i, case in enumerate(cases):
        try:
            predictions += predictor.predict([case.image], [case.metadata])
            analysed.append(case)
        except Exception as exc:  # one failing case must not stop the batch or show a stack trace
            report.reject(case.source, f"the model could not analyse this image ({type(exc).__name__})")
        progress.progress((i + 1) / len(cases), text=f"Analysed {i + 1} of {len(cases)}")
    progress.empty()
    return analysed, predictions, report.rejected


st.title("skinapp — dermoscopy case review")
try:
    predictor = load_predictor()
except WeightsError as exc:
    st.error(f"The model could not be loaded: {exc}")
    st.stop()

st.caption(f"Model {predictor.model_version}. Decision support only: every result needs a clinician's judgement. "
           "Probabilities are not yet calibrated. See the Model card page for measured performance and limits.")

files = st.file_uploader("Dermoscopy images or DICOM files", accept_multiple_files=True)
if not files:
    st.info("Upload one or more images (JPEG, PNG, BMP, TIFF) or DICOM files to analyse them.")
    st.stop()

# Streamlit reruns the script on every interaction: analyse a set of uploads once, then reuse the results.
upload_key = tuple((f.file_id, f.name) for f in files)
if st.session_state.get("upload_key") != upload_key:
    st.session_state["analysis"] = analyse(files)
    st.session_state["upload_key"] = upload_key
cases, predictions, rejected = st.session_state["analysis"]
for rejection in rejected:
    st.warning(f"{rejection.file} was not analysed: {rejection.reason}")
if not cases:
    st.stop()

table = pd.DataFrame([
    {"case": c.case_id, "top diagnosis": CLASS_NAMES[p.predicted_class], "probability": round(float(p.probabilities.max()), 3),
     "malignancy": round(p.malignancy, 3), "site": c.metadata.site.label, "patient": c.patient_id or ""}
    for c, p in zip(cases, predictions)
]).sort_values("malignancy", ascending=False)
st.dataframe(table, hide_index=True, width="stretch")

choice = st.selectbox("Case", range(len(cases)), format_func=lambda i: f"{cases[i].case_id} ({cases[i].source})")
case, prediction = cases[choice], predictions[choice]
left, right = st.columns([3, 2])
with left:
    overlay = st.radio("Overlay", ["none", "lesion outline", "attention", "refined mask", "Grad-CAM"], horizontal=True)
    opacity = st.slider("Opacity", 0.0, 1.0, 0.45)
    picture = case.image
    if overlay == "lesion outline":
        picture = outline_overlay(case.image, prediction.outline.contour, prediction.outline.bbox)
    elif overlay == "attention":
        picture = heatmap_overlay(case.image, prediction.attention_grid, opacity)
    elif overlay == "refined mask":
        picture = heatmap_overlay(case.image, normalise(prediction.refined_grid), opacity)
    elif overlay == "Grad-CAM":
        picture = heatmap_overlay(case.image, prediction.gradcam_grid, opacity)
    st.image(picture, width="stretch")
with right:
    st.metric("Malignancy probability (MEL + BCC + AKIEC)", f"{prediction.malignancy:.0%}")
    chart = px.bar(x=[prediction.class_probabilities()[c] for c in CLASSES], y=[CLASS_NAMES[c] for c in CLASSES],
                   orientation="h", labels={"x": "probability", "y": ""}, range_x=[0, 1])
    st.plotly_chart(chart, width="stretch")
    missing = prediction.metadata_used.missing_fields()
    st.write("Metadata used: " + (", ".join(f"{k}: {v}" for k, v in (
        ("age", prediction.metadata_used.age), ("sex", prediction.metadata_used.sex),
        ("site", prediction.metadata_used.site.label)) if v not in (None, "unknown")) or "none"))
    if missing:
        st.caption("Not known to the model: " + ", ".join(missing))
