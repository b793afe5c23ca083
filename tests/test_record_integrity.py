"""Issue 11: decisions stay bound to the result they were made on; the record cannot be rewritten through the
application, and what is rewritten behind its back is detected; both backends keep and refuse the same texts."""

import csv
import io
import logging
import sqlite3

import pytest
import sqlalchemy
from sqlalchemy import create_engine

from conftest import synthetic_lesion, tamper
from skinapp.cli.main import main
from skinapp.inference import Predictor
from skinapp.io import InputFile
from skinapp.io.case import Case
from skinapp.reporting.case_report import case_report_html
from skinapp.store import InvalidText, PredictionChanged, Store
from skinapp.store.schema import metadata
from skinapp.vocab import Metadata, Site
from skinapp.workflow.analysis import import_and_analyse
from skinapp.workflow.export import export_csv
from skinapp.workflow.worklist import worklist


def _case(name: str, seed: int, patient: str | None = None) -> Case:
    image, _ = synthetic_lesion(seed=seed)
    return Case(name=name, image=image, source=f"{name}.png", image_name=name, patient_id=patient,
                metadata=Metadata(50, "female", Site("torso", "back")), original_size=(120, 90))


def _analysed(store: Store, predictor: Predictor, case: Case, metadata_used: Metadata | None = None) -> tuple[int, int]:
    case_id = store.add_case(case, "importer").id
    (prediction,) = predictor.predict([case.image], [metadata_used or case.metadata])
    return case_id, store.add_prediction(case_id, prediction, [], predictor.card.identity, "importer")


def _png(name: str, seed: int) -> InputFile:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(synthetic_lesion(seed=seed)[0]).save(buffer, "PNG")
    return InputFile.from_bytes(name, buffer.getvalue())


def test_a_decision_stays_with_the_result_it_was_made_on(db_url, tiny_weights):
    store, predictor = Store.open(db_url), Predictor.from_weights(tiny_weights)
    case = _case("lesion", 1)
    case_id, first = _analysed(store, predictor, case)
    agreed = store.record_decision(case_id, "Dr A", "agree", seen_prediction_id=first)
    assert (agreed.prediction_id, agreed.model_version) == (first, predictor.model_version)
    (row,) = worklist(store)
    assert row.reviewed and row.status == "reviewed"

    # the case is analysed again (e.g. a metadata CSV gave its age): the agreement does not move to the new result
    (again,) = predictor.predict([case.image], [Metadata(80, "male", Site("head/neck", "face"))])
    second = store.add_prediction(case_id, again, [], predictor.card.identity, "importer")
    (row,) = worklist(store)
    assert not row.reviewed and row.earlier_decision == agreed and row.prediction.id == second
    assert row.status == "to review (analysed again after a decision)"
    (exported,) = csv.DictReader(io.StringIO(export_csv([row]).decode("utf-8-sig")))
    assert exported["decision"] == "Agree with the model" and exported["decision_on_current_result"] == "False"
    assert exported["decision_made_on"] == f"{agreed.predicted_class}, model {predictor.model_version} (result {first})"
    report = case_report_html(store.case(case_id), store.case_image(case_id), row.prediction, store.decisions(case_id), "x")
    assert "made on an earlier result" in report and f"(result {first})" in report

    with pytest.raises(PredictionChanged):  # the reviewer's page still showed the first result
        store.record_decision(case_id, "Dr A", "agree", seen_decision_id=agreed.id, seen_prediction_id=first)
    redone = store.record_decision(case_id, "Dr A", "biopsy", seen_decision_id=agreed.id, seen_prediction_id=second)
    assert worklist(store)[0].reviewed and redone.prediction_id == second
    entries = [e for e in store.audit_entries(case_id) if e.action == "decision recorded"]
    assert [(e.details["prediction_id"], e.details["model_version"]) for e in entries] == [
        (first, predictor.model_version), (second, predictor.model_version)]
    assert [e.details["decision_id"] for e in entries] == [agreed.id, redone.id]


def _tamper(db, statements: list[str]) -> None:
    tamper(db, statements, ("audit_log", "decisions"))


