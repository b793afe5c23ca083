"""A laboratory's batch of outcomes as a CSV file, imported all together or not at all.

Columns (any order, any case; `;` or tab instead of `,` also do): `case` (the case id the clinician sees) or
`case_id` (the store's number), `kind` (histopathology when empty; "stable" at follow-up ≥ 12 months, "not excised"),
`diagnosis` (a code or a name of `skinapp.outcomes.DIAGNOSES`; "other: <name>" or the `diagnosis_text` column for
anything else), `breslow_mm`, `date` (YYYY-MM-DD or DD.MM.YYYY), `lab_reference`, `note`. Every row is checked
first, each refused row named with its number as a spreadsheet shows it (the header is row 1) and why; a file with
any refused row imports nothing. Then all rows are written with their audit entries in one transaction. A row that
says what an outcome of its case already says is not recorded again, so a batch imported twice adds nothing (and
never undoes a correction made since)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from skinapp.outcomes import (
    HISTOPATHOLOGY,
    OTHER,
    OUTCOME_KINDS,
    OutcomeError,
    find_diagnosis,
    find_kind,
    parse_breslow,
    parse_result_date,
)
from skinapp.store import InvalidText, Outcome, OutcomeEntry, Store
from skinapp.store.edits import checked_outcome_entry

MAX_ROWS = 100_000
_COLUMNS = {  # a column's accepted names (lower case, spaces for underscores) → its field
    "case": "case", "case name": "case", "image": "case", "image name": "case",
    "case id": "case_id",
    "kind": "kind", "outcome": "kind", "outcome kind": "kind",
    "diagnosis": "diagnosis", "histopathology": "diagnosis", "histology": "diagnosis",
    "diagnosis text": "diagnosis_text", "diagnosis in words": "diagnosis_text", "other diagnosis": "diagnosis_text",
    "breslow mm": "breslow_mm", "breslow": "breslow_mm", "breslow thickness": "breslow_mm",
    "date": "date", "result date": "date", "date of result": "date",
    "lab reference": "lab_reference", "laboratory reference": "lab_reference", "lab ref": "lab_reference",
    "reference": "lab_reference",
    "note": "note", "comment": "note",
}


@dataclass(frozen=True)
class RefusedRow:
    row: int        # as a spreadsheet numbers it: the header is row 1, the first outcome row 2
    reason: str


@dataclass(frozen=True)
class ImportedRow:
    row: int
    case_name: str
    outcome: Outcome


@dataclass(frozen=True)
class OutcomeImport:
    imported: list[ImportedRow] = field(default_factory=list)
    unchanged: list[tuple[int, str]] = field(default_factory=list)   # (row, case name): already recorded
    refused: list[RefusedRow] = field(default_factory=list)          # any: nothing was imported

    @property
    def ok(self) -> bool:
        return not self.refused


@dataclass(frozen=True)
class _Row:
    row: int
    case_name: str
    entry: OutcomeEntry


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise OutcomeError("the file is not UTF-8 text: save it as “CSV UTF-8”") from None


def _dialect(text: str) -> str:
    header = text.split("\n", 1)[0]
    return max((",", ";", "\t"), key=header.count)


def _header(names: list[str]) -> tuple[dict[str, int], list[str]]:
    """Field → column index, and what is wrong with the header."""
    columns: dict[str, int] = {}
    problems = []
    for index, name in enumerate(names):
        key = " ".join(name.strip().lower().replace("_", " ").split())
        if not key:
            continue
        wanted = _COLUMNS.get(key)
        if wanted is None:
            problems.append(f"unknown column {name.strip()!r}")
        elif wanted in columns:
            problems.append(f"two columns give the {wanted.replace('_', ' ')}")
        else:
            columns[wanted] = index
    if "case" not in columns and "case_id" not in columns:
        problems.append("no column names the case (case or case_id)")
    if "date" not in columns:
        problems.append("no date column")
    return columns, problems


class _Cases:
    """The cases a file names, read once for the whole file."""

    def __init__(self, store: Store, names: set[str], ids: set[int]):
        self.by_name = store.cases_named(names)
        self.by_id = store.existing_cases(ids)

    def resolve(self, name: str, case_id: str) -> tuple[int, str]:
        number: int | None = None
        if case_id:
            try:
                number = int(case_id)
            except ValueError:
                raise OutcomeError(f"the case id {case_id!r} is not a number") from None
            if number not in self.by_id:
                raise OutcomeError(f"unknown case id {number}")
        if name:
            found = self.by_name.get(name, [])
            if number is not None:
                if self.by_id[number] != name:
                    raise OutcomeError(f"case id {number} is the case {self.by_id[number]!r}, not {name!r}")
                return number, name
            if not found:
                raise OutcomeError(f"unknown case {name!r}")
            if len(found) > 1:
                raise OutcomeError(f"the case name {name!r} names {len(found)} images: give the case_id instead")
            return found[0], name
        if number is None:
            raise OutcomeError("the case is missing")
        return number, self.by_id[number]


def _cells(record: list[str], columns: dict[str, int]) -> dict[str, str]:
    return {f: (record[i].strip() if i < len(record) else "") for f, i in columns.items()}


def _entry(cells: dict[str, str], cases: _Cases) -> tuple[str, OutcomeEntry]:
    """One row as an outcome to record, or OutcomeError naming everything wrong with it."""
    problems: list[str] = []

    def attempt(parse, *args):
        try:
            return parse(*args)
        except OutcomeError as exc:
            problems.append(str(exc))
            return None

    resolved = attempt(cases.resolve, cells.get("case", ""), cells.get("case_id", ""))
    kind_text = cells.get("kind", "")
    kind = find_kind(kind_text) if kind_text else HISTOPATHOLOGY
    if kind is None:
        problems.append(f"unknown kind of outcome {kind_text!r} (one of: {', '.join(OUTCOME_KINDS.values())})")
    diagnosis_cell, words = cells.get("diagnosis", ""), cells.get("diagnosis_text", "") or None
    diagnosis = None
    if diagnosis_cell:
        named, _, rest = diagnosis_cell.partition(":")
        found = find_diagnosis(diagnosis_cell) or (find_diagnosis(named) if rest.strip() else None)
        if found is None:
            problems.append(f"unknown diagnosis {diagnosis_cell!r}")
        else:
            diagnosis = found.code
            if found.code == OTHER and rest.strip():
                if words:
                    problems.append("the diagnosis in words is given twice (after “other:” and in its own column)")
                words = rest.strip()
            elif rest.strip() and find_diagnosis(diagnosis_cell) is None:
                problems.append(f"only “other” takes a name after a colon, not {diagnosis_cell!r}")
    breslow = attempt(parse_breslow, cells.get("breslow_mm", ""))
    date_text = cells.get("date", "")
    result_date = attempt(parse_result_date, date_text) if date_text else None
    if not date_text:
        problems.append("the date is missing")
    if problems:
        raise OutcomeError("; ".join(problems))
    case_id, case_name = resolved
    assert kind is not None and result_date is not None
    return case_name, OutcomeEntry(case_id, kind, result_date, diagnosis, breslow, words,
                                   cells.get("lab_reference") or None, cells.get("note", ""))


def read_outcomes(store: Store, data: bytes) -> tuple[list[_Row], list[RefusedRow]]:
    """Every row checked, nothing written: the outcomes to record, and the rows refused with why."""
    try:
        text = _text(data)
    except OutcomeError as exc:
        return [], [RefusedRow(1, str(exc))]
    records = list(csv.reader(io.StringIO(text, newline=""), delimiter=_dialect(text)))
    if not records:
        return [], [RefusedRow(1, "the file is empty")]
    columns, problems = _header(records[0])
    if problems:
        return [], [RefusedRow(1, "; ".join(problems))]
    rows = [(number, _cells(r, columns)) for number, r in enumerate(records[1:], start=2) if any(c.strip() for c in r)]
    if not rows:
        return [], [RefusedRow(1, "the file has no outcome rows")]
    if len(rows) > MAX_ROWS:
        return [], [RefusedRow(1, f"the file has {len(rows):,} rows; at most {MAX_ROWS:,} are imported at once")]
    ids = set()
    for _, cells in rows:
        if cells.get("case_id", "").isdigit():
            ids.add(int(cells["case_id"]))
    cases = _Cases(store, {c["case"] for _, c in rows if c.get("case")}, ids)
    kept: list[_Row] = []
    refused: list[RefusedRow] = []
    for number, cells in rows:
        try:
            name, entry = _entry(cells, cases)
            kept.append(_Row(number, name, checked_outcome_entry(entry)))
        except (OutcomeError, InvalidText) as exc:
            refused.append(RefusedRow(number, str(exc)))
    return kept, refused


def import_outcomes(store: Store, data: bytes, entered_by: str) -> OutcomeImport:
    """Check every row, then record all of them (with their audit entries, in one transaction) or none."""
    rows, refused = read_outcomes(store, data)
    if refused:
        return OutcomeImport(refused=refused)
    known: dict[int, list[Outcome | OutcomeEntry]] = {
        case_id: list(history) for case_id, history in store.outcomes_of({r.entry.case_id for r in rows}).items()}
    new, unchanged = [], []
    for row in rows:
        earlier = known.setdefault(row.entry.case_id, [])
        if any(row.entry.same_as(outcome) for outcome in earlier):
            unchanged.append((row.row, row.case_name))
            continue
        new.append(row)
        earlier.append(row.entry)
    recorded = store.record_outcomes([r.entry for r in new], entered_by, via="CSV import") if new else []
    return OutcomeImport([ImportedRow(r.row, r.case_name, o) for r, o in zip(new, recorded, strict=True)], unchanged)


def import_outcomes_file(store: Store, path: Path, entered_by: str) -> OutcomeImport:
    return import_outcomes(store, Path(path).read_bytes(), entered_by)
