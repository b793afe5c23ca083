"""Issue 27, part 3: what each lesion turned out to be. A clinical diagnosis list wider than the model's classes;
outcomes appended like decisions (a correction is a new entry), each with its audit entry, refused by the database
itself when someone tries to rewrite them; a laboratory's CSV imported all together or not at all, also when the
import is killed half-way; the outcome in the export, the reports and the reviewer's own diagnosis."""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import signal
import subprocess
import sys
import time

import pytest
import sqlalchemy

from conftest import REPO, synthetic_lesion, tamper
from skinapp.cli.main import main
from skinapp.io.case import Case
from skinapp.outcomes import (
    CODE_LENGTH,
    DIAGNOSES,
    DIAGNOSIS_BY_CODE,
    HISTOPATHOLOGY,
    NOT_EXCISED,
    OTHER,
    STABLE,
    OutcomeError,
    checked_outcome,
    diagnosis_label,
    find_diagnosis,
    find_kind,
)
from skinapp.reporting.case_report import case_report_html
from skinapp.store import InvalidText, OutcomeConflict, OutcomeEntry, Store
from skinapp.vocab import CLASSES, MALIGNANT, Metadata, Site
from skinapp.workflow.export import export_csv
from skinapp.workflow.outcomes_import import import_outcomes
from skinapp.workflow.worklist import worklist

DAY = dt.date(2025, 3, 4)


def _case(name: str, seed: int, patient: str | None = None) -> Case:
    image, _ = synthetic_lesion(seed=seed)
    return Case(name=name, image=image, source=f"{name}.png", image_name=name, patient_id=patient,
                metadata=Metadata(50, "female", Site("torso", "back")), original_size=(120, 90))


def _cases(store: Store, count: int) -> list[int]:
    return [store.add_case(_case(f"lesion{k}", k, "P1"), "importer").id for k in range(count)]


# ------------------------------------------------------------------------------------------ the clinical list


def test_the_clinical_list_maps_every_diagnosis_onto_a_model_class_and_a_malignancy():
    codes = [d.code for d in DIAGNOSES]
    assert len(codes) == len(set(codes)) == 18 and all(len(c) <= CODE_LENGTH for c in codes)
    for entry in DIAGNOSES:
        if entry.code == OTHER:
            assert entry.model_class is None and entry.malignant is None
        else:
            assert entry.model_class in CLASSES and entry.malignant == (entry.model_class in MALIGNANT)
    assert {d.model_class for d in DIAGNOSES} == {*CLASSES, None}
    assert [d.code for d in DIAGNOSES if d.breslow] == ["MEL_INV"]
    for text, code in (("MIS", "MIS"), ("melanoma in situ", "MIS"), ("Clark nevus", "DN"), ("Reed naevus", "SPITZ"),
                       ("Bowen's disease", "BOWEN"), ("Bowen’s disease", "BOWEN"), ("bcc", "BCC"),
                       ("seborrhoeic keratosis", "SK"), ("derm_nv", "DERM_NV"), ("Other", OTHER)):
        assert find_diagnosis(text) is DIAGNOSIS_BY_CODE[code], text
    assert find_diagnosis("melanomma") is None
    assert find_kind("Histology") == HISTOPATHOLOGY and find_kind("stable") == STABLE
    assert find_kind("Stable at follow-up ≥ 12 months") == STABLE and find_kind("not excised") == NOT_EXCISED
    assert diagnosis_label("MEL") == "Melanoma (MEL)" and diagnosis_label("DN") == "Dysplastic / Clark nevus (DN)"


