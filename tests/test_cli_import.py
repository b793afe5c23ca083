"""`python -m skinapp import` (issue 30): analyse and store as the Import page does, in an account's name, for
automation; `users add --password-file` for scripted set-up."""

from PIL import Image

from conftest import synthetic_lesion
from skinapp.cli.main import main
from skinapp.store import Store
from skinapp.store.accounts import Accounts
from skinapp.workflow.worklist import worklist


def test_a_folder_is_imported_analysed_and_audited_in_the_accounts_name(tmp_path, tiny_weights, capsys):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    (tmp_path / "password.txt").write_text("a long scripted password\n")
    assert main(["users", "add", "drx", "--name", "Dr X", "--database", url,
                 "--password-file", str(tmp_path / "password.txt")]) == 0
    assert Accounts(Store.open(url)).sign_in("drx", "a long scripted password") is not None
    folder = tmp_path / "visit"
    folder.mkdir()
    for seed in range(2):
        Image.fromarray(synthetic_lesion(seed=seed)[0]).save(folder / f"lesion{seed}.png")
    (folder / "notes.txt").write_text("not an image")
    capsys.readouterr()
    assert main(["import", str(folder), "--user", "DRX", "--database", url, "--weights", str(tiny_weights)]) == 0
    out = capsys.readouterr().out
    assert "2 case(s) in the worklist from this import (2 new, 2 analysed); 1 file(s) not imported." in out
    assert "imported as Dr X (drx)" in out and "notes.txt: not an image or DICOM file" in out
    store = Store.open(url)
    rows = worklist(store)
    assert sorted(r.case.name for r in rows) == ["lesion0", "lesion1"] and all(r.prediction is not None for r in rows)
    actors = {(e.actor, e.action) for e in store.audit_entries()}
    assert ("Dr X (drx)", "case imported") in actors and ("Dr X (drx)", "prediction stored") in actors
    assert store.verify_audit().ok
    # the same folder again: already stored, nothing new
    assert main(["import", str(folder), "--user", "drx", "--database", url, "--weights", str(tiny_weights)]) == 0
    assert "(0 new, " in capsys.readouterr().out and len(worklist(store)) == 2


def test_an_unknown_or_disabled_account_and_nothing_readable_are_refused(tmp_path, tiny_weights, capsys):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    accounts = Accounts(Store.open(url))
    accounts.add("dry", "Dr Y", "a long test password", "reviewer", actor="set-up")
    (tmp_path / "bad.png").write_bytes(b"nope")
    assert main(["import", str(tmp_path / "bad.png"), "--user", "nobody", "--database", url]) == 2
    assert "no enabled account named 'nobody'" in capsys.readouterr().err
    assert main(["import", str(tmp_path / "bad.png"), "--user", "dry", "--database", url,
                 "--weights", str(tiny_weights)]) == 1
    assert "Nothing was imported" in capsys.readouterr().out
    accounts.set_disabled("dry", True, actor="set-up")
    assert main(["import", str(tmp_path / "bad.png"), "--user", "dry", "--database", url]) == 2
