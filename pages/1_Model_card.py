"""The model card: what the model is, what it was trained on, measured metrics and limits."""

from pathlib import Path

import streamlit as st

from skinapp.cli import DEFAULT_WEIGHTS

st.set_page_config(page_title="skinapp — model card", layout="wide")
card = DEFAULT_WEIGHTS / "MODEL_CARD.md"
if not card.is_file():
    st.error("No model card found in weights/: this installation has no evaluated model.")
    st.stop()
text = card.read_text()
body, _, _ = text.partition("![confusion matrix]")
st.markdown(body)
pictures = [DEFAULT_WEIGHTS / "evaluation" / name for name in ("confusion.png", "roc.png")]
columns = st.columns(len(pictures))
for column, picture in zip(columns, pictures):
    if picture.is_file():
        column.image(str(picture))
rest = text.split("![ROC](evaluation/roc.png)", 1)
if len(rest) == 2:
    st.markdown(rest[1])