@pytest.mark.parametrize("kind, diagnosis, breslow, day, words, message", [
    (HISTOPATHOLOGY, None, None, DAY, None, "needs its diagnosis"),
    (HISTOPATHOLOGY, "MEL_INV", None, DAY, None, "needs its Breslow thickness"),
    (HISTOPATHOLOGY, "MEL_INV", 0.0, DAY, None, "is not possible"),
    (HISTOPATHOLOGY, "MEL_INV", 250.0, DAY, None, "is not possible"),
    (NOT_EXCISED, "MEL_INV", 1.0, DAY, None, "is a histopathology result"),
    (HISTOPATHOLOGY, "DN", 0.5, DAY, None, "belongs to an invasive melanoma only"),
    (HISTOPATHOLOGY, OTHER, None, DAY, None, "needs the diagnosis in words"),
    (HISTOPATHOLOGY, "SK", None, DAY, "poroma", "with “other” only"),
    (HISTOPATHOLOGY, "SK", None, dt.date(2031, 1, 1), None, "lies in the future"),
    (HISTOPATHOLOGY, "SK", None, dt.date(1900, 1, 1), None, "lies before 1950"),
    (HISTOPATHOLOGY, "SK", None, None, None, "needs the date"),
    ("biopsy", "SK", None, DAY, None, "is not a kind of outcome"),
    (HISTOPATHOLOGY, "MEL", None, DAY, None, "not a diagnosis of the clinical list"),
])
def test_outcome_rules(kind, diagnosis, breslow, day, words, message):
    with pytest.raises(OutcomeError, match=message):
        checked_outcome(kind, diagnosis, breslow, day, words, today=dt.date(2026, 1, 1))


def test_outcome_rules_keep_what_is_right():
    assert checked_outcome(HISTOPATHOLOGY, "MEL_INV", 0.8, DAY, None) == ("MEL_INV", 0.8, None)
    assert checked_outcome(HISTOPATHOLOGY, OTHER, None, DAY, " pigmented poroma ") == (OTHER, None, "pigmented poroma")
    assert checked_outcome(STABLE, None, None, DAY, None) == (None, None, None)  # a follow-up needs no diagnosis


# ------------------------------------------------------------------------------------------ the store


def test_outcomes_are_recorded_corrected_as_new_entries_and_shown(db_url):
    store = Store.open(db_url)
    first_case, other_case = _cases(store, 2)
    assert store.outcomes(first_case) == [] and store.latest_outcome(first_case) is None

    first = store.record_outcome(OutcomeEntry(first_case, HISTOPATHOLOGY, DAY, "MEL_INV", 0.8, lab_reference=" H-25-001 ",
                                              note="re-excision advised"), "Dr Path", seen_outcome_id=None)
    assert (first.diagnosis, first.breslow_mm, first.lab_reference, first.replaces_id) == ("MEL_INV", 0.8, "H-25-001", None)
    assert (first.model_class, first.malignancy) == ("MEL", "malignant")
    assert first.label == "Histopathology result: Invasive melanoma (MEL_INV), Breslow 0.8 mm, 2025-03-04"

    with pytest.raises(OutcomeConflict) as conflict:  # the form still showed "no outcome"
        store.record_outcome(OutcomeEntry(first_case, HISTOPATHOLOGY, DAY, "MIS"), "Dr B", seen_outcome_id=None)
    assert conflict.value.current == first
    corrected = store.record_outcome(OutcomeEntry(first_case, HISTOPATHOLOGY, DAY, "MIS", lab_reference="H-25-001"),
                                     "Dr Path", seen_outcome_id=first.id)
    assert corrected.replaces_id == first.id and store.outcomes(first_case) == [first, corrected]  # both kept
    assert store.latest_outcome(first_case) == corrected
    stable = store.record_outcome(OutcomeEntry(other_case, STABLE, DAY), "Dr A")
    assert (stable.label, stable.model_class, stable.malignancy) == ("Stable at follow-up ≥ 12 months: 2025-03-04", None, "")
    for wrong, message in ((OutcomeEntry(first_case, HISTOPATHOLOGY, DAY, "MEL_INV"), "Breslow"),
                           (OutcomeEntry(first_case, HISTOPATHOLOGY, DAY, "DN", lab_reference="L" * 65), "64 are kept"),
                           (OutcomeEntry(first_case, HISTOPATHOLOGY, DAY, "DN", note="a\x00b"), "control character")):
        with pytest.raises(InvalidText, match=message):
            store.record_outcome(wrong, "Dr A")
    with pytest.raises(ValueError, match="no case 999"):
        store.record_outcome(OutcomeEntry(999, STABLE, DAY), "Dr A")
    assert len(store.outcomes(first_case)) == 2

    entries = [e for e in store.audit_entries() if e.action == "outcome recorded"]
    assert [(e.case_id, e.details["outcome_id"], e.details["replaces"], e.actor) for e in entries] == [
        (first_case, first.id, None, "Dr Path"), (first_case, corrected.id, first.id, "Dr Path"),
        (other_case, stable.id, None, "Dr A")]
    assert "H-25-001" not in str(entries) and "re-excision" not in str(entries)  # free texts only as digests
    check = store.verify_audit()
    assert check.ok and check.outcomes == 3, check.problems

    rows = {r.case.id: r for r in worklist(store)}  # the latest outcome comes with the worklist's one read
    assert rows[first_case].outcome == corrected and rows[other_case].outcome == stable
    exported = {r["case"]: r for r in csv.DictReader(io.StringIO(export_csv(list(rows.values())).decode("utf-8-sig")))}
    assert {k: v for k, v in exported["lesion0"].items() if k.startswith("outcome")} == {
        "outcome": "Histopathology result", "outcome_diagnosis": "Melanoma in situ (MIS)", "outcome_class": "MEL",
        "outcome_malignancy": "malignant", "outcome_date": "2025-03-04", "outcome_lab_reference": "H-25-001"}
    assert exported["lesion1"]["outcome"] == "Stable at follow-up ≥ 12 months" and exported["lesion1"]["outcome_class"] == ""

    report = case_report_html(store.case(first_case), store.case_image(first_case), None, [], "Dr A",
                              outcomes=store.outcomes(first_case))
    assert report.index("Melanoma in situ (MIS)") < report.index("Invasive melanoma (MEL_INV), Breslow 0.8 mm")
    assert "corrected by it" in report and "H-25-001" in report and "MEL, malignant" in report


