"""Every stored fact against the digest its audit entry keeps (`digests.py`): cases (their content, their pictures
and their metadata as last filled in), predictions, measurements, metadata corrections and site profiles. A row that differs, a
row the trail names that is gone, and a row written after digests began that no entry names are all reported.
Rows from before this version (their entries keep no digest) are left as they are."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from sqlalchemy import Table, select
from sqlalchemy.engine import Connection

from skinapp.store.digests import (
    PIXEL_COLUMNS,
    case_content_digest,
    case_metadata_digest,
    case_pixels_digest,
    row_digest,
)
from skinapp.store.schema import case_edits, case_measurements, cases, predictions, site_profiles

_BATCH = 200  # rows read at a time: the pictures of a large clinic do not fit in memory at once


def _rows(connection: Connection, table: Table, columns: Iterable | None = None) -> Iterable[Mapping]:
    query = select(*(columns or table.c)).order_by(table.c.id).execution_options(yield_per=_BATCH)
    yield from connection.execute(query).mappings()


def _check(what: str, rows: Iterable[Mapping], recorded: Mapping[int, str], digest: Callable[[Mapping], str]) -> list[str]:
    problems, seen = [], set()
    first = min(recorded, default=None)
    for row in rows:
        seen.add(row["id"])
        expected = recorded.get(row["id"])
        if expected is None:
            if first is not None and row["id"] > first:
                problems.append(f"{what} {row['id']} has no audit entry: it was written outside the application")
        elif digest(row) != expected:
            problems.append(f"{what} {row['id']} differs from its audit entry: it was altered")
    problems += [f"{what} {i} named in the audit trail is missing" for i in sorted(set(recorded) - seen)]
    return problems


def record_problems(connection: Connection, entries: Iterable[Mapping], pixels: bool = True) -> list[str]:
    """entries: the audit log in order. pixels: also read and check every case's pictures (the longest part)."""
    content: dict[int, str] = {}
    picture: dict[int, str] = {}
    metadata: dict[int, str] = {}
    prediction: dict[int, str] = {}
    measurement: dict[int, str] = {}
    edit: dict[int, str] = {}
    profile: dict[int, str] = {}
    for entry in entries:
        details, case_id = entry["details"] or {}, entry["case_id"]
        action = entry["action"]
        if action == "case imported" and "content_sha256" in details:
            content[case_id], picture[case_id] = details["content_sha256"], details["pixels_sha256"]
            metadata[case_id] = details["metadata_sha256"]
        elif action == "case metadata filled" and "metadata_sha256" in details and case_id in metadata:
            metadata[case_id] = details["metadata_sha256"]
        elif action == "prediction stored" and "content_sha256" in details:
            prediction[int(details["prediction_id"])] = details["content_sha256"]
        elif action.endswith(" measured") and "content_sha256" in details:
            measurement[int(details["measurement_id"])] = details["content_sha256"]
        elif action == "case metadata corrected" and "content_sha256" in details:
            edit[int(details["edit_id"])] = details["content_sha256"]
        elif action == "site profile made" and "content_sha256" in details:
            profile[int(details["site_profile_id"])] = details["content_sha256"]
    without_pixels = [c for c in cases.c if c.name not in PIXEL_COLUMNS]
    problems = _check("case", _rows(connection, cases, without_pixels), content, case_content_digest)
    problems += [p.replace(" differs from its audit entry", "'s metadata differs from what its audit entries recorded")
                 for p in _check("case", _rows(connection, cases, without_pixels), metadata, case_metadata_digest)
                 if "differs" in p]
    if pixels:
        problems += [p.replace(" differs from its audit entry", "'s image differs from the one imported")
                     for p in _check("case", _rows(connection, cases, [cases.c.id, *(cases.c[c] for c in PIXEL_COLUMNS)]),
                                     picture, case_pixels_digest) if "differs" in p]
    problems += _check("prediction", _rows(connection, predictions), prediction, row_digest)
    problems += _check("measurement", _rows(connection, case_measurements), measurement, row_digest)
    problems += _check("metadata correction", _rows(connection, case_edits), edit, row_digest)
    problems += _check("site profile", _rows(connection, site_profiles), profile, row_digest)
    return problems
