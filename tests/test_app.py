"""Every page of the app under Streamlit's own AppTest, against a fresh database in a temporary data folder."""

import base64
import io
import json
import os
import re
from pathlib import Path

import pytest
import streamlit as st
from PIL import Image
from streamlit.testing.v1 import AppTest

from conftest import REPO, synthetic_lesion
from skinapp.inference import Predictor
from skinapp.io import InputFile
from skinapp.model.card import ModelCard
from skinapp.reporting.text import plain_markdown
from skinapp.store import Store
from skinapp.store.accounts import Accounts
from skinapp.workflow.analysis import import_and_analyse
from skinapp.workflow.worklist import worklist

TIMEOUT = 300


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SKINAPP_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SKINAPP_DATABASE_URL", raising=False)
    st.cache_resource.clear()  # the store (and model) of an earlier test must not be reused
    st.cache_data.clear()
    yield tmp_path
    st.cache_resource.clear()


PASSWORD = "a long test password"


def _username(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _account(name: str, role: str = "reviewer") -> str:
    """An account for `name` in the app's database (made once); its user name."""
    store = Store.open(f"sqlite:///{Path(os.environ['SKINAPP_DATA_DIR']) / 'skinapp.db'}")
    accounts, username = Accounts(store), _username(name)
    if accounts.get(username) is None:
        accounts.add(username, name, PASSWORD, role, actor="test set-up")
    store.engine.dispose()
    return username


def _sign_in(app: AppTest, username: str, password: str = PASSWORD) -> AppTest:
    app.text_input(key="sign_in_username").input(username)  # a form: typed and submitted together
    app.text_input(key="sign_in_password").input(password)
    return app.button(key="FormSubmitter:sign_in_form-Sign in").click().run()


def _app(reviewer: str | None = "Dr Test", role: str = "reviewer") -> AppTest:
    """The app, signed in as `reviewer` (an account made for them); None: not signed in."""
    username = _account(reviewer, role) if reviewer else None
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT).run()
    assert not app.exception
    if username:
        _sign_in(app, username)
        assert not app.exception and app.session_state["session_token"]
    return app


def _label(name: str) -> str:
    return f"{name} ({_username(name)})"


PAGES = {"worklist": "app.py", "import_cases": "pages/1_Import.py", "case_review": "pages/2_Case_review.py",
         "patient_context": "pages/3_Patient_context.py", "model_card": "pages/4_Model_card.py",
         "administration": "pages/5_Administration.py", "lesion_over_time": "pages/6_Lesion_over_time.py",
         "clinic_record": "pages/7_Clinic_record.py"}


def _page(app: AppTest, page: str) -> AppTest:
    app.switch_page(PAGES[page]).run()
    assert not app.exception, app.exception
    return app


def _texts(app: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "caption", "info", "success", "warning", "error", "title")
             for e in app.get(kind)]
    return "\n".join(str(p) for p in parts)


def _seed_cases(data_dir, count: int = 3, patient: str = "P7", weights: Path = REPO / "weights") -> list[int]:
    """Real import path (files → store → shipped model, or `weights`) for synthetic images; the app then reads the
    same database. Running the shipped ensemble takes seconds: a test that does is marked `slow`."""
    store = Store.open(f"sqlite:///{data_dir / 'skinapp.db'}")
    uploads = []
    for seed in range(count):
        buffer = io.BytesIO()
        Image.fromarray(synthetic_lesion(seed=seed)[0]).save(buffer, "PNG")
        uploads.append(InputFile.from_bytes(f"lesion{seed}.png", buffer.getvalue()))
    metadata_csv = io.BytesIO(("image_name,patient_id,age_approx,sex,anatom_site_general_challenge\n" + "".join(
        f"lesion{s},{patient},60,male,torso\n" for s in range(count))).encode())
    result = import_and_analyse(uploads, store, Predictor.from_weights(weights), "seed", metadata_csv=metadata_csv)
    store.engine.dispose()
    return result.case_ids