def test_the_reviewers_diagnosis_uses_the_clinical_list_and_old_decisions_still_read(db_url):
    store = Store.open(db_url)
    (case_id,) = _cases(store, 1)
    old = store.record_decision(case_id, "Dr A", "disagree", diagnosis="MEL", seen_prediction_id=None)
    assert old.label == "Disagree: Melanoma (MEL)"  # a decision of the seven classes, as recorded before the clinical list
    new = store.record_decision(case_id, "Dr A", "disagree", diagnosis="DN", seen_decision_id=old.id,
                                seen_prediction_id=None)
    assert new.label == "Disagree: Dysplastic / Clark nevus (DN)"
    with pytest.raises(InvalidText, match="in the note"):
        store.record_decision(case_id, "Dr A", "disagree", diagnosis=OTHER, seen_decision_id=new.id, seen_prediction_id=None)
    other = store.record_decision(case_id, "Dr A", "disagree", diagnosis=OTHER, note="pigmented poroma",
                                  seen_decision_id=new.id, seen_prediction_id=None)
    with pytest.raises(ValueError, match="diagnosis"):
        store.record_decision(case_id, "Dr A", "disagree", diagnosis="LENTIGO", seen_decision_id=other.id,
                              seen_prediction_id=None)
    assert [d.diagnosis for d in store.decisions(case_id)] == ["MEL", "DN", OTHER] and store.verify_audit().ok


