import csv
import io
import os
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import synthetic_lesion
from skinapp.inference import Predictor
from skinapp.io.case import Case
from skinapp.model.card import Calibration
from skinapp.reporting.case_report import case_report_html
from skinapp.reporting.text import plain_markdown
from skinapp.store import DecisionConflict, Store
from skinapp.vocab import Metadata, Site
from skinapp.workflow.analysis import import_and_analyse
from skinapp.workflow.context import ugly_duckling_scores
from skinapp.workflow.export import export_csv, spreadsheet_safe
from skinapp.workflow.worklist import Filters, apply_filters, worklist


def _case(name: str, seed: int, patient: str | None = None) -> Case:
    image, _ = synthetic_lesion(seed=seed)
    return Case(name=name, image=image, source=f"{name}.png", image_name=name, patient_id=patient,
                metadata=Metadata(50, "female", Site("torso", "back")), original_size=(120, 90))


def test_nothing_is_lost_across_a_restart_and_the_database_is_in_wal_mode(db_url, tmp_path):
    store = Store.open(db_url)
    case_id, new, _ = store.add_case(_case("a", 1), "importer")
    assert new and store.add_case(_case("a", 1), "importer") == (case_id, False, ())  # same image: same case
    store.record_decision(case_id, "Dr A", "follow_up", note="see in 3 months", seen_prediction_id=None)
    store.engine.dispose()

    reopened = Store.open(db_url)
    (row,) = worklist(reopened)
    assert row.case.name == "a" and row.decision.label == "Follow-up" and row.decision.note == "see in 3 months"
    assert np.array_equal(reopened.case_image(case_id), _case("a", 1).image)  # lossless
    if db_url.startswith("sqlite"):
        assert sqlite3.connect(tmp_path / "skinapp.db").execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_later_reviewer_never_silently_overwrites(db_url):
    store = Store.open(db_url)
    case_id = store.add_case(_case("a", 1), "importer").id
    first = store.record_decision(case_id, "Dr A", "agree", seen_decision_id=None, seen_prediction_id=None)
    with pytest.raises(DecisionConflict) as conflict:
        # B had not seen A's decision
        store.record_decision(case_id, "Dr B", "biopsy", seen_decision_id=None, seen_prediction_id=None)
    assert conflict.value.current == first
    second = store.record_decision(case_id, "Dr B", "biopsy", seen_decision_id=first.id, seen_prediction_id=None)
    assert second.replaces_id == first.id
    assert [d.reviewer for d in store.decisions(case_id)] == ["Dr A", "Dr B"]  # both kept
    with pytest.raises(ValueError, match="diagnosis"):
        store.record_decision(case_id, "Dr C", "disagree", seen_decision_id=second.id, seen_prediction_id=None)
    with pytest.raises(ValueError, match="name"):
        store.record_decision(case_id, "  ", "agree", seen_decision_id=second.id, seen_prediction_id=None)


def test_two_processes_deciding_at_once_give_one_decision_and_one_conflict(db_url):
    case_id = Store.open(db_url).add_case(_case("a", 1), "importer").id
    outcomes = []
    barrier = threading.Barrier(2)

    def decide(name):
        store = Store.open(db_url)  # its own engine, as a second app process would have
        barrier.wait()
        try:
            store.record_decision(case_id, name, "agree", seen_decision_id=None, seen_prediction_id=None)
            outcomes.append("saved")
        except DecisionConflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=decide, args=(n,)) for n in ("Dr A", "Dr B")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict", "saved"]


