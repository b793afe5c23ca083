"""Model card: what the model is, what it was trained on, its measured metrics and pictures, its limits."""

import re

import streamlit as st

import skinapp.config
from app_shared import get_store, run_guarded, shipped_card
from skinapp.reporting.text import plain_markdown
from skinapp.workflow.clinic_record import levels_text

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
    shipped = shipped_card()
    levels = get_store().clinic_levels(shipped.identity) if shipped is not None else None
    if shipped is not None and levels is not None:  # the card describes the model as shipped, not the clinic's levels
        st.warning(plain_markdown(levels_text(levels, shipped.safety_net.threshold, shipped.risk_tiers.high)) +
                   " The figures below are the model card's, for its own levels.")
    position = 0
    for picture in _PICTURE.finditer(text):  # markdown between pictures, and each picture from weights/
        st.markdown(text[position:picture.start()])
        path = (weights / picture.group(2)).resolve()
        if path.is_file() and weights.resolve() in path.parents:
            st.image(str(path), caption=picture.group(1), width=520)
        position = picture.end()
    st.markdown(text[position:])


run_guarded(page)