def test_nothing_is_shown_before_sign_in_and_accounts_are_managed_by_administrators(data_dir, shipped_weights, tiny_weights):
    _seed_cases(data_dir, count=1, patient="P-SECRET", weights=tiny_weights)  # which model analysed it is beside the point
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT).run()
    assert "No user accounts yet" in _texts(app) and not app.dataframe and "P-SECRET" not in _texts(app)
    for page in ("case_review", "patient_context", "administration"):
        _page(app, page)
        assert "No user accounts yet" in _texts(app) and not app.dataframe and not app.image
    form = {"first_username": "admin", "first_name": "Dr Admin", "first_password": "a long admin password",
            "first_password_again": "another one entirely"}
    for key, value in form.items():
        app.text_input(key=key).input(value)
    app.button(key="FormSubmitter:first_admin_form-Create the account").click().run()
    assert "The two passwords differ." in _texts(app)
    app.text_input(key="first_password_again").input(form["first_password"])
    app.button(key="FormSubmitter:first_admin_form-Create the account").click().run()
    assert "Administrator account created. Sign in with it." in _texts(app)
    assert not [t for t in app.text_input if t.key == "first_username"]  # the first-start form is gone
    _sign_in(app, "admin", "not the password")
    assert "Wrong user name or password, or the account is disabled." in _texts(app)
    _page(app, "worklist")
    _sign_in(app, "admin", form["first_password"])
    assert not app.exception and app.dataframe[0].value["patient"][0] == "P-SECRET"

    _page(app, "administration")
    for key, value in {"new_username": "drb", "new_name": "Dr B", "new_password": "short"}.items():
        app.text_input(key=key).input(value)
    app.button(key="FormSubmitter:add_user_form-Add account").click().run()
    assert "Not added: a password needs at least 12 characters." in _texts(app)
    for key, value in {"new_username": "drb", "new_name": "Dr B", "new_password": PASSWORD}.items():
        app.text_input(key=key).input(value)
    app.button(key="FormSubmitter:add_user_form-Add account").click().run()
    assert "Added drb." in _texts(app) and "audit trail intact" in _texts(app)

    reviewer = _sign_in(AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT).run(), "drb")
    assert reviewer.dataframe[0].value["patient"][0] == "P-SECRET"
    _page(reviewer, "administration")
    assert "Only administrators can open this page." in _texts(reviewer) and not reviewer.dataframe

    app.selectbox(key="toggle_user").select("drb").run()
    app.button(key="toggle_user_button").click().run()  # disabling asks first
    assert "Disable Dr B" in _texts(app) and "They are signed out at once" in _texts(app)
    app.button(key="cancel_disable_button").click().run()
    _page(reviewer, "worklist")
    assert reviewer.dataframe  # kept: still signed in
    app.button(key="toggle_user_button").click().run()
    app.button(key="confirm_disable_button").click().run()  # disabled: Dr B's open session ends at once
    _page(reviewer, "worklist")
    assert "User name" in [t.label for t in reviewer.text_input] and not reviewer.dataframe
    assert "Your account has been disabled by an administrator" in _texts(reviewer)  # told why
    _sign_in(reviewer, "drb")
    assert "Wrong user name or password, or the account is disabled." in _texts(reviewer)
    store = Store.open(f"sqlite:///{data_dir / 'skinapp.db'}")
    actions = [(e.actor, e.action) for e in store.audit_entries()]
    assert ("skinapp", "sign-in failed") in actions and ("Dr Admin (admin)", "user disabled") in actions
    assert ("Dr B (drb)", "signed in") in actions and store.verify_audit().ok


def test_empty_worklist_invites_an_import(data_dir, shipped_weights):
    app = _app()
    assert "No cases yet" in _texts(app)
    _page(app, "import_cases")
    assert app.button(key="import_button").disabled  # until files are chosen


def test_a_case_missing_from_the_database_is_named_and_the_next_visit_starts_from_the_worklist(data_dir):
    app = _app()
    app.session_state["review_queue"] = (41,)  # a queue kept from before, whose case the database does not hold
    app.session_state["case_id"] = 41
    _page(app, "case_review")
    assert "Case 41 is not in the case database" in _texts(app) and not app.error
    _page(app, "case_review")
    assert "No cases yet" in _texts(app) and not app.session_state["review_queue"]  # the worklist's order now


