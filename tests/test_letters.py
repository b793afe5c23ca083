"""The referral / report letter (issue 29): the clinic's letterhead, the addressee and the question first, then the
reviewer's decision, the model's answer after it as decision support with its version; one page."""

import io

import pypdf
import pytest
from test_app import data_dir  # noqa: F401 (a fixture)
from test_reports import _imported

from skinapp.store.letterhead import LETTERHEAD_SET, Letterhead, Letterheads
from skinapp.store.limits import InvalidText
from skinapp.workflow.letters import letter_file


def _text(data: bytes) -> tuple[int, str]:
    reader = pypdf.PdfReader(io.BytesIO(data))
    return len(reader.pages), " ".join(page.extract_text() for page in reader.pages).replace("\n", " ")


def test_a_letter_puts_the_clinic_the_question_and_the_decision_before_the_models_answer(tmp_path, tiny_weights):
    store, (case_id, _) = _imported(tmp_path, tiny_weights)
    shown = store.latest_prediction(case_id)
    store.record_decision(case_id, "Dr Ω Reviewer", "biopsy", note="irregular <b>streaks</b> at 3 o'clock",
                          seen_prediction_id=shown.id)
    Letterheads(store).set(Letterhead("Dermatology, City Hospital", "1 Main Street\nSpringfield", "tel 0123 456"),
                           actor="Dr Admin (admin)")
    letter = letter_file(store, case_id, "Dr Ω Reviewer", "Dr Smith\nPlastic Surgery, General Hospital",
                         "Excision of a changing pigmented lesion?")
    assert letter.name.startswith("letter_lesion0_") and letter.mime == "application/pdf"
    pages, text = _text(letter.data)
    assert pages == 1
    order = ["Dermatology, City Hospital", "1 Main Street", "Dr Smith", "Re: patient P<7>", "Clinical question:",
             "Excision of a changing pigmented lesion?", "Our assessment", "Needs biopsy or excision.",
             "irregular <b>streaks</b> at 3 o'clock", "Decision support (not a diagnosis)", "The model's top diagnosis:",
             f"Model {shown.model_version}", "Decision support only", "Yours sincerely, Dr Ω Reviewer"]
    positions = [text.find(part) for part in order]
    assert -1 not in positions, [p for p, at in zip(order, positions, strict=True) if at == -1]
    assert positions == sorted(positions), text
    assert [e.action for e in store.audit_entries()].count(LETTERHEAD_SET) == 1


def test_without_a_letterhead_the_letter_says_so_and_bad_text_is_refused(tmp_path, tiny_weights):
    store, (case_id,) = _imported(tmp_path, tiny_weights, count=1)
    _, text = _text(letter_file(store, case_id, "Dr A", "Dr B", "").data)
    assert "No clinic letterhead set" in text and "No decision recorded yet" in text and "(none given)" in text
    with pytest.raises(InvalidText, match="addressee"):
        letter_file(store, case_id, "Dr A", "x" * 501, "")
    with pytest.raises(InvalidText, match="clinic's name"):
        Letterheads(store).set(Letterhead("  "), actor="Dr Admin")
    Letterheads(store).set(Letterhead("Clinic A"), actor="Dr Admin")
    Letterheads(store).set(Letterhead("Clinic B", "Road 2"), actor="Dr Admin")
    assert Letterheads(store).current() == Letterhead("Clinic B", "Road 2", "")  # the latest is in force


@pytest.mark.slow
def test_an_administrator_sets_the_letterhead_and_a_reviewer_finds_the_letter_on_the_case_page(data_dir, shipped_weights):  # noqa: F811
    from test_app import _app, _page, _seed_cases, _texts

    from skinapp.store import Store

    _seed_cases(data_dir, count=1)
    admin = _page(_app("Dr Admin", role="admin"), "administration")
    admin.text_input(key="letterhead_clinic").input("Dermatology, City Hospital")
    admin.text_area(key="letterhead_address").input("1 Main Street\nSpringfield")
    admin.button(key="FormSubmitter:letterhead_form-Save the letterhead").click().run()
    assert "Letterhead saved." in _texts(admin)
    store = Store.open(f"sqlite:///{data_dir / 'skinapp.db'}")
    assert Letterheads(store).current() == Letterhead("Dermatology, City Hospital", "1 Main Street\nSpringfield")
    (entry,) = [e for e in store.audit_entries() if e.action == LETTERHEAD_SET]
    assert entry.actor == "Dr Admin (dradmin)"

    reviewer = _page(_app("Dr R"), "case_review")
    reviewer.session_state["letter_open"] = True
    reviewer.run()
    assert not reviewer.exception
    assert [t.label for t in reviewer.text_area if t.key.startswith("letter_")] == [
        "To", "Clinical question or reason for referral"]
    assert "Your decision and diagnosis come first" in _texts(reviewer)
