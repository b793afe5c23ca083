"""Every stored fact is in the audit chain (issue 30): a case's content, pictures and metadata, each prediction,
measurement and correction is digested into the audit entry that stored it, and `audit verify` names what was
changed behind the application's back, on SQLite and PostgreSQL."""

from dataclasses import replace

import pytest

from conftest import synthetic_lesion, tamper
from skinapp.inference import Predictor
from skinapp.io.case import Case
from skinapp.store import Store
from skinapp.store.records import SCALE
from skinapp.vocab import Metadata, Site

pytestmark = pytest.mark.slow  # the tamper suite: a model run and a database per finding, on both backends


def _case(name: str, seed: int) -> Case:
    image, _ = synthetic_lesion(seed=seed)
    return Case(name=name, image=image, source=f"{name}.png", image_name=name,
                metadata=Metadata(50, "female", Site("torso", "back")), original_size=(120, 90))


@pytest.fixture
def recorded(db, tiny_weights) -> tuple[Store, list[int]]:
    store, predictor = Store.open(db.url), Predictor.from_weights(tiny_weights)
    ids = []
    for seed in range(2):
        case = _case(f"lesion{seed}", seed)
        case_id = store.add_case(case, "importer").id
        (prediction,) = predictor.predict([case.image], [case.metadata])
        store.add_prediction(case_id, prediction, [], predictor.card.identity, "importer")
        store.add_measurement(case_id, "Dr A", SCALE, [[10, 10], [60, 10]], 5.0)
        ids.append(case_id)
    store.edit_case(ids[0], "Dr A", {"lesion_id": "L1"})
    store.add_case(replace(_case("lesion1", 1), patient_id="P9"), "importer")  # the same image again fills its patient
    assert store.verify_audit().ok, store.verify_audit().problems
    return store, ids


@pytest.mark.parametrize(("statement", "finding"), [
    ("UPDATE predictions SET malignancy = 0.01 WHERE id = 1", "prediction 1 differs from its audit entry"),
    ("UPDATE cases SET image_png = (SELECT image_png FROM cases WHERE id = 2) WHERE id = 1",
     "case 1's image differs from the one imported"),
    ("DELETE FROM case_measurements", "measurement 1 named in the audit trail is missing"),
    ("UPDATE cases SET patient_id = 'P-OTHER' WHERE id = 1", "case 1's metadata differs from what its audit entries"),
    ("UPDATE cases SET age = 80 WHERE id = 2", "case 2's metadata differs"),
    ("UPDATE cases SET source = 'other.png' WHERE id = 2", "case 2 differs from its audit entry"),
    ("UPDATE case_edits SET changes = '{\"lesion_id\": \"L2\"}'", "metadata correction 1 differs from its audit entry"),
])
def test_a_fact_changed_behind_the_apps_back_is_named(db, recorded, statement, finding):
    store, _ = recorded
    tables = ("predictions", "cases", "case_measurements", "case_edits")
    tamper(db, [statement], tables)
    check = store.verify_audit()
    assert not check.ok and any(finding in p for p in check.problems), check.problems


def test_a_prediction_written_outside_the_app_is_named_and_the_app_check_leaves_out_the_pictures(db, recorded):
    store, _ = recorded
    tamper(db, ["INSERT INTO predictions (case_id, model_version, weights_sha256, created_at, predicted_class, "
                "malignancy, temperature, probabilities, flags, metadata_used, arrays) SELECT case_id, model_version, "
                "weights_sha256, created_at, predicted_class, 0.99, temperature, probabilities, flags, metadata_used, "
                "arrays FROM predictions WHERE id = 1"], ("predictions",))
    assert any("prediction 3 has no audit entry" in p for p in store.verify_audit().problems)
    tamper(db, ["DELETE FROM predictions WHERE id = 3",
                "UPDATE cases SET image_png = (SELECT image_png FROM cases WHERE id = 2) WHERE id = 1"],
           ("predictions", "cases"))
    assert store.verify_audit(pixels=False).ok and not store.verify_audit().ok


def test_guards_found_removed_are_put_back_on_the_record_and_in_the_log(tmp_path, caplog):
    import datetime as dt
    import sqlite3

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    Store.open(url).log_export("Dr A", "a list")
    assert Store.open(url).guards_recreated_since(dt.datetime(2000, 1, 1, tzinfo=dt.UTC)) == []  # nothing was missing
    raw = sqlite3.connect(tmp_path / "db.sqlite", isolation_level=None)
    raw.execute("DROP TRIGGER predictions_no_update")
    raw.close()
    with caplog.at_level("WARNING"):
        store = Store.open(url)
    assert "guards were missing and were put back" in caplog.text
    (when,) = store.guards_recreated_since(dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    assert (dt.datetime.now(dt.UTC) - when).total_seconds() < 60 and store.verify_audit().ok
    assert Store.open(url).guards_recreated_since(dt.datetime(2000, 1, 1, tzinfo=dt.UTC)) == [when]  # once


def test_an_entry_written_without_the_servers_key_is_named(db, recorded):
    """What someone with only database access could do, even as the application's own role on PostgreSQL: add a
    decision with an audit entry correctly chained to the last one. Without the server's key it carries no
    signature, and `audit verify` names it."""
    import datetime as dt

    from sqlalchemy import create_engine, insert, select

    from skinapp.store.audit import entry_hash, text_digest
    from skinapp.store.schema import audit_log, decisions

    store, (case_id, _) = recorded
    engine = create_engine(db.url)  # no Store: no key
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as connection:
        decision_id = connection.execute(insert(decisions).values(
            case_id=case_id, reviewer="Dr Never", created_at=now, decision="agree", note="")).inserted_primary_key[0]
        previous = connection.execute(select(audit_log.c.entry_hash).order_by(audit_log.c.id.desc()).limit(1)).scalar()
        details = {"decision_id": decision_id, "decision": "agree", "diagnosis": None, "prediction_id": None,
                   "note_sha256": text_digest("")}
        connection.execute(insert(audit_log).values(
            at=now, actor="Dr Never", action="decision recorded", case_id=case_id, details=details, prev_hash=previous,
            entry_hash=entry_hash(previous, now, "Dr Never", "decision recorded", case_id, details)))
    engine.dispose()
    problems = store.verify_audit().problems
    assert problems and all("is not signed with the server's key" in p for p in problems), problems