@pytest.mark.slow
def test_import_real_dicom_folder_then_worklist_filters(data_dir, shared_data, shipped_weights):
    folder = shared_data / "siim_isic_2020"
    app = _page(_app(), "import_cases")
    uploaders = app.get("file_uploader")
    uploaders[1].set_value([(f"dicom/{f.name}", f.read_bytes(), "application/dicom")
                            for f in sorted((folder / "dicom").glob("*.dcm"))] + [("dicom/notes.txt", b"x", "text/plain")])
    uploaders[2].set_value(("metadata.csv", (folder / "metadata.csv").read_bytes(), "text/csv"))
    app.run()
    app.button(key="import_button").click().run()
    assert not app.exception
    assert "20 case(s) in the worklist from this import (20 new, 20 analysed); 1 file(s) not imported" in app.warning[0].value
    assert not app.success  # green only when every file came in
    (rejected,) = [m.value for m in app.markdown if "notes" in m.value]  # the reason in full, not a table cell
    assert rejected == f"- **{plain_markdown('dicom/notes.txt')}**: not an image or DICOM file"

    _page(app, "worklist")
    table = app.dataframe[0].value
    assert len(table) == 20 and table["patient"].str.startswith("IP_").all()
    # the page shows the workflow's order (itself tested on hand-made records in test_worklist.py)
    store = Store.open(f"sqlite:///{data_dir / 'skinapp.db'}")
    assert list(table["case"]) == [row.case.name for row in worklist(store)]
    store.engine.dispose()
    app.selectbox(key="filter_status").select("reviewed").run()
    assert "No case matches these filters" in _texts(app)
    app.selectbox(key="filter_status").select("all").run()
    app.text_input(key="filter_text").input("ISIC_0076742").run()
    assert list(app.dataframe[0].value["case"]) == ["ISIC_0076742"]


def store_case_name(data_dir, case_id: int) -> str:
    store = Store.open(f"sqlite:///{data_dir / 'skinapp.db'}")
    try:
        return store.case(case_id).name
    finally:
        store.engine.dispose()


@pytest.mark.slow
def test_decision_is_saved_reloaded_and_never_silently_overwritten(data_dir, shipped_weights):
    case_ids = _seed_cases(data_dir)
    app = _page(_app("Dr A"), "case_review")
    version = ModelCard.load(shipped_weights).version
    assert f"Model {plain_markdown(version)}" in _texts(app) and "Malignancy probability" in [m.label for m in app.metric]
    assert "**The diagnosis is" in _texts(app)  # the conformal set the shipped model's card carries
    case_id = app.session_state["case_id"]
    stored = Store.open(f"sqlite:///{data_dir / 'skinapp.db'}").latest_prediction(case_id)
    assert stored.suspicious is not None and ("Suspicious — consider excision" in _texts(app)) == stored.suspicious
    assert case_id in case_ids

    app.button(key="save_decision").click().run()
    assert "Choose a decision, then save." in _texts(app)  # nothing is preselected: no accidental "agree"
    app.button(key="pick_disagree").click().run()
    app.button(key="save_decision").click().run()
    assert "Choose the diagnosis you think is right" in _texts(app)
    app.selectbox(key=f"diagnosis_{case_id}").set_value("MIS")  # the clinical list, wider than the model's classes
    app.text_area(key=f"note_{case_id}").input("irregular network **check**")
    app.button(key="save_decision").click().run()
    assert (f"Saved on {plain_markdown(store_case_name(data_dir, case_id))}: "
            f"{plain_markdown('Disagree: Melanoma in situ (MIS)')}." in _texts(app))
    assert app.session_state["case_id"] != case_id  # on to the next case to review …
    app.button(key="previous_case").click().run()  # … and back along the same queue
    assert app.session_state["case_id"] == case_id

    other = _app("Dr B")  # a second reviewer, another session, same case
    other.session_state["case_id"] = case_id
    _page(other, "case_review")
    history = other.dataframe[0].value
    assert list(history["reviewer"]) == [_label("Dr A")] and history["note"][0] == "irregular network **check**"

    app.button(key="pick_biopsy").click().run()  # Dr A changes their mind …
    other.button(key="pick_follow_up").click().run()
    app.button(key="save_decision").click().run()
    other.button(key="save_decision").click().run()  # … B saw the old one
    assert f"Not saved: {plain_markdown(_label('Dr A'))} recorded" in _texts(other)
    other.button(key="save_decision").click().run()
    assert plain_markdown("Follow-up") in " ".join(s.value for s in other.success)
    reviewers = [d.reviewer for d in Store.open(f"sqlite:///{data_dir / 'skinapp.db'}").decisions(case_id)]
    assert reviewers == [_label("Dr A"), _label("Dr A"), _label("Dr B")]  # nothing lost

    st.cache_resource.clear()  # a restart of the app
    after_restart = _page(_app("Dr C"), "worklist")
    decided = after_restart.dataframe[0].value.set_index("case")
    assert decided.loc["lesion" + str(case_ids.index(case_id)), "decision"] == "Follow-up"