def test_the_database_refuses_to_rewrite_outcomes(db):
    store = Store.open(db.url)
    (case_id,) = _cases(store, 1)
    store.record_outcome(OutcomeEntry(case_id, HISTOPATHOLOGY, DAY, "DN"), "Dr A")
    sqlite = db.admin_url is None
    attempts = [
        "UPDATE outcomes SET diagnosis = 'MIS'", "UPDATE outcomes SET breslow_mm = 2.0", "DELETE FROM outcomes",
        ("INSERT OR REPLACE INTO outcomes (id, case_id, kind, diagnosis, result_date, note, entered_by, entered_at) "
         "VALUES (1, 1, 'histopathology', 'MIS', '2025-03-04', '', 'x', '2026-01-01')" if sqlite else
         "INSERT INTO outcomes (id, case_id, kind, diagnosis, result_date, note, entered_by, entered_at) "
         "VALUES (1, 1, 'histopathology', 'MIS', '2025-03-04', '', 'x', now()) ON CONFLICT (id) DO UPDATE SET diagnosis = 'MIS'"),
        "DROP TRIGGER outcomes_no_update" if sqlite else "DROP TRIGGER skinapp_outcomes_rows ON outcomes",
        "DROP TABLE outcomes",
    ]
    if not sqlite:
        attempts += ["TRUNCATE outcomes", "ALTER TABLE outcomes DISABLE TRIGGER ALL"]
    for statement in attempts:
        with pytest.raises(sqlalchemy.exc.DBAPIError), store.engine.begin() as connection:
            connection.exec_driver_sql(statement)
    (kept,) = store.outcomes(case_id)
    assert kept.diagnosis == "DN" and store.verify_audit().ok
    if not sqlite:  # the app's role may read and add outcomes, nothing else; even the owner cannot change them
        owner = Store.open(db.owner_url)
        for statement in ("TRUNCATE outcomes", "DELETE FROM outcomes", "UPDATE outcomes SET diagnosis = 'MIS'"):
            with pytest.raises(sqlalchemy.exc.DBAPIError, match="append-only"), owner.engine.begin() as connection:
                connection.exec_driver_sql(statement)


def _behind_the_apps_back(db, statements: list[str]) -> None:
    tamper(db, statements, ("outcomes",))


@pytest.mark.parametrize("tampering, finding", [
    (["UPDATE outcomes SET diagnosis = 'SK' WHERE id = 1"], "outcome 1 differs from its audit entry"),
    (["UPDATE outcomes SET result_date = '2024-01-01' WHERE id = 1"], "outcome 1 differs from its audit entry"),
    (["UPDATE outcomes SET lab_reference = 'other' WHERE id = 1"], "outcome 1 differs from its audit entry"),
    (["INSERT INTO outcomes (case_id, kind, diagnosis, result_date, note, entered_by, entered_at) "
      "VALUES (1, 'histopathology', 'BCC', '2025-01-01', '', 'x', '2026-01-01')"], "outcome 2 has no audit entry"),
])
def test_an_outcome_rewritten_behind_the_apps_back_is_found(db, tampering, finding, capsys):
    store = Store.open(db.url)
    (case_id,) = _cases(store, 1)
    store.record_outcome(OutcomeEntry(case_id, HISTOPATHOLOGY, DAY, "DN", lab_reference="H-1"), "Dr A")
    assert main(["audit", "verify", "--database", db.url]) == 0
    assert "1 outcomes checked" in capsys.readouterr().out
    _behind_the_apps_back(db, tampering)
    check = Store.open(db.url).verify_audit()
    assert not check.ok and any(finding in p for p in check.problems), check.problems


# ------------------------------------------------------------------------------------------ the CSV import


def _csv(rows: list[list[object]], header=("case", "kind", "diagnosis", "breslow_mm", "date", "lab_reference", "note"),
         delimiter: str = ",") -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode()