def test_import_analyse_and_worklist_order(db_url, tiny_weights):
    store = Store.open(db_url)
    predictor = Predictor.from_weights(tiny_weights)
    cases = [_case(f"c{i}", i, patient="P1") for i in range(4)]
    progress = []
    from PIL import Image

    from skinapp.io import InputFile

    def png(case):
        buffer = io.BytesIO()
        Image.fromarray(case.image).save(buffer, "PNG")
        return InputFile.from_bytes(f"{case.name}.png", buffer.getvalue())

    metadata_csv = io.BytesIO(b"image_name,patient_id,age_approx,sex,anatom_site_general_challenge\n"
                         + b"".join(f"c{i},P1,50,female,torso\n".encode() for i in range(4)))
    result = import_and_analyse([png(c) for c in cases] + [InputFile.from_bytes("bad.jpg", b"nope")], store, predictor,
                                "Dr A", metadata_csv=metadata_csv, progress=lambda f, t: progress.append(f))
    assert result.new_cases == 4 and result.analysed == 4 and [r.file for r in result.report.rejected] == ["bad.jpg"]
    assert progress[-1] == 1.0 and progress == sorted(progress)
    again = import_and_analyse([png(cases[0])], store, predictor, "Dr A")
    assert again.new_cases == 0 and again.analysed == 0  # the same image by the same model: nothing to redo
    rows = worklist(store)  # the order itself is tested on hand-made records in test_worklist.py
    assert [r.case.id for r in rows] != [] and len(rows) == 4
    assert all(r.prediction.weights_sha256 == predictor.card.identity for r in rows)
    assert all(r.context is not None and r.context.ugly_duckling is not None for r in rows)  # 4 lesions of P1
    store.record_decision(rows[0].case.id, "Dr A", "agree", seen_prediction_id=rows[0].prediction.id)
    assert worklist(store)[-1].case.id == rows[0].case.id  # reviewed cases go to the end
    assert [r.case.id for r in apply_filters(worklist(store), Filters(status="reviewed"))] == [rows[0].case.id]
    assert len(apply_filters(worklist(store), Filters(text="c2"))) == 1


def test_a_later_metadata_csv_fills_what_a_case_lacked_and_keeps_the_rest(db_url, tiny_weights):
    from PIL import Image

    from skinapp.io import InputFile

    store = Store.open(db_url)
    predictor = Predictor.from_weights(tiny_weights)
    buffer = io.BytesIO()
    Image.fromarray(synthetic_lesion(seed=5)[0]).save(buffer, "PNG")
    upload = InputFile.from_bytes("x.png", buffer.getvalue())
    (case_id,) = import_and_analyse([upload], store, predictor, "Dr A").case_ids
    decision = store.record_decision(case_id, "Dr A", "follow_up", note="kept",
                                     seen_prediction_id=store.latest_prediction(case_id).id)
    metadata_csv = io.BytesIO(b"image_name,patient_id,age_approx,sex\nx,P9,61,female\n")
    again = import_and_analyse([upload], store, predictor, "Dr B", metadata_csv=metadata_csv)
    assert again.case_ids == [case_id] and again.new_cases == 0 and again.analysed == 1  # age and sex reach the model
    case = store.case(case_id)
    assert case.patient_id == "P9" and case.metadata.age == 61 and case.imported_by == "Dr A"
    assert store.latest_prediction(case_id).metadata_used.sex == "female"
    assert store.latest_decision(case_id) == decision  # kept, on the result it was made on
    (row,) = worklist(store)
    assert not row.reviewed and row.earlier_decision == decision and row.status.startswith("to review")
    assert decision.prediction_id != row.prediction.id
    filled = [e for e in store.audit_entries(case_id) if e.action == "case metadata filled"]
    assert [(e.actor, e.details["fields"]) for e in filled] == [("Dr B", ["age", "patient_id", "sex"])]
    other = io.BytesIO(b"image_name,patient_id,age_approx\nx,P10,30\n")
    import_and_analyse([upload], store, predictor, "Dr C", metadata_csv=other)
    assert store.case(case_id).patient_id == "P9" and store.case(case_id).metadata.age == 61  # never overwritten