@pytest.mark.slow
def test_a_reanalysis_while_a_case_is_open_stops_the_save_and_sends_a_decided_case_back_to_review(data_dir, shipped_weights):
    (case_id,) = _seed_cases(data_dir, count=1)
    app = _page(_app("Dr A"), "case_review")
    save = "save_decision"
    store = Store.open(f"sqlite:///{data_dir / 'skinapp.db'}")
    predictor = Predictor.from_weights(shipped_weights)

    def analyse_again() -> None:
        (prediction,) = predictor.predict([store.case_image(case_id)], [store.case(case_id).metadata])
        store.add_prediction(case_id, prediction, [], predictor.card.identity, "importer")

    app.button(key="pick_agree").click().run()
    analyse_again()  # while Dr A reads the first result
    app.button(key=save).click().run()
    assert "Not saved: the model analysed this case again while you had it open" in _texts(app)
    assert store.decisions(case_id) == []
    app.button(key=save).click().run()
    assert "Agree with the model. Every case in your queue is reviewed." in _texts(app)
    assert store.decisions(case_id)[0].prediction_id == store.latest_prediction(case_id).id

    analyse_again()
    _page(app, "worklist")
    assert app.dataframe[0].value["status"][0] == "to review (analysed again after a decision)"
    _page(app, "case_review")
    assert (f"Back to review: the last decision (Agree with the model, by {plain_markdown(_label('Dr A'))}) was made on "
            "an earlier result") in _texts(app)
    assert app.dataframe[0].value["made on"].iloc[0].endswith(f"(result {store.decisions(case_id)[0].prediction_id})")
    store.engine.dispose()


@pytest.mark.slow  # a couple of seconds or more: the full run has it
def test_a_damaged_audit_trail_is_announced_on_every_page(data_dir, shipped_weights, tiny_weights):
    import sqlite3

    _seed_cases(data_dir, count=1, weights=tiny_weights)  # which model analysed it is beside the point
    assert "integrity check" not in _texts(_app())
    assert (data_dir / "audit_checkpoints.jsonl").read_text().count("\n") == 1  # found whole: signed as checkpoint
    st.cache_resource.clear()
    st.cache_data.clear()  # the next check (the app checks again every 10 minutes)
    raw = sqlite3.connect(data_dir / "skinapp.db", isolation_level=None)
    raw.execute("DROP TRIGGER audit_log_no_delete")  # the newest entries cut off: only the checkpoint can tell
    raw.execute("DELETE FROM audit_log WHERE id = (SELECT max(id) FROM audit_log)")
    raw.close()
    app = _app()
    assert "The audit trail failed its integrity check" in _texts(app)
    assert "The database's guards were found removed" in _texts(app)  # put back when the app opened it, and said
    st.cache_resource.clear()
    st.cache_data.clear()
    raw = sqlite3.connect(data_dir / "skinapp.db", isolation_level=None)
    raw.execute("DROP TRIGGER audit_log_no_update")
    raw.execute("UPDATE audit_log SET actor = 'someone else' WHERE id = 1")
    raw.close()
    app = _app()
    assert "The audit trail failed its integrity check" in _texts(app)
    assert "The audit trail failed its integrity check" in _texts(_page(app, "model_card"))