@pytest.mark.parametrize("tampering, finding", [
    (["UPDATE audit_log SET actor = 'someone else' WHERE id = 2"], "entry 2 was altered"),
    (["DELETE FROM audit_log WHERE id = 2"], "entry 3 does not follow the entry before it"),
    (["INSERT INTO audit_log (at, actor, action, details) VALUES ('2026-01-01 00:00:00', 'x', 'export', '{}')"],
     "has no hash"),
    (["UPDATE decisions SET decision = 'follow_up' WHERE id = 1"], "decision 1 differs from its audit entry"),
    (["UPDATE decisions SET note = 'changed' WHERE id = 1"], "decision 1 differs from its audit entry"),
    (["INSERT INTO decisions (case_id, reviewer, created_at, decision, note) VALUES (1, 'x', '2026-01-01', 'agree', '')"],
     "decision 2 has no audit entry"),
])
def test_the_audit_trail_is_chained_and_rewriting_it_is_detected(db, tampering, finding, capsys):
    store = Store.open(db.url)
    case_id = store.add_case(_case("a", 1), "importer").id
    store.record_decision(case_id, "Dr A", "manual_check", note="look again", seen_prediction_id=None)
    store.log_export("Dr A", "worklist CSV", [case_id])
    check = store.verify_audit()
    assert check.ok and check.entries == 3 and check.decisions == 1, check.problems
    assert main(["audit", "verify", "--database", db.url]) == 0
    assert "audit trail intact: 3 entries" in capsys.readouterr().out

    _tamper(db, tampering)
    check = Store.open(db.url).verify_audit()
    assert not check.ok and any(finding in p for p in check.problems), check.problems
    assert main(["audit", "verify", "--database", db.url]) == 1
    assert finding in capsys.readouterr().out


def test_the_application_cannot_rewrite_the_record(db):
    store = Store.open(db.url)
    case_id = store.add_case(_case("a", 1), "importer").id
    store.record_decision(case_id, "Dr A", "agree", seen_prediction_id=None)
    store.edit_case(case_id, "Dr A", {"age": 61})
    store.add_measurement(case_id, "Dr A", "scale", [[0, 0], [50, 0]], 5.0)
    sqlite = db.admin_url is None
    attempts = [
        "UPDATE case_edits SET changes = '{\"age\": 12}'", "DELETE FROM case_edits",
        "UPDATE case_measurements SET length_mm = 1", "DELETE FROM case_measurements",
        "UPDATE audit_log SET actor = 'someone else'", "DELETE FROM audit_log", "UPDATE decisions SET decision = 'biopsy'",
        "DELETE FROM decisions", "DELETE FROM cases", "UPDATE cases SET name = 'other'",
        "UPDATE cases SET age = 12",  # stored metadata is never overwritten, only missing metadata filled in
        ("INSERT OR REPLACE INTO audit_log (id, at, actor, action, details) VALUES (1, '2026-01-01', 'x', 'y', '{}')"
         if sqlite else "INSERT INTO audit_log (id, at, actor, action, details) VALUES (1, now(), 'x', 'y', '{}') "
                        "ON CONFLICT (id) DO UPDATE SET actor = 'x'"),
        ("INSERT OR REPLACE INTO decisions (id, case_id, reviewer, created_at, decision, note) "
         "VALUES (1, 1, 'x', '2026-01-01', 'biopsy', '')" if sqlite else
         "INSERT INTO decisions (id, case_id, reviewer, created_at, decision, note) VALUES (1, 1, 'x', now(), 'biopsy', '') "
         "ON CONFLICT (id) DO UPDATE SET decision = 'biopsy'"),
        "DROP TRIGGER audit_log_no_update" if sqlite else "DROP TRIGGER skinapp_audit_log_rows ON audit_log",
        "ALTER TABLE audit_log RENAME TO old_log",
        "DROP TABLE audit_log",
    ]
    if sqlite:
        attempts += ["PRAGMA writable_schema = ON", "CREATE TRIGGER sneak AFTER INSERT ON decisions BEGIN SELECT 1; END",
                     "CREATE TEMP TRIGGER sneak AFTER INSERT ON main.decisions BEGIN SELECT 1; END"]
    else:
        attempts += ["TRUNCATE audit_log", "ALTER TABLE audit_log DISABLE TRIGGER ALL", "TRUNCATE decisions"]
    for statement in attempts:
        with pytest.raises(sqlalchemy.exc.DBAPIError), store.engine.begin() as connection:
            connection.exec_driver_sql(statement)
    assert store.verify_audit().ok and len(store.decisions(case_id)) == 1 and store.case(case_id).metadata.age == 61
    assert store.case(case_id).mm_per_pixel == pytest.approx(0.1)
    assert not store.connected_as_owner

    if not sqlite:  # even the tables' owner cannot empty them, and the app warns when it connects as the owner
        owner = Store.open(db.owner_url)
        assert owner.connected_as_owner
        for statement in ("TRUNCATE audit_log", "DELETE FROM decisions"):
            with pytest.raises(sqlalchemy.exc.DBAPIError, match="append-only"), owner.engine.begin() as connection:
                connection.exec_driver_sql(statement)


