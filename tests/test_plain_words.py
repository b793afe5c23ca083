"""Plain words wherever a clinician looks (issue 29): the case page, the worklist and the reports name no symbol
and no method; the methods are named in the model card only."""

import io
import re

import pypdf
import pytest
from test_app import _app, _page, _seed_cases, _texts, data_dir  # noqa: F401 (data_dir is a fixture)

from skinapp.reporting.overlay import LAYER_LEGENDS, OVERLAYS, VIEWER_LEGENDS
from skinapp.reporting.text import decision_rule_text
from skinapp.store import Store
from skinapp.workflow.reports import report_file

# Symbols and method names that belong in the model card, not in front of a clinician.
JARGON = re.compile(r"σ|otsu|temperature|grad-cam|mahalanobis|conformal|entropy|\bknn\b|logit", re.IGNORECASE)


def jargon_in(text: str) -> list[str]:
    return sorted({m.group(0) for m in JARGON.finditer(text)})


def test_the_check_itself_finds_jargon():
    assert jargon_in("Refined mask σ(M)·C, Otsu threshold, temperature scaling, Grad-CAM") == [
        "Grad-CAM", "Otsu", "temperature", "σ"]
    assert jargon_in("Where the model looked hardest") == []


def test_layer_legends_are_plain_words():
    for legend in (*LAYER_LEGENDS.values(), *VIEWER_LEGENDS.values()):
        assert not jargon_in(legend), legend


def test_the_decision_rule_is_explained_only_where_it_changed_the_call():
    assert decision_rule_text("MEL", "MEL", 0.6) is None
    text = decision_rule_text("MEL", "NV", 0.55)
    assert text is not None and text.startswith("Here the single most probable diagnosis is Melanocytic nevus (55%)")


def _every_layer_and_section(app):
    """The case page with each layer shown in turn and the closed sections opened: all its text."""
    texts = []
    app.session_state["similar_open"] = True
    app.run()
    for layer in OVERLAYS:
        if layer in app.selectbox(key="overlay_kind").options:
            app.selectbox(key="overlay_kind").set_value(layer).run()
            assert not app.exception
            texts.append(_texts(app))
            texts.extend(str(e.label) for e in app.get("expander"))
    return "\n".join(texts)


@pytest.mark.slow
def test_the_case_page_worklist_and_reports_name_no_symbol_or_method(data_dir, shipped_weights):  # noqa: F811
    case_ids = _seed_cases(data_dir, count=2)
    app = _app()
    worklist_text = _texts(app) + "\n" + app.dataframe[0].value.to_csv()
    assert not jargon_in(worklist_text), jargon_in(worklist_text)
    assert re.search(r"⚠ Manual check|^\s*$", app.dataframe[0].value["needs_manual_check"].iloc[0])
    case_page = _every_layer_and_section(_page(app, "case_review"))
    assert "where the model looked hardest" in case_page and "Green line" in case_page
    assert not jargon_in(case_page), jargon_in(case_page)

    store = Store.open(f"sqlite:///{data_dir / 'skinapp.db'}")
    pdf = report_file(store, case_ids, "Dr Test", "pdf")
    pdf_text = "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf.data)).pages)
    html = report_file(store, case_ids, "Dr Test", "html").data.decode()
    store.engine.dispose()
    assert "Decision support only" in pdf_text.replace("\n", " ")
    assert not jargon_in(pdf_text), jargon_in(pdf_text)
    assert not jargon_in(html), jargon_in(html)