def test_exports_are_safe(db_url, tiny_weights):
    store = Store.open(db_url)
    predictor = Predictor.from_weights(tiny_weights)
    hostile = _case("=HYPERLINK(\"http://x\")", 3, patient="<img src=x onerror=alert(1)>")
    case_id = store.add_case(hostile, "importer").id
    (prediction,) = predictor.predict([hostile.image], [hostile.metadata])
    store.add_prediction(case_id, prediction, [], predictor.card.identity, "importer")
    store.record_decision(case_id, "@Dr Evil", "agree", note="-2+3 <script>alert(1)</script>",
                          seen_prediction_id=store.latest_prediction(case_id).id)
    rows = list(csv.DictReader(io.StringIO(export_csv(worklist(store)).decode("utf-8-sig"))))
    assert rows[0]["case"].startswith("'=") and rows[0]["reviewer"] == "'@Dr Evil" and rows[0]["note"].startswith("'-2")
    page = case_report_html(store.case(case_id), store.case_image(case_id), store.latest_prediction(case_id),
                            store.decisions(case_id), "Dr A")
    assert "<script>" not in page and "<img src=x" not in page and "&lt;script&gt;" in page
    assert spreadsheet_safe(3.5) == 3.5 and spreadsheet_safe("ok") == "ok" and spreadsheet_safe("-0.25") == "-0.25"
    assert plain_markdown("**bold** [link](javascript:x) <b>") == "\\*\\*bold\\*\\* \\[link\\]\\(javascript\u2060\\:x\\) \\<b\\>"


def test_ugly_duckling_stands_out():
    rng = np.random.default_rng(0)
    base = rng.normal(size=16)
    similar = [base + rng.normal(scale=0.2, size=16) for _ in range(4)]
    odd = -base + rng.normal(scale=0.2, size=16)
    scores = ugly_duckling_scores([1, 2, 3, 4, 5], np.stack([*similar, odd]))
    assert scores[-1].rank == 1 and scores[-1].ugly_duckling > 2 * max(s.ugly_duckling for s in scores[:-1])
    assert all(s.ugly_duckling is None for s in ugly_duckling_scores([1, 2], np.stack(similar[:2])))


def test_stored_predictions_keep_their_own_call_and_model(db_url, tmp_path):
    """A prediction made with a decision rule keeps its call (which may differ from the highest probability);
    one made by an older model keeps its argmax call and is marked as made by the older model."""
    import shutil

    from conftest import write_weights
    from skinapp.model.card import ModelCard
    from skinapp.trust.conformal import ConformalSets
    from skinapp.trust.decision import DecisionRule
    from skinapp.trust.safety_net import SafetyNet
    from skinapp.workflow.worklist import model_label, worklist_records

    store = Store.open(db_url)
    old_weights = write_weights(tmp_path / "old")
    new_weights = tmp_path / "new"
    shutil.copytree(old_weights, new_weights)
    old = Predictor.from_weights(old_weights)
    case = _case("lesion", 5)
    case_id = store.add_case(case, "importer").id
    (before,) = old.predict([case.image], [case.metadata])
    store.add_prediction(case_id, before, [], old.card.identity, "importer")
    stored_old = store.latest_prediction(case_id)
    assert stored_old.predicted_class == before.predicted_class == stored_old.most_probable_class
    assert not stored_old.follows_decision_rule

    card = ModelCard.load(new_weights)
    prior = np.full(7, 0.02)
    prior[before.predicted_index] = 0.88
    card.decision_rule = DecisionRule(tuple(prior / prior.sum()), 2.0)
    card.conformal = ConformalSets(threshold=1.0)  # every class in the set
    card.safety_net = SafetyNet(threshold=0.0)        # every case suspicious
    card.version = "test-balanced"
    card.save(new_weights)
    new = Predictor.from_weights(new_weights)
    (after,) = new.predict([case.image], [case.metadata])
    new_sha = "b" * 64
    store.add_prediction(case_id, after, [], new_sha, "importer")
    stored_new = store.latest_prediction(case_id)
    assert stored_new.predicted_class == after.predicted_class != stored_new.most_probable_class
    assert stored_new.follows_decision_rule and np.allclose(stored_new.decision_scores, after.decision_scores)
    assert stored_new.prediction_set == after.prediction_set and len(after.prediction_set) == 7
    assert stored_new.prediction_set[0] == after.predicted_class and stored_new.suspicious is True
    assert stored_old.prediction_set is None and stored_old.suspicious is None

    (record,) = worklist_records(worklist(store), installed_weights_sha256=new_sha)
    assert record["top_diagnosis"] == after.predicted_class and record["model"] == "current"
    assert record["top_probability"] == round(float(after.probabilities[after.predicted_index]), 4)
    assert record["suspicious"] is True and record["prediction_set"].startswith(after.predicted_class)
    assert model_label(stored_old, new_sha) == f"older model ({old.model_version})"
    page = case_report_html(store.case(case_id), store.case_image(case_id), stored_new, [], "Dr A")
    assert "the single most probable diagnosis" in page and "Possible diagnoses" in page


