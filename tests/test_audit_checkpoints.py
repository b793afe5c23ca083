"""The audit chain anchored outside the database (issue 30): signed checkpoints of its length and head, so that
cutting the newest entries off or recomputing the chain after a change is detected, on both backends; a checkpoint
line not signed by the server's key is named."""

import json

import pytest
from sqlalchemy import select

from conftest import tamper
from skinapp.cli.main import main
from skinapp.store import Store
from skinapp.store.audit import entry_hash
from skinapp.store.checkpoints import CheckpointLog, load_key
from skinapp.store.schema import audit_log

pytestmark = pytest.mark.slow  # a tamper suite on both backends


def _store_with_entries(url: str, count: int = 5) -> Store:
    store = Store.open(url)
    for k in range(count):
        store.log_export("Dr A", f"export {k}")
    return store


@pytest.fixture
def checkpoints(tmp_path) -> CheckpointLog:
    return CheckpointLog(tmp_path / "anchor" / "checkpoints.jsonl", load_key(tmp_path / "keys" / "audit.key"))


def test_a_whole_trail_passes_its_checkpoints_and_a_cut_tail_is_named(db, checkpoints):
    store = _store_with_entries(db.url)
    first = store.verify_audit(checkpoints)
    assert first.ok and first.checkpoints == 0 and "no signed checkpoint yet" in first.summary()
    checkpoints.append(first.entries, first.head)
    store.log_export("Dr A", "after the checkpoint")
    assert store.verify_audit(checkpoints).ok and store.verify_audit(checkpoints).checkpoints == 1

    # the newest entries deleted behind the app's back (triggers set aside): the chain alone still checks out
    tamper(db, [f"DELETE FROM audit_log WHERE id > {first.entries - 2}"], ("audit_log",))
    assert store.verify_audit().ok  # what an unanchored chain cannot see
    check = store.verify_audit(checkpoints)
    assert not check.ok and any("the newest entries were removed" in p for p in check.problems)


def test_a_chain_recomputed_after_a_change_does_not_pass_its_checkpoint(db, checkpoints):
    store = _store_with_entries(db.url)
    whole = store.verify_audit()
    checkpoints.append(whole.entries, whole.head)
    with store.engine.connect() as connection:
        rows = connection.execute(select(audit_log).order_by(audit_log.c.id)).mappings().all()
    statements, previous = [], rows[0]["prev_hash"]
    for i, row in enumerate(rows):  # the second entry's actor changed, every hash after it recomputed without a key
        actor = "Dr Forger" if i == 1 else row["actor"]
        new_hash = entry_hash(previous, row["at"], actor, row["action"], row["case_id"], row["details"])
        statements.append(f"UPDATE audit_log SET actor = '{actor}', prev_hash = '{previous}', entry_hash = '{new_hash}' "
                          f"WHERE id = {row['id']}")
        previous = new_hash
    tamper(db, statements, ("audit_log",))
    alone = store.verify_audit()  # the rewritten chain is consistent in itself, but its signatures are not the key's
    assert not any("altered" in p or "does not follow" in p for p in alone.problems)
    assert any("signature the server's key did not make" in p for p in alone.problems)
    check = store.verify_audit(checkpoints)
    assert not check.ok and any("the trail was rewritten" in p for p in check.problems)


def test_a_checkpoint_not_signed_by_the_key_is_named(tmp_path, checkpoints):
    store = _store_with_entries(f"sqlite:///{tmp_path / 'db.sqlite'}")
    check = store.verify_audit()
    checkpoints.append(check.entries, check.head)
    line = json.loads(checkpoints.path.read_text())
    line["entries"] = 2  # moved back, as if fewer entries had been anchored
    checkpoints.path.write_text(json.dumps(line) + "\n")
    assert any("not signed by this server's key" in p for p in store.verify_audit(checkpoints).problems)
    other_key = CheckpointLog(checkpoints.path, load_key(tmp_path / "another.key"))
    other_key.append(check.entries, check.head)  # signed, but by another key
    assert sum("not signed" in p for p in store.verify_audit(checkpoints).problems) == 2


def test_the_commands_write_a_checkpoint_and_verify_against_it(tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    monkeypatch.setenv("SKINAPP_AUDIT_KEY_FILE", str(tmp_path / "keys" / "audit.key"))
    monkeypatch.setenv("SKINAPP_AUDIT_CHECKPOINTS", str(tmp_path / "anchor" / "checkpoints.jsonl"))
    _store_with_entries(url).engine.dispose()
    assert main(["audit", "verify", "--database", url]) == 0
    assert main(["audit", "checkpoint", "--database", url]) == 0
    assert "checkpoint written to" in capsys.readouterr().out
    assert (tmp_path / "keys" / "audit.key").stat().st_mode & 0o077 == 0  # the key is its owner's alone
    assert main(["audit", "verify", "--database", url]) == 0 and "against 1 signed checkpoint" in capsys.readouterr().out
    import sqlite3

    raw = sqlite3.connect(tmp_path / "db.sqlite", isolation_level=None)  # the database file, edited directly
    for (trigger,) in raw.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        raw.execute(f"DROP TRIGGER {trigger}")
    raw.execute("DELETE FROM audit_log WHERE id > (SELECT max(id) - 2 FROM audit_log)")  # the two newest
    raw.close()
    assert main(["audit", "verify", "--database", url]) == 1
    assert "the newest entries were removed" in capsys.readouterr().out
    assert main(["audit", "checkpoint", "--database", url]) == 1  # a damaged trail is not signed as whole
    (tmp_path / "keys" / "audit.key").unlink()
    assert main(["audit", "verify", "--database", url]) == 1 and "the key" in capsys.readouterr().err