def test_an_outcome_is_recorded_on_the_case_page_and_shown_with_its_history(data_dir, shipped_weights, tiny_weights):
    (case_id,) = _seed_cases(data_dir, count=1, weights=tiny_weights)  # which model analysed it is beside the point
    app = _page(_app("Dr Path"), "case_review")
    assert "**Outcome:** none recorded yet." in _texts(app)
    app.session_state["outcome_open"] = True
    app.run()
    app.selectbox(key=f"outcome_diagnosis_{case_id}").set_value("MEL_INV")
    app.text_input(key=f"outcome_reference_{case_id}").input("H-25-7")
    app.button(key=f"FormSubmitter:outcome_{case_id}-Save the outcome").click().run()
    assert "an invasive melanoma needs its Breslow thickness in mm" in _texts(app)  # nothing saved
    app.number_input(key=f"outcome_breslow_{case_id}").set_value(0.8)
    app.button(key=f"FormSubmitter:outcome_{case_id}-Save the outcome").click().run()
    assert not app.exception
    (saved,) = Store.open(f"sqlite:///{data_dir / 'skinapp.db'}").outcomes(case_id)
    assert (saved.diagnosis, saved.breslow_mm, saved.lab_reference, saved.entered_by) == ("MEL_INV", 0.8, "H-25-7",
                                                                                          _label("Dr Path"))
    assert f"Outcome saved: {plain_markdown(saved.label)}." in _texts(app)
    assert f"**Outcome:** {plain_markdown(saved.label)} (counts as MEL, malignant)" in _texts(app)
    assert list(app.dataframe[-1].value["diagnosis"]) == ["Invasive melanoma (MEL_INV), Breslow 0.8 mm"]


@pytest.mark.slow
def test_review_navigation_overlays_and_gradcam_for_another_class(data_dir, shipped_weights):
    _seed_cases(data_dir)
    app = _page(_app(), "case_review")
    first = app.session_state["case_id"]
    assert app.button(key="previous_case").disabled
    assert not [c.value for c in app.caption if "· similarity" in c.value]  # made only when opened
    app.session_state["similar_open"] = True
    app.run()
    similar = [c.value for c in app.caption if "· similarity" in c.value]
    assert len(similar) == 5  # the five nearest labelled training cases, with their diagnoses
    assert any("calibrated" in c.value for c in app.caption)
    app.button(key="next_case").click().run()
    assert app.session_state["case_id"] != first
    app.selectbox(key="overlay_kind").set_value("What drove the diagnosis").run()
    app.selectbox(key="gradcam_class").set_value("BCC").run()
    assert not app.exception and not any("Something went wrong" in e.value for e in app.error)
    app.slider(key="overlay_opacity").set_value(0.8).run()
    assert not app.exception


@pytest.mark.slow
def test_patient_context_shows_all_lesions_and_the_ugly_duckling_chart(data_dir, shipped_weights):
    _seed_cases(data_dir, count=3, patient="<b>P7</b>")
    app = _page(_app(), "patient_context")
    assert app.selectbox(key="patient_select").value == "<b>P7</b>"
    texts = _texts(app)
    assert texts.count("Looks different:") == 3 and "rank 1 of 3" in texts
    body_map, duckling = app.get("plotly_chart")  # where the lesions are, then how different each looks
    assert '"lesions"' in body_map.proto.spec and "Where the lesions are" in texts and '"lesions"' not in duckling.proto.spec
    app.button(key="open_2").click().run()
    assert not app.exception and app.session_state["case_id"] == 2


@pytest.mark.slow
def test_user_strings_are_shown_as_text_not_markup(data_dir, shipped_weights):
    _seed_cases(data_dir, count=1, patient="<img src=x onerror=alert(1)> **P**")
    app = _page(_app("<script>alert(1)</script>"), "case_review")
    captions = [c.value for c in app.caption]
    patient_line = next(c for c in captions if c.startswith("Patient:"))
    assert r"\<img src=x onerror=alert\(1\)\> \*\*P\*\*" in patient_line
    html = [m.value for m in app.markdown if m.proto.allow_html]
    assert html and not any("onerror" in value or "script" in value for value in html)


def test_model_card_page(data_dir, shipped_weights):
    app = _page(_app(), "model_card")
    assert "Balanced accuracy" in _texts(app) or "balanced accuracy" in _texts(app)
    assert len(app.get("image")) == 5  # confusion matrix, ROC, reliability diagram, coverage curve, structure reliability