def test_a_large_batch_is_read_analysed_and_let_go_a_chunk_at_a_time(tmp_path, tiny_weights):
    """Memory holds one chunk of cases, not the batch: analysis starts before the later files are read."""
    from PIL import Image

    from skinapp.io import InputFile

    store = Store.open(f"sqlite:///{tmp_path / 'batch.db'}")
    predictor = Predictor.from_weights(tiny_weights)
    uploads = []
    for i in range(11):
        buffer = io.BytesIO()
        Image.fromarray(synthetic_lesion(seed=i)[0]).save(buffer, "PNG")
        uploads.append(InputFile.from_bytes(f"c{i}.png", buffer.getvalue()))
    files_read: list[int] = []
    predicted_after: list[tuple[int, int]] = []
    original = predictor.predict

    def counting_predict(images, metadata):
        predicted_after.append((max(files_read), len(images)))
        return original(images, metadata)

    predictor.predict = counting_predict  # type: ignore[method-assign]
    result = import_and_analyse(uploads, store, predictor, "Dr A", chunk=4,
                                progress=lambda f, text: files_read.append(round(f * len(uploads))))
    assert result.analysed == 11
    assert [n for _, n in predicted_after] == [4, 4, 3]
    assert [read for read, _ in predicted_after][:2] == [3, 7]  # 4 and 8 files read (progress counts the files done)


def test_reviewed_cases_matches_the_worklist_without_loading_it(db_url, tiny_weights):
    store = Store.open(db_url)
    predictor = Predictor.from_weights(tiny_weights)
    ids = []
    for i in range(4):
        case = _case(f"q{i}", 20 + i)
        ids.append(store.add_case(case, "importer").id)
        if i < 3:
            (prediction,) = predictor.predict([case.image], [case.metadata])
            store.add_prediction(ids[-1], prediction, [], predictor.card.identity, "importer")
    for case_id in ids[:2]:
        store.record_decision(case_id, "Dr A", "agree", seen_prediction_id=store.latest_prediction(case_id).id)
    store.record_decision(ids[3], "Dr A", "manual_check", seen_prediction_id=None)  # never analysed: decided as is
    (again,) = predictor.predict([_case("q1", 21).image], [_case("q1", 21).metadata])
    store.add_prediction(ids[1], again, [], predictor.card.identity, "importer")  # analysed again after its decision
    assert store.reviewed_cases(ids) == {r.case.id for r in worklist(store) if r.reviewed} == {ids[0], ids[3]}
    assert store.reviewed_cases([]) == set()
    assert store.reviewed_cases([*range(10_000, 12_500), *ids]) == {ids[0], ids[3]}  # a long queue, asked in parts