def test_a_laboratory_batch_with_one_bad_row_names_it_and_imports_nothing(db_url, tmp_path, capsys):
    store = Store.open(db_url)
    ids = _cases(store, 4)
    store.add_case(_case("lesion0", 99), "importer")  # a second image under the same name
    entries_before = len(store.audit_entries())
    good = [["lesion1", "histopathology", "Dysplastic nevus", "", "2025-03-04", "H-1", ""],
            ["lesion2", "", "melanoma", "1,2", "04.03.2025", "H-2", "pT2a"],
            ["lesion3", "stable", "", "", "2025-02-01", "", "unchanged at 14 months"],
            ["", "", "", "", "", "", ""],  # a blank line a spreadsheet leaves is no row
            ["lesion1", "", "other: pigmented poroma", "", "2025-03-05", "H-1b", "revised"]]
    bad = [["lesion9", "", "DN", "", "2025-03-04", "", ""],
           ["lesion1", "", "melanomma", "", "2025-03-04", "", ""],
           ["lesion1", "", "SK", "", "2025-13-01", "", ""],
           ["lesion1", "", "MEL_INV", "", "2025-03-04", "", ""],
           ["lesion1", "", "Clark nevus", "0.4", "2025-03-04", "", ""],
           ["lesion1", "", "MEL_INV", "250", "2025-03-04", "", ""],
           ["lesion1", "", "SK", "", "2999-01-01", "", ""],
           ["lesion1", "", "SK", "", "2025-03-04", "R" * 65, ""],
           ["lesion1", "", "SK", "", "2025-03-04", "", "n" * 4001],
           ["lesion0", "", "SK", "", "2025-03-04", "", ""],
           ["lesion1", "biopsy", "SK", "", "", "", ""]]
    result = import_outcomes(store, _csv(good + bad), "Dr Lab")
    assert not result.ok and result.imported == []
    reasons = {r.row: r.reason for r in result.refused}
    assert sorted(reasons) == list(range(7, 7 + len(bad)))  # the header is row 1, the good rows 2–6
    assert reasons[7] == "unknown case 'lesion9'"
    assert reasons[8] == "unknown diagnosis 'melanomma'"
    assert "the date '2025-13-01' is not a date" in reasons[9]
    assert reasons[10] == "an invasive melanoma needs its Breslow thickness in mm"
    assert reasons[11] == "a Breslow thickness belongs to an invasive melanoma only, not to Dysplastic / Clark nevus (DN)"
    assert "250 mm is not possible" in reasons[12]
    assert reasons[13] == "the date 2999-01-01 lies in the future"
    assert reasons[14] == "the lab reference is 65 characters long; at most 64 are kept"
    assert reasons[15] == "the note is 4,001 characters long; at most 4,000 are kept"
    assert reasons[16] == "the case name 'lesion0' names 2 images: give the case_id instead"
    assert reasons[17].startswith("unknown kind of outcome 'biopsy'") and reasons[17].endswith("the date is missing")
    assert all(store.outcomes(c) == [] for c in ids) and len(store.audit_entries()) == entries_before  # nothing at all

    path = tmp_path / "batch.csv"
    path.write_bytes(_csv(good + bad[:1]))
    assert main(["outcomes", "import", str(path), "--user", "Dr Lab", "--database", db_url]) == 1
    out = capsys.readouterr().out
    assert "refused 1 row(s)" in out and "nothing was imported" in out and "row 7: unknown case 'lesion9'" in out
    assert all(store.outcomes(c) == [] for c in ids)

    path.write_bytes(_csv(good, delimiter=";"))  # as a European spreadsheet saves it
    assert main(["outcomes", "import", str(path), "--user", "Dr Lab", "--database", db_url]) == 0
    out = capsys.readouterr().out
    assert "imported 4 outcome(s)" in out and "row 3: lesion2: Histopathology result: Invasive melanoma (MEL_INV), " \
        "Breslow 1.2 mm, 2025-03-04" in out
    first, revised = store.outcomes(ids[1])
    assert (first.diagnosis, revised.diagnosis, revised.diagnosis_text, revised.replaces_id) == ("DN", OTHER,
                                                                                                  "pigmented poroma", first.id)
    assert revised.label == "Histopathology result: Other: pigmented poroma, 2025-03-05"
    assert [o.entered_by for o in store.outcomes(ids[2])] == ["Dr Lab"] and store.outcomes(ids[3])[0].kind == STABLE
    assert store.verify_audit().ok and store.verify_audit().outcomes == 4

    assert main(["outcomes", "import", str(path), "--user", "Dr Lab", "--database", db_url]) == 0  # the same file again
    out = capsys.readouterr().out
    assert "imported 0 outcome(s)" in out and out.count("already recorded") == 4  # nothing twice, no correction undone
    by_id = {case_id: row for case_id, row in ((r.case.id, r) for r in worklist(store))}
    assert by_id[ids[1]].outcome.label == "Histopathology result: Other: pigmented poroma, 2025-03-05"


