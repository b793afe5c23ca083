"""Issue 32: the clinic's PACS, against a real one (a scratch Orthanc with DICOMweb and a password, tests/
orthanc_server.py). The real SIIM-ISIC DICOMs go in by STOW-RS with their quirks (values in double quotes, the
image's name as PatientID); they are pulled by patient ID, analysed, decided on, and the result goes back as a
TID 1500 SR that is read back from the PACS and checked with highdicom. Devices send over DICOM (C-STORE)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pydicom
import pytest
import streamlit as st
from pynetdicom import AE
from pynetdicom.sop_class import VLPhotographicImageStorage  # type: ignore[attr-defined]

from skinapp.cli.main import main
from skinapp.inference.model import ModelUnavailable
from skinapp.pacs.connection import PacsServer
from skinapp.pacs.exchange import pull_studies
from skinapp.pacs.listener import StorageListener
from skinapp.pacs.pull import StudyQuery, find_studies
from skinapp.pacs.send import PACS_NOT_SENT, PACS_SENT, send_result, unsent_cases
from skinapp.pacs.structured_report import PRIVATE_CODES, read_back
from skinapp.reporting.text import plain_markdown
from skinapp.store import Store
from skinapp.store.accounts import Accounts
from skinapp.workflow.analysis import importer

pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR")  # the challenge files' quoted UIDs

PATIENT = "ISIC_0095805"  # the smallest file's PatientID, which the challenge wrapped in double quotes
REVIEWER = "Dr P. Acs (drpacs)"


def _store_with_account(tmp_path: Path) -> tuple[str, Path]:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    Accounts(Store.open(url)).add("drpacs", "Dr P. Acs", "a long test password", "reviewer", actor="set-up")
    return url, tmp_path


def _password_file(tmp_path: Path, password: str) -> str:
    path = tmp_path / "pacs-password"
    path.write_text(password + "\n")
    return str(path)


def _pull(pacs: PacsServer, url: str, tmp_path: Path, weights: Path, *extra: str, password: str | None = None) -> int:
    return main(["pacs", "pull", "--url", pacs.url, "--user", str(pacs.user), "--password-file",
                 _password_file(tmp_path, password or str(pacs.password)), "--account", "drpacs", "--database", url,
                 "--weights", str(weights), *extra])


def test_a_search_copes_with_quoted_values_and_finds_one_patient(pacs, siim_dicoms):
    studies = find_studies(pacs, StudyQuery(patient_id=PATIENT))
    assert [s.patient_id for s in studies] == [PATIENT] and "XC" in studies[0].modalities  # an SR sent back may join
    assert len(find_studies(pacs, StudyQuery(modality="XC"))) == len(siim_dicoms)
    in_may = find_studies(pacs, StudyQuery(since=dt.date(2020, 5, 1), until=dt.date(2020, 5, 31)))
    assert len(in_may) == len(siim_dicoms)  # every file says 20200520
    assert find_studies(pacs, StudyQuery(since=dt.date(2021, 1, 1))) == []
    assert [s.patient_id for s in find_studies(pacs, StudyQuery(patient_name="isic 0095805"))] == [PATIENT]


def test_a_pull_imports_analyses_and_never_fetches_an_image_twice(pacs, tmp_path, tiny_weights, capsys):
    url, _ = _store_with_account(tmp_path)
    assert _pull(pacs, url, tmp_path, tiny_weights, "--patient-id", PATIENT) == 0
    out = capsys.readouterr().out
    assert "1 study on" in out and "1 image(s) fetched from the PACS; 0 already in the worklist" in out
    store = Store.open(url)
    [case_id] = store.decided_since() or [r.case.id for r in store.case_records()]
    case = store.case(case_id)
    assert case is not None and case.name == PATIENT and case.sop_instance_uid is not None
    assert case.patient_id is None  # the file's PatientID is the image's name: not taken for a patient, as on import
    assert store.latest_prediction(case_id) is not None
    assert ("Dr P. Acs (drpacs)", "case imported") in {(e.actor, e.action) for e in store.audit_entries()}

    assert _pull(pacs, url, tmp_path, tiny_weights, "--patient-id", PATIENT) == 0
    assert "0 image(s) fetched from the PACS; 1 already in the worklist" in capsys.readouterr().out
    assert main(["pacs", "pull", "--url", pacs.url, "--account", "drpacs", "--database", url]) == 2
    assert "--all" in capsys.readouterr().err


def test_an_image_left_without_a_result_is_fetched_and_analysed_by_the_next_pull(pacs, tmp_path, tiny_weights,
                                                                                 monkeypatch):
    url, _ = _store_with_account(tmp_path)
    imports = importer(url, "drpacs", tiny_weights)
    studies = find_studies(pacs, StudyQuery(patient_id=PATIENT))

    def pull():
        return pull_studies(pacs, studies, imports.store, imports.predictor, imports.user.label, imports.assessor)

    def not_answering(*args, **kwargs):
        raise ModelUnavailable("the model service at http://127.0.0.1:9 could not be reached (is it running?)")

    monkeypatch.setattr(imports.predictor, "predict", not_answering)
    first = pull()
    assert first.fetched == 1 and first.imported.analysed == 0 and len(first.imported.case_ids) == 1
    assert "could not be reached" in first.imported.report.rejected[0].reason
    monkeypatch.undo()
    second = pull()  # the stored image without a result is fetched again and analysed, not stored twice
    assert second.fetched == 1 and second.imported.analysed == 1 and second.imported.new_cases == 0
    assert imports.store.latest_weights(first.imported.case_ids[0]) == imports.predictor.identity
    assert pull().fetched == 0


def test_a_wrong_password_is_said_plainly_and_nothing_is_imported(pacs, tmp_path, tiny_weights, capsys):
    url, _ = _store_with_account(tmp_path)
    assert _pull(pacs, url, tmp_path, tiny_weights, "--all", password="not-the-password") == 2
    captured = capsys.readouterr()
    assert "refused the user name or password (HTTP 401)" in captured.err and "Traceback" not in captured.err
    assert "not-the-password" not in captured.err + captured.out
    assert Store.open(url).case_records() == []
    assert main(["pacs", "pull", "--url", f"http://drpacs:secret@{pacs.url.split('://')[1]}", "--all",
                 "--account", "drpacs", "--database", url]) == 2
    assert "--password-file" in capsys.readouterr().err  # credentials in the address are refused, not used


@pytest.mark.slow  # the shipped ensemble analyses the pulled image
def test_pulled_decided_and_sent_back_the_result_is_an_sr_in_the_images_study(pacs, tmp_path, shipped_weights,
                                                                                  capsys):
    url, _ = _store_with_account(tmp_path)
    assert _pull(pacs, url, tmp_path, shipped_weights, "--patient-id", PATIENT) == 0
    store = Store.open(url)
    [record] = store.case_records()
    prediction = store.latest_prediction(record.case.id)
    assert prediction is not None and prediction.risk_tier is not None
    store.record_decision(record.case.id, REVIEWER, "biopsy", seen_prediction_id=prediction.id)
    capsys.readouterr()

    assert main(["pacs", "push", "--url", pacs.url, "--user", str(pacs.user), "--password-file",
                 _password_file(tmp_path, str(pacs.password)), "--account", "drpacs", "--database", url]) == 0
    assert "1 result(s) sent, 0 not sent." in capsys.readouterr().out
    [sent] = [e for e in store.audit_entries(record.case.id) if e.action == PACS_SENT]
    assert unsent_cases(store, [record.case.id]) == [] and store.verify_audit().ok

    client = pacs.client()
    source = pydicom.Dataset.from_json(client.search_for_instances(
        search_filters={"SOPInstanceUID": record.case.sop_instance_uid}, fields=["StudyInstanceUID"])[0])
    reports = client.search_for_instances(study_instance_uid=str(source.StudyInstanceUID),
                                          search_filters={"Modality": "SR"})  # other tests may have sent theirs
    [located] = [d for d in map(pydicom.Dataset.from_json, reports)
                 if d.SOPInstanceUID == sent.details["sr_sop_instance_uid"]]
    report = client.retrieve_instance(str(source.StudyInstanceUID), str(located.SeriesInstanceUID),
                                      str(located.SOPInstanceUID))
    said = read_back(report)
    assert said.source_sop_instance_uid == record.case.sop_instance_uid
    outline = said.outline
    width, height = record.case.original_size
    assert outline is not None and len(outline) >= 4 and (outline[0] == outline[-1]).all()
    assert outline[:, 0].min() >= 0 and outline[:, 0].max() <= width and outline[:, 1].max() <= height
    evaluations = dict(said.evaluations)  # one value each but the warnings and the set
    assert evaluations["MODEL-DX"] == ("1162635006" if prediction.predicted_class == "MEL" else prediction.predicted_class)
    assert evaluations["RISK-TIER"] == f"TIER-{prediction.risk_tier}"
    assert evaluations["REVIEW-DECISION"] == "DECISION-biopsy"
    assert said.measurements["111047"] == pytest.approx(prediction.malignancy, abs=1e-6)
    assert ("MODEL-ID", prediction.weights_sha256) in said.texts
    assert report.PatientID == pydicom.dcmread(_source_file(pacs, record.case.sop_instance_uid)).PatientID
    assert "PatientBirthDate" not in report or not report.PatientBirthDate  # nothing the image does not hold

    # A second pull leaves the report on the PACS instead of importing it as an image.
    assert _pull(pacs, url, tmp_path, shipped_weights, "--patient-id", PATIENT) == 0
    assert re.search(r"[1-9]\d* report\(s\) or other non-image object\(s\) left on the PACS", capsys.readouterr().out)


def _source_file(pacs: PacsServer, sop_uid: str | None) -> Path:
    folder = Path(__file__).resolve().parents[2] / "shared" / "data" / "siim_isic_2020" / "dicom"
    return next(f for f in folder.glob("*.dcm") if pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID == sop_uid)


def test_a_send_that_cannot_reach_the_pacs_is_retried_audited_and_not_marked_sent(pacs, tmp_path, tiny_weights):
    url, _ = _store_with_account(tmp_path)
    assert _pull(pacs, url, tmp_path, tiny_weights, "--patient-id", PATIENT) == 0
    store = Store.open(url)
    [record] = store.case_records()
    not_decided = send_result(pacs, store, record.case.id, REVIEWER)
    assert not not_decided.sent and "no reviewer has decided" in not_decided.message
    prediction = store.latest_prediction(record.case.id)
    assert prediction is not None
    store.record_decision(record.case.id, REVIEWER, "follow_up", seen_prediction_id=prediction.id)

    closed = PacsServer("http://127.0.0.1:9/dicom-web", "x", "y", timeout_s=2)  # the discard port: nobody listens
    pauses: list[float] = []
    outcome = send_result(closed, store, record.case.id, REVIEWER, sleep=pauses.append)
    assert not outcome.sent and "could not be reached" in outcome.message and len(pauses) == 2
    actions = [e.action for e in store.audit_entries(record.case.id)]
    assert PACS_NOT_SENT in actions and PACS_SENT not in actions
    assert unsent_cases(store, [record.case.id]) == [record.case.id]


def test_a_c_store_from_an_allowed_device_arrives_as_a_case_and_others_are_refused(tmp_path, tiny_weights,
                                                                                     siim_dicoms):
    url, _ = _store_with_account(tmp_path)
    listener = StorageListener(importer(url, "drpacs", tiny_weights), "SKINAPP", {"DERMSCOPE"}, port=0)
    try:
        dataset = pydicom.dcmread(siim_dicoms[0])
        dataset.SOPClassUID = VLPhotographicImageStorage  # a device sends its class unquoted (pynetdicom insists)
        intruder = AE(ae_title="INTRUDER")
        intruder.add_requested_context(VLPhotographicImageStorage, dataset.file_meta.TransferSyntaxUID)
        refused = intruder.associate("127.0.0.1", listener.port, ae_title="SKINAPP")
        assert not refused.is_established and Store.open(url).case_records() == []

        device = AE(ae_title="DERMSCOPE")
        device.add_requested_context(VLPhotographicImageStorage, dataset.file_meta.TransferSyntaxUID)
        wrong_called = device.associate("127.0.0.1", listener.port, ae_title="SOMEONE")
        assert not wrong_called.is_established
        association = device.associate("127.0.0.1", listener.port, ae_title="SKINAPP")
        assert association.is_established
        status = association.send_c_store(dataset)
        association.release()
        assert status.Status == 0x0000
    finally:
        listener.stop()
    store = Store.open(url)
    [record] = store.case_records()
    assert record.case.sop_instance_uid == str(dataset.SOPInstanceUID).strip('"')
    assert store.latest_prediction(record.case.id) is not None


def _search(app) -> None:
    [search] = [b for b in app.button if b.label == "Search the PACS"]
    search.click().run()


@pytest.mark.slow  # two pages driven through a pull and a send: over two seconds
def test_the_import_page_pulls_from_the_pacs_and_the_case_page_sends_the_result_back(pacs, tmp_path, tiny_weights,
                                                                                      monkeypatch):
    from test_app import _app, _page, _texts  # the app signed in, as the other AppTest tests drive it

    monkeypatch.setenv("SKINAPP_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SKINAPP_DATABASE_URL", raising=False)
    monkeypatch.setenv("SKINAPP_WEIGHTS", str(tiny_weights))
    monkeypatch.setenv("SKINAPP_PACS_URL", pacs.url)
    monkeypatch.setenv("SKINAPP_PACS_USER", str(pacs.user))
    monkeypatch.setenv("SKINAPP_PACS_PASSWORD_FILE", _password_file(tmp_path, str(pacs.password)))
    st.cache_resource.clear()
    st.cache_data.clear()
    try:
        app = _page(_app("Dr P. Acs"), "import_cases")
        _search(app)
        assert "Give a patient or a date range" in _texts(app)  # not the whole PACS from the page
        app.text_input(key="pacs_patient_id").input(PATIENT)
        _search(app)
        assert not app.exception and len(app.multiselect(key="pacs_chosen").value) == 1
        app.button(key="pacs_import_button").click().run()
        assert not app.exception
        assert "1 case(s) in the worklist from this import (1 new, 1 analysed)" in app.success[0].value
        assert any(plain_markdown("1 image(s) fetched from the PACS") in i.value for i in app.info)  # shown as written

        store = Store.open(f"sqlite:///{tmp_path / 'skinapp.db'}")
        [record] = store.case_records()
        prediction = store.latest_prediction(record.case.id)
        assert prediction is not None
        app.session_state["case_id"] = record.case.id
        _page(app, "case_review")
        assert "can be sent to the PACS once a decision is saved" in _texts(app)
        store.record_decision(record.case.id, "Dr P. Acs (drpacs)", "follow_up", seen_prediction_id=prediction.id)
        _page(app, "case_review")
        assert "has not been sent to the PACS yet" in _texts(app)
        app.button(key=f"pacs_send_{record.case.id}").click().run()
        assert not app.exception and "Sent: the PACS now holds the result" in app.success[-1].value
        assert unsent_cases(store, [record.case.id]) == []
        assert ("Dr P. Acs (drpacs)", PACS_SENT) in {(e.actor, e.action) for e in store.audit_entries(record.case.id)}
    finally:
        st.cache_resource.clear()


def test_the_readme_lists_every_private_code():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert [code for code in PRIVATE_CODES if f"| `{code}` |" not in readme] == []