def test_predictions_are_decoded_once_and_a_new_analysis_is_read_at_once(db_url, tiny_weights, monkeypatch):
    """The worklist keeps decoded predictions by id (the rows never change); a re-analysis is a new id, so the
    worklist shows it at once, and a store with a small keep drops the least recently read."""
    import skinapp.store.decoded as decoded

    store = Store.open(db_url)
    predictor = Predictor.from_weights(tiny_weights)
    cases = [_case(f"d{i}", 40 + i) for i in range(3)]
    ids = [store.add_case(case, "importer").id for case in cases]
    for case_id, case in zip(ids, cases, strict=True):
        (prediction,) = predictor.predict([case.image], [case.metadata])
        store.add_prediction(case_id, prediction, [], predictor.card.identity, "importer")
    decodes, decode = [], decoded.prediction_from_row
    monkeypatch.setattr(decoded, "prediction_from_row", lambda row, header: decodes.append(row["id"]) or decode(row, header))

    first = {r.case.id: r.prediction for r in worklist(store)}
    assert len(decodes) == 3 and {r.case.id: r.prediction for r in worklist(store)} == first and len(decodes) == 3
    (again,) = predictor.predict([cases[1].image], [Metadata(30, "male", Site("torso", "back"))])
    new_id = store.add_prediction(ids[1], again, [], predictor.card.identity, "importer")
    latest = {r.case.id: r.prediction for r in worklist(store)}
    assert latest[ids[1]].id == new_id and latest[ids[1]].metadata_used.age == 30 and decodes[3:] == [new_id]
    assert store.latest_prediction(ids[1]) is latest[ids[1]]  # the same decoded object: nothing decoded again

    store._decoded.capacity = 2
    store.warm()
    assert len(store._decoded) == 2 and store.latest_prediction(ids[0]).id == first[ids[0]].id


def test_a_metadata_correction_is_kept_beside_the_imported_values_audited_and_read_everywhere(db_url):
    from sqlalchemy import select

    from skinapp.store.schema import cases

    store = Store.open(db_url)
    case_id = store.add_case(_case("a", 1, patient="P1"), "importer").id
    other = store.add_case(_case("b", 2, patient="P1"), "importer").id
    edited, model_input = store.edit_case(case_id, "Dr A", {"age": 63, "patient_id": " P2 ", "lesion_id": "L7"})
    assert model_input and edited.metadata.age == 63 and edited.patient_id == "P2" and edited.lesion_id == "L7"
    assert set(edited.edited) == {"age", "patient_id", "lesion_id"}
    assert store.case(case_id) == edited
    with store.engine.connect() as connection:  # what the import said is still there
        assert connection.execute(select(cases.c.age, cases.c.patient_id).where(cases.c.id == case_id)).one() == (50, "P1")
    assert [r.case.id for r in store.case_records(patient_id="P2")] == [case_id]
    assert [r.case.id for r in store.case_records(patient_id="P1")] == [other]
    assert {r.case.id: r.case.metadata.age for r in store.case_records()} == {case_id: 63, other: 50}
    (entry,) = [e for e in store.audit_entries(case_id) if e.action == "case metadata corrected"]
    assert entry.actor == "Dr A" and entry.details["fields"] == ["age", "lesion_id", "patient_id"]

    _, model_input = store.edit_case(case_id, "Dr B", {"lesion_id": "L8", "age": 63})  # the age did not change
    assert not model_input and store.case(case_id).lesion_id == "L8"
    corrections = [e.details["fields"] for e in store.audit_entries(case_id) if e.action == "case metadata corrected"]
    assert corrections[-1] == ["lesion_id"]
    _, model_input = store.edit_case(case_id, "Dr B", {"age": None, "site_region": "head/neck", "site_fine": "face"})
    assert model_input and store.case(case_id).metadata == Metadata(None, "female", Site("head/neck", "face"))
    _, model_input = store.edit_case(case_id, "Dr B", {"study_date": "2025-03-10"})  # the day the picture was taken
    assert not model_input and store.case(case_id).study_date == "2025-03-10" and "study_date" in store.case(case_id).edited
    assert [e.details["fields"] for e in store.audit_entries(case_id)
            if e.action == "case metadata corrected"][-1] == ["study_date"]