def test_a_file_without_what_it_needs_is_refused_as_a_whole(db_url):
    store = Store.open(db_url)
    _cases(store, 1)
    for data, reason in ((_csv([["lesion0", "DN"]], header=("case", "diagnosis")), "no date column"),
                         (_csv([["lesion0", "DN", "2025-01-01", "x"]], header=("case", "diagnosis", "date", "patient")),
                          "unknown column 'patient'"),
                         (_csv([["DN", "2025-01-01"]], header=("diagnosis", "date")), "no column names the case"),
                         (_csv([], header=("case", "date")), "no outcome rows"),
                         (b"", "the file is empty"),
                         ("case,diagnosis,date\nlésion,DN,2025-01-01\n".encode("latin-1"), "not UTF-8")):
        result = import_outcomes(store, data, "Dr Lab")
        (refused,) = result.refused
        assert refused.row == 1 and reason in refused.reason, refused
    case_id = store.cases_named(["lesion0"])["lesion0"][0]
    result = import_outcomes(store, _csv([[case_id, "lesion0", "DN", "2025-01-01"], [case_id, "lesion1", "DN", "2025-01-01"],
                                          ["x", "", "DN", "2025-01-01"], [77, "", "DN", "2025-01-01"]],
                                         header=("case_id", "case", "diagnosis", "date")), "Dr Lab")
    assert [(r.row, r.reason) for r in result.refused] == [
        (3, f"case id {case_id} is the case 'lesion0', not 'lesion1'"), (4, "the case id 'x' is not a number"),
        (5, "unknown case id 77")]


_KILLED_IMPORT = """
import sys, time
from pathlib import Path
from skinapp.cli.main import main
from skinapp.store.store import Store

marker, halfway = Path(sys.argv[1]), int(sys.argv[2])
append_audit, written = Store.append_audit, []

def append_and_stall(self, connection, actor, action, case_id, **details):
    append_audit(self, connection, actor, action, case_id, **details)
    written.append(action)
    if written.count("outcome recorded") == halfway:  # half the rows are in the open transaction: stop here
        marker.write_text("half-way")
        time.sleep(600)

Store.append_audit = append_and_stall
sys.exit(main(["outcomes", "import", *sys.argv[3:]]))
"""


@pytest.mark.slow  # a couple of seconds or more: the full run has it
def test_an_import_killed_half_way_leaves_the_store_and_its_audit_trail_whole(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'skinapp.db'}"
    store = Store.open(url)
    ids = _cases(store, 5)
    store.record_outcome(OutcomeEntry(ids[0], STABLE, dt.date(2024, 1, 1)), "Dr A")  # one outcome from before
    before = store.verify_audit()
    rows = [[f"lesion{k % 5}", "", "SK" if k % 2 else "DN", "", "2025-03-04", f"H-{k}", ""] for k in range(40)]
    path, marker = tmp_path / "batch.csv", tmp_path / "half-way"
    path.write_bytes(_csv(rows))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-c", _KILLED_IMPORT, str(marker), "20", str(path), "--user", "Dr Lab",
                                "--database", url], cwd=tmp_path, env=env)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists() and process.poll() is None, "the import did not reach half-way"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL

    store = Store.open(url)
    assert [len(store.outcomes(c)) for c in ids] == [1, 0, 0, 0, 0]  # none of the 20 written rows stayed
    after = store.verify_audit()
    assert after.ok and (after.entries, after.head, after.outcomes) == (before.entries, before.head, 1), after.problems
    assert main(["audit", "verify", "--database", url]) == 0
    assert main(["outcomes", "import", str(path), "--user", "Dr Lab", "--database", url]) == 0  # and again, whole
    assert "imported 40 outcome(s)" in capsys.readouterr().out
    assert [len(store.outcomes(c)) for c in ids] == [9, 8, 8, 8, 8] and store.verify_audit().ok


def test_the_outcomes_command_names_a_folder_given_as_the_file_without_a_traceback(tmp_path, capsys):
    from skinapp.cli.main import main

    assert main(["outcomes", "import", str(tmp_path), "--user", "drlab",
                 "--database", f"sqlite:///{tmp_path / 'cases.db'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err