def test_texts_have_the_same_limits_on_both_backends_and_one_bad_case_never_stops_the_batch(db_url, tiny_weights, caplog):
    store, predictor = Store.open(db_url), Predictor.from_weights(tiny_weights)
    long_id = "P" * 135
    metadata_csv = io.BytesIO(("image_name,patient_id\n" + "".join(
        f"c{i},{long_id if i == 3 else f'P{i}'}\n" for i in range(7))).encode())
    caplog.set_level(logging.DEBUG)
    result = import_and_analyse([_png(f"c{i}.png", i) for i in range(7)], store, predictor, "Dr A", metadata_csv=metadata_csv)
    assert result.new_cases == 6 and result.analysed == 6 and "c3" not in result.report.imported
    (rejected,) = result.report.rejected
    assert rejected.file == "c3.png"
    assert rejected.reason == "not stored: the patient id is 135 characters long; at most 128 are kept"
    assert long_id not in caplog.text
    assert sorted(r.case.name for r in worklist(store)) == ["c0", "c1", "c2", "c4", "c5", "c6"]

    case_id = result.case_ids[0]
    seen = store.latest_prediction(case_id).id
    for reviewer, note, message in (("x" * 1_000_000, "", "reviewer is 1,000,000 characters long"),
                                    ("Dr A", "n" * 20_000_000, "note is 20,000,000 characters long"),
                                    ("Dr A", "a\x00b", "control character"),
                                    ("Dr\x1bA", "", "control character"),
                                    ("Dr \u202eA rD", "", "text-direction override")):
        with pytest.raises(InvalidText, match=message):
            store.record_decision(case_id, reviewer, "agree", note=note, seen_prediction_id=seen)
    saved = store.record_decision(case_id, "Dr A", "agree", note="line one\n\tline two " + "x" * 3981, seen_prediction_id=seen)
    assert len(saved.note) == 4000 and store.decisions(case_id) == [saved]


def test_an_older_database_is_upgraded_and_its_history_sealed_into_the_chain(tmp_path, capsys):
    """A database of the previous release (no chain, no decision model, no users) opens, gains what it lacked,
    and its earlier entries are covered by the chain from then on."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    old = sqlalchemy.MetaData()
    new_columns = {("decisions", "model_version"), ("decisions", "predicted_class"), ("audit_log", "prev_hash"),
                   ("audit_log", "entry_hash")}
    for table in metadata.sorted_tables:
        if table.name != "users":
            sqlalchemy.Table(table.name, old, *[sqlalchemy.Column(c.name, c.type, primary_key=c.primary_key,
                                                                  nullable=c.nullable)
                                                for c in table.c if (table.name, c.name) not in new_columns])
    old.create_all(engine)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO cases (content_key, name, source, is_dermoscopic, image_png, thumbnail_jpeg, imported_at, imported_by) "
            "VALUES ('k', 'old case', 'old.png', 1, x'00', x'00', '2026-01-01 10:00:00.000000', 'Dr Old')")
        connection.exec_driver_sql("INSERT INTO decisions (case_id, reviewer, created_at, decision, note) "
                                   "VALUES (1, 'Dr Old', '2026-01-02 10:00:00.000000', 'follow_up', 'seen')")
        for action in ("case imported", "decision recorded"):
            connection.exec_driver_sql(f"INSERT INTO audit_log (at, actor, action, case_id, details) "
                                       f"VALUES ('2026-01-02 10:00:00.000000', 'Dr Old', '{action}', 1, '{{}}')")
    engine.dispose()

    store = Store.open(url)
    check = store.verify_audit()
    assert check.ok and check.before_chain == 2 and check.entries == 3, check.problems
    assert [e.action for e in store.audit_entries()][-1] == "audit chain started"
    (decision,) = store.decisions(1)
    assert decision.prediction_id is None and decision.model_version is None and decision.note == "seen"
    store.record_decision(1, "Dr New", "biopsy", seen_decision_id=decision.id, seen_prediction_id=None)
    assert store.verify_audit().ok

    raw = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    raw.execute("DROP TRIGGER audit_log_no_update")
    raw.execute("UPDATE audit_log SET actor = 'Dr Other' WHERE id = 1")  # rewrite history from before the chain
    raw.close()
    check = Store.open(url).verify_audit()  # opening it also put the removed trigger back
    assert not check.ok and "entry 3 does not follow the entry before it" in check.problems[0]
    raw = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    assert raw.execute("SELECT count(*) FROM sqlite_master WHERE name = 'audit_log_no_update'").fetchone() == (1,)
    raw.execute("DROP TRIGGER audit_log_no_update")
    raw.close()
    assert main(["db", "init", "--database", url]) == 0
    assert "the append-only guards" in capsys.readouterr().out


def test_a_refused_write_reaches_the_log_without_the_value_the_database_quotes():
    from sqlalchemy.exc import DataError, IntegrityError

    from skinapp.workflow.analysis import database_error

    class UniqueViolation(Exception):
        sqlstate = "23505"

    refused = IntegrityError("INSERT INTO cases …", {"patient_id": "Jane Q. Public"},
                             UniqueViolation('Key (patient_id)=(Jane Q. Public) already exists.'))
    assert database_error(refused) == "UniqueViolation (23505)"
    assert "Jane" not in database_error(DataError("INSERT …", None, ValueError("'Jane' is not a float")))