@pytest.mark.parametrize("changes, message", [
    ({"age": 130}, "between 0 and 120"), ({"age": "old"}, "not a number"), ({"sex": "x"}, "male, female"),
    ({"site_region": "torso", "site_fine": "face"}, "does not lie in the region"), ({"site_region": "moon"}, "region"),
    ({"name": "other"}, "cannot be corrected"), ({"patient_id": "P\x00"}, "control character"),
])
def test_a_bad_correction_is_refused_with_the_field_and_rule_and_nothing_is_written(db_url, changes, message):
    from skinapp.store import InvalidText

    store = Store.open(db_url)
    case_id = store.add_case(_case("a", 1), "importer").id
    before = store.case(case_id)
    with pytest.raises(InvalidText, match=message):
        store.edit_case(case_id, "Dr A", changes)
    assert store.case(case_id) == before


def test_a_ruler_calibration_gives_the_image_a_scale_and_the_diameter_is_measured_in_mm(db_url):
    from skinapp.store import InvalidText

    store = Store.open(db_url)
    case_id = store.add_case(_case("a", 1), "importer").id
    assert store.case(case_id).mm_per_pixel is None
    with pytest.raises(InvalidText, match="no scale yet"):
        store.add_measurement(case_id, "Dr A", "diameter", [[10, 10], [60, 10]])
    with pytest.raises(InvalidText, match="too close"):
        store.add_measurement(case_id, "Dr A", "scale", [[10, 10], [12, 10]], 1.0)
    with pytest.raises(InvalidText, match="outside the image"):
        store.add_measurement(case_id, "Dr A", "scale", [[10, 10], [500, 10]], 1.0)
    store.add_measurement(case_id, "Dr A", "scale", [[10, 80], [40, 80]], 3.0)   # 3 mm over 30 px
    assert store.case(case_id).mm_per_pixel == pytest.approx(0.1)
    assert store.case(case_id).scale_source == "calibrated on the ruler in the image"
    diameter = store.add_measurement(case_id, "Dr A", "diameter", [[20, 20], [50, 60]])   # 50 px
    assert diameter.length_mm == pytest.approx(5.0) and diameter.length_px == pytest.approx(50)
    store.add_measurement(case_id, "Dr B", "scale", [[10, 80], [70, 80]], 3.0)   # a better calibration: 0.05 mm/px
    assert store.case(case_id).mm_per_pixel == pytest.approx(0.05)
    kinds = [(m.kind, m.measured_by, round(m.length_mm, 2)) for m in store.measurements(case_id)]
    assert kinds == [("scale", "Dr A", 3.0), ("diameter", "Dr A", 5.0), ("scale", "Dr B", 3.0)]
    assert [e.action for e in store.audit_entries(case_id)][-3:] == ["scale measured", "diameter measured", "scale measured"]


def test_a_corrected_case_is_analysed_again_with_its_new_metadata_and_is_back_to_review(db_url, tiny_weights):
    from skinapp.workflow.analysis import reanalyse_case

    store, predictor = Store.open(db_url), Predictor.from_weights(tiny_weights)
    result = import_and_analyse([_case_file("a", 1)], store, predictor, "importer")
    (case_id,) = result.case_ids
    first = store.latest_prediction(case_id)
    store.record_decision(case_id, "Dr A", "agree", seen_prediction_id=first.id)
    store.edit_case(case_id, "Dr A", {"age": 80, "sex": "male"})
    second = reanalyse_case(case_id, store, predictor, "Dr A")
    latest = store.latest_prediction(case_id)
    assert latest.id == second != first.id and latest.metadata_used.age == 80 and latest.metadata_used.sex == "male"
    (row,) = worklist(store)
    assert not row.reviewed and row.earlier_decision is not None
    # under a new model (here: recalibrated) the same image imported again is analysed with the corrected
    # metadata, not the file's (which has none)
    predictor.card.calibration = Calibration(1.5)
    again = import_and_analyse([_case_file("a", 1)], store, predictor, "importer")
    assert again.case_ids == [case_id] and again.analysed == 1
    latest = store.latest_prediction(case_id)
    assert latest.id > second and latest.metadata_used.age == 80 and latest.metadata_used.sex == "male"


