"""Model card: what the model is, what it was trained on, its measured metrics and pictures, its limits."""

import streamlit as st

import skinapp.cli
from pages._shared import run_guarded


def page() -> None:
    weights = skinapp.cli.DEFAULT_WEIGHTS
    card = weights / "MODEL_CARD.md"
    if not card.is_file():
        st.error("No model card found in weights/: this installation has no evaluated model.")
        return
    text = card.read_text()
    body, _, rest = text.partition("![confusion matrix]")
    st.markdown(body)
    pictures = [weights / "evaluation" / name for name in ("confusion.png", "roc.png")]
    for column, picture in zip(st.columns(len(pictures)), pictures):
        if picture.is_file():
            column.image(str(picture))
    after = text.split("![ROC](evaluation/roc.png)", 1)
    if len(after) == 2:
        st.markdown(after[1])


run_guarded(page)
