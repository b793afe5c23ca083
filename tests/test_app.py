"""The Streamlit app starts and explains itself (Streamlit's own headless AppTest; the full UI is tested in issue 4)."""

import pytest
from streamlit.testing.v1 import AppTest

from conftest import REPO


def test_app_starts_and_shows_the_model_version(shipped_weights):
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    assert not app.exception
    assert any("Model " in c.value and "Decision support only" in c.value for c in app.caption)
    assert any("Upload one or more images" in i.value for i in app.info)


def test_app_without_weights_shows_a_message(monkeypatch, tmp_path):
    import streamlit as st

    import skinapp.cli

    st.cache_resource.clear()  # a model loaded by an earlier test would otherwise be reused
    monkeypatch.setattr(skinapp.cli, "DEFAULT_WEIGHTS", tmp_path)
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    assert not app.exception
    assert any("could not be loaded" in e.value for e in app.error)
