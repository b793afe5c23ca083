"""Model card: what the model is, what it was trained on, its measured metrics and pictures, its limits."""

import re

import streamlit as st

import skinapp.config
from app_shared import run_guarded
from skinapp.reporting.text import plain_markdown

_PICTURE = re.compile(r"!\[([^\]]*)\]\(([^)]+)\)")


def page() -> None:
    try:
        weights = skinapp.config.weights_dir()
    except FileNotFoundError as exc:
        st.error(f"No model installed: {plain_markdown(exc)}.")
        return
    card = weights / "MODEL_CARD.md"
    if not card.is_file():
        st.error("No model card found in the weights folder: this installation has no evaluated model.")
        return
    text = card.read_text()
    position = 0
    for picture in _PICTURE.finditer(text):  # markdown between pictures, and each picture from weights/
        st.markdown(text[position:picture.start()])
        path = (weights / picture.group(2)).resolve()
        if path.is_file() and weights.resolve() in path.parents:
            st.image(str(path), caption=picture.group(1), width=520)
        position = picture.end()
    st.markdown(text[position:])


run_guarded(page)