def test_without_weights_the_worklist_still_opens_and_import_explains(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SKINAPP_WEIGHTS", str(tmp_path / "no-weights"))
    app = _page(_app(), "import_cases")
    app.get("file_uploader")[0].set_value(("a.png", b"x", "image/png"))
    app.run()
    app.button(key="import_button").click().run()
    assert not app.exception
    assert any("could not be loaded" in e.value for e in app.error)
    _page(app, "worklist")
    assert "No cases yet" in _texts(app)


@pytest.mark.slow
def test_result_of_another_model_is_marked_and_the_balanced_rule_explained(data_dir, shipped_weights, tmp_path):
    """A stored prediction from a model other than the installed one is labelled as such in the worklist and on
    the case page; a call made by the balanced rule that differs from the most probable class says so."""
    import numpy as np

    from conftest import write_weights
    from skinapp.trust.decision import DecisionRule

    (case_id,) = _seed_cases(data_dir, count=1)
    other = write_weights(tmp_path / "other")
    card = ModelCard.load(other)
    store = Store.open(f"sqlite:///{data_dir / 'skinapp.db'}")
    image = store.case_image(case_id)
    plain = Predictor.from_weights(other).predict([image])[0]
    prior = np.full(7, 0.02)
    prior[plain.predicted_index] = 0.88
    card.decision_rule = DecisionRule(tuple(prior / prior.sum()), 2.0)
    card.save(other)
    balanced = Predictor.from_weights(other).predict([image])[0]
    assert balanced.predicted_class != balanced.most_probable_class
    store.add_prediction(case_id, balanced, [], "0" * 64, "someone")
    store.engine.dispose()

    app = _app()
    table = app.dataframe[0].value
    assert list(table["model"]) == ["older model (test-untrained)"]
    app = _page(app, "case_review")
    texts = _texts(app)
    assert "made by an older model (test\\-untrained)" in texts
    assert "Here the single most probable diagnosis is" in texts


@pytest.mark.slow
def test_the_review_queue_holds_still_saving_moves_on_and_an_unsaved_note_asks_first(data_dir, shipped_weights):
    _seed_cases(data_dir)
    app = _page(_app("Dr A"), "case_review")
    queue = list(app.session_state["review_queue"])
    first, second, third = queue
    assert app.session_state["case_id"] == first and "Case 1 of 3 in your review queue" in _texts(app)

    app.button(key="pick_agree").click().run()  # key 1
    assert app.session_state[f"decision_{first}"] == "agree" and app.button(key="pick_agree").proto.icon
    app.button(key="save_decision").click().run()
    assert app.session_state["case_id"] == second  # the reviewed case went to the end of the worklist, not the queue
    assert "Case 2 of 3 in your review queue" in _texts(app) and not app.button(key="next_case").disabled

    app.text_area(key=f"note_{second}").input("pigment network irregular at 3 o'clock").run()
    app.button(key="next_case").click().run()
    assert app.session_state["case_id"] == second and "is not saved" in _texts(app)
    app.button(key="stay_unsaved").click().run()
    assert app.text_area(key=f"note_{second}").value == "pigment network irregular at 3 o'clock"
    app.button(key="next_case").click().run()
    app.button(key="leave_unsaved").click().run()
    assert app.session_state["case_id"] == third

    app.button(key="pick_follow_up").click().run()
    app.button(key="save_decision").click().run()
    assert app.session_state["case_id"] == second  # round to the one case left to review
    app.button(key="previous_case").click().run()
    assert app.session_state["case_id"] == first  # K follows the queue too

    # A reload or another day (a new session, the same reviewer) finds the same queue, not the worklist's order now
    # (the two reviewed cases sort last there).
    again = _page(_app("Dr A"), "case_review")
    assert tuple(again.session_state["review_queue"]) == (first, second, third)
    now = tuple(r.case.id for r in worklist(Store.open(f"sqlite:///{data_dir / 'skinapp.db'}")))
    assert now[0] == second
    other = _page(_app("Dr B"), "case_review")  # each reviewer has their own: never entered, the worklist's order
    assert tuple(other.session_state["review_queue"]) == now


@pytest.mark.slow
def test_the_case_page_reads_plainly_and_a_corrected_age_is_audited_and_analysed_again(data_dir, shipped_weights):
    _seed_cases(data_dir)
    app = _page(_app("Dr Edit"), "case_review")
    first = app.session_state["case_id"]
    (bars,) = [json.loads(c.proto.spec)["data"][0] for c in app.get("plotly_chart") if "Melanoma (MEL)" in c.proto.spec]
    assert bars["orientation"] == "h" and bars["customdata"][0] == "Melanoma (MEL)" and bars["textposition"] == "outside"
    assert all(re.fullmatch(r"< 1 %|> 99 %|\d{1,2} %", t) for t in bars["text"]), bars["text"]
    texts = _texts(app)
    assert re.search(r"This model finds \d+ % of [a-z /-]+ in held-out HAM10000 images", texts)
    assert "Measured on the model's lesion outline" in texts and "Border irregularity" in texts
    assert "Where the model looked" in app.selectbox(key="overlay_kind").options
    before = Store.open(f"sqlite:///{data_dir / 'skinapp.db'}").latest_prediction(first)
    app.session_state["correct_open"] = True
    app.run()
    assert any(f"body_map_{first}" in str(c.proto.id) or '"sites"' in c.proto.spec for c in app.get("plotly_chart"))
    app.number_input(key=f"fix_age_{first}").set_value(35.0)
    app.button(key=f"FormSubmitter:correct_{first}-Save the corrections").click().run()
    assert not app.exception
    assert "analysed the case again" in _texts(app)
    store = Store.open(f"sqlite:///{data_dir / 'skinapp.db'}")
    after = store.latest_prediction(first)
    assert after.id != before.id and after.metadata_used.age == 35 and store.case(first).edited == ("age",)
    (entry,) = [e for e in store.audit_entries(first) if e.action == "case metadata corrected"]
    assert entry.actor == _label("Dr Edit") and entry.details["fields"] == ["age"]


@pytest.mark.slow
def test_lesion_over_time_compares_two_images_of_one_lesion(data_dir, shipped_weights):
    case_ids = _seed_cases(data_dir, count=2)
    store = Store.open(f"sqlite:///{data_dir / 'skinapp.db'}")
    for case_id in case_ids:
        store.edit_case(case_id, "Dr A", {"lesion_id": "L-1"})
    app = _page(_app(), "lesion_over_time")
    lesion = app.selectbox(key="lesion_select")
    assert lesion.value.lesion == "L-1" and lesion.value.patient_id == "P7" and len(lesion.options) == 1
    texts = _texts(app)
    assert plain_markdown("Malignancy probability") in texts and plain_markdown("cannot be compared (an image without") in texts
    [pair] = app.get("component_instance")  # the two images, zoomed and moved together in the browser
    shown = json.loads(pair.proto.json_args)
    assert shown["tool"] == "compare" and [i["title"].split(" · ")[1] for i in shown["images"]] == [
        store.case(c).name for c in case_ids]
    app.button(key="open_later").click().run()
    assert not app.exception and app.session_state["case_id"] == case_ids[1]


@pytest.mark.slow
def test_a_large_image_is_zoomed_into_its_sharper_copy_and_heat_maps_stay_on_the_display_image(data_dir, shipped_weights):
    import cv2

    big = cv2.resize(synthetic_lesion(seed=3)[0], (3000, 2000), interpolation=cv2.INTER_CUBIC)
    buffer = io.BytesIO()
    Image.fromarray(big).save(buffer, "JPEG", quality=92)
    store = Store.open(f"sqlite:///{data_dir / 'skinapp.db'}")
    (case_id,) = import_and_analyse([InputFile.from_bytes("dermatoscope.jpg", buffer.getvalue())], store,
                                    Predictor.from_weights(REPO / "weights"), "seed").case_ids
    assert store.case_image(case_id).shape == (683, 1024, 3) and store.zoom_jpeg(case_id) is not None
    app = _page(_app(), "case_review")

    def picture() -> dict:
        (viewer,) = [c for c in app.get("plotly_chart") if c.proto.id.endswith("case_viewer")]
        return json.loads(viewer.proto.spec)["data"][0]

    shown = picture()
    assert shown["dx"] == 0.5 and abs(shown["dy"] - 0.5) < 0.001  # the 2048-px copy over the 1024-px extent
    assert Image.open(io.BytesIO(base64.b64decode(shown["source"].split(",", 1)[1]))).size == (2048, 1365)
    app.selectbox(key="overlay_kind").set_value("Where the model looked").run()
    assert picture()["dx"] == 1  # a heat map is drawn on the display image the model read


def _png_uploads(count: int, first: int = 0) -> list[tuple[str, bytes, str]]:
    uploads = []
    for seed in range(first, first + count):
        buffer = io.BytesIO()
        Image.fromarray(synthetic_lesion(seed=seed)[0]).save(buffer, "PNG")
        uploads.append((f"lesion{seed}.png", buffer.getvalue(), "image/png"))
    return uploads


@pytest.mark.slow  # the shipped ensemble reads the three images (the refusal itself: test_site_profile.py, quick)
def test_a_site_profile_is_offered_after_the_model_as_shipped_and_too_few_images_store_nothing(data_dir, shipped_weights):
    reviewer = _page(_app(), "import_cases")
    assert not [r for r in reviewer.radio if r.key == "site_choice"]  # only administrators make profiles; none kept yet
    app = _page(_app("Dr Admin", role="admin"), "import_cases")
    choice = app.radio(key="site_choice")
    assert choice.value == "as shipped" and "kept" not in choice.options  # none kept yet
    assert "lowered melanoma AUC" in _texts(app)  # the measured effect, before anyone chooses one
    choice.set_value("new").run()
    app.get("file_uploader")[0].set_value(_png_uploads(3))
    app.run()
    assert app.button(key="import_button").disabled  # a new profile needs its name first
    app.text_input(key="site_profile_name").input("Clinic B").run()
    app.button(key="import_button").click().run()
    assert not app.exception
    assert [e.value for e in app.error] == ["Nothing was imported: a site profile needs at least 50 of the site's "
                                            "images; 3 given."]
    store = Store.open(f"sqlite:///{data_dir / 'skinapp.db'}")
    assert store.case_records() == [] and "site profile made" not in [e.action for e in store.audit_entries()]
    store.engine.dispose()


@pytest.mark.slow  # the shipped ensemble learns a profile from 50 images, then analyses them and three more
def test_a_profile_learnt_from_a_batch_is_kept_offered_named_in_results_and_retired_by_an_administrator(
        data_dir, shipped_weights):
    from skinapp.store.site_profiles import SiteProfiles

    app = _page(_app("Dr Admin", role="admin"), "import_cases")
    app.radio(key="site_choice").set_value("new").run()
    app.get("file_uploader")[0].set_value(_png_uploads(50))
    app.text_input(key="site_profile_name").input("Clinic B, DL4").run()
    app.button(key="import_button").click().run()
    assert not app.exception and "50 case(s) in the worklist from this import (50 new, 50 analysed)" in app.success[0].value
    assert any("site profile “Clinic B, DL4”, learnt from 50" in i.value for i in app.info)

    store = Store.open(f"sqlite:///{data_dir / 'skinapp.db'}")
    (kept,) = SiteProfiles(store).in_use(ModelCard.load(shipped_weights).identity)
    ids = [r.case.id for r in store.case_records()]
    assert {store.latest_prediction(i).weights_sha256 for i in ids} != {ModelCard.load(shipped_weights).identity}
    assert all("with site profile Clinic B, DL4" in store.latest_prediction(i).model_version for i in ids)

    app.session_state["case_id"] = ids[0]
    _page(app, "case_review")  # the result names its profile, and its maps come from the same adapted model
    assert "made by the installed model adapted to a site" in _texts(app)
    app.selectbox(key="overlay_kind").set_value("What drove the diagnosis").run()
    other = next(c for c in ("BCC", "NV") if c != store.latest_prediction(ids[0]).predicted_class)
    app.selectbox(key="gradcam_class").set_value(other).run()
    assert not app.exception and "needs the model that made this prediction" not in _texts(app)

    _page(app, "import_cases")
    app.radio(key="site_choice").set_value("kept").run()
    assert app.selectbox(key="site_profile").value == kept.identity
    app.get("file_uploader")[0].set_value(_png_uploads(3, first=50))
    app.run()
    app.button(key="import_button").click().run()
    assert not app.exception and "3 case(s) in the worklist from this import (3 new, 3 analysed)" in app.success[0].value
    newest = max(r.case.id for r in store.case_records())
    assert store.latest_prediction(newest).weights_sha256 == store.latest_prediction(ids[0]).weights_sha256

    _page(app, "administration")
    assert "Clinic B, DL4" in list(app.dataframe[1].value["name"])
    app.button(key="retire_profile_button").click().run()
    assert SiteProfiles(store).in_use(kept.model_identity) == [] and store.verify_audit().ok
    _page(app, "import_cases")
    assert "kept" not in app.radio(key="site_choice").options
    store.engine.dispose()