def _case_file(name: str, seed: int):
    from PIL import Image

    from skinapp.io import InputFile

    buffer = io.BytesIO()
    Image.fromarray(synthetic_lesion(seed=seed)[0]).save(buffer, "PNG")
    return InputFile.from_bytes(f"{name}.png", buffer.getvalue())


def test_concurrent_imports_of_the_same_images_read_already_stored_not_an_error(db_url):
    """Four clinicians importing the same folder at once (issue 30: on PostgreSQL both may look before either
    writes): every image is stored once, and each import gets its id back, new or already stored."""
    from concurrent.futures import ThreadPoolExecutor

    Store.open(db_url)  # set up once, as the app does at start
    images = [_case(f"c{k}", k) for k in range(5)]

    def import_all(worker: int) -> list[int]:
        store = Store.open(db_url)
        try:
            return [store.add_case(case, f"Dr {worker}").id for case in images]
        finally:
            store.engine.dispose()

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(import_all, range(4)))
    assert all(ids == results[0] for ids in results) and len(set(results[0])) == 5
    store = Store.open(db_url)
    assert len(store.case_records()) == 5 and store.verify_audit().ok


@pytest.mark.slow  # six interpreters start
def test_processes_opening_a_new_database_at_once_all_get_it(tmp_path, monkeypatch):
    """Several app processes (or commands) starting on a new SQLite file at the same moment: one sets it up, the
    others wait for it; none fails with "database is locked", and all share one server key."""
    import subprocess
    import sys

    script = ("from skinapp.store import Store\n"
              f"Store.open('sqlite:///{tmp_path / 'new.db'}').log_export('Dr A', 'x')\nprint('ok')\n")
    env = {**os.environ, "SKINAPP_AUDIT_KEY_FILE": str(tmp_path / "keys" / "audit.key"),
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    processes = [subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for _ in range(6)]
    results = [p.communicate(timeout=120) for p in processes]
    assert all(out.strip() == "ok" for out, _ in results), [err[-300:] for _, err in results]
    monkeypatch.setenv("SKINAPP_AUDIT_KEY_FILE", env["SKINAPP_AUDIT_KEY_FILE"])  # the key they made, and shared
    store = Store.open(f"sqlite:///{tmp_path / 'new.db'}")
    assert len([e for e in store.audit_entries() if e.action == "export"]) == 6 and store.verify_audit().ok


def test_images_known_to_the_store_can_be_counted_by_the_model_of_their_latest_result(db_url, tiny_weights):
    """A PACS pull skips images already stored with this model's latest result, and fetches again the others."""
    import dataclasses

    store = Store.open(db_url)
    (prediction,) = Predictor.from_weights(tiny_weights).predict([_case("x", 1).image])
    ids = {}
    for name in ("none", "this", "other", "other_then_this", "this_then_other"):
        case = dataclasses.replace(_case(name, len(ids)), sop_instance_uid=f"1.2.3.{len(ids)}")
        ids[name] = (store.add_case(case, "importer").id, case.sop_instance_uid)
    for name, models in {"this": ["A"], "other": ["B"], "other_then_this": ["B", "A"],
                         "this_then_other": ["A", "B"]}.items():
        for model in models:
            store.add_prediction(ids[name][0], prediction, [], model, "importer")
    uids = [uid for _, uid in ids.values()] + ["9.9.9"]
    assert store.known_sop_instance_uids(uids) == {uid for _, uid in ids.values()}
    assert store.known_sop_instance_uids(uids, analysed_by="A") == {ids["this"][1], ids["other_then_this"][1]}
