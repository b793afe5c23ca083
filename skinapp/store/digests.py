"""What the audit trail keeps of each stored fact: a SHA-256 over the row as the database gives it back, so that
`audit verify` can recompute it and name a case, image, prediction, measurement or metadata value changed behind
the application's back. Pure functions over rows; the store writes the digests into the audit entries it appends
anyway (`Store.append_audit`), and `record_check.py` compares them with the rows."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping

from skinapp.store.audit import canonical_time
from skinapp.store.schema import FILLABLE_CASE_COLUMNS

PIXEL_COLUMNS = ("image_png", "thumbnail_jpeg", "zoom_jpeg")  # the case's pictures: checked apart, they are large
_LEFT_OUT = {"id"}
# Columns added after digests were first written: digested where they hold a value, so the digests of the rows
# stored before them still match.
_ADDED_LATER = frozenset({"sop_instance_uid"})


def _plain(value: object) -> object:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "sha256:" + hashlib.sha256(bytes(value)).hexdigest()
    if isinstance(value, dt.datetime):
        return canonical_time(value)
    if isinstance(value, float):
        return repr(value)
    return value


def digest(row: Mapping, columns: Iterable[str]) -> str:
    body = json.dumps({c: _plain(row[c]) for c in sorted(columns) if not (c in _ADDED_LATER and row[c] is None)},
                      sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, default=str)
    return hashlib.sha256(body.encode()).hexdigest()


def row_digest(row: Mapping) -> str:
    """Every column of a prediction, measurement or correction row but its id."""
    return digest(row, [c for c in row if c not in _LEFT_OUT])


def case_content_digest(row: Mapping) -> str:
    """A case's columns that never change (all but its id, its pictures and the metadata that may be filled in)."""
    return digest(row, [c for c in row
                        if c not in _LEFT_OUT and c not in PIXEL_COLUMNS and c not in FILLABLE_CASE_COLUMNS])


def case_metadata_digest(row: Mapping) -> str:
    """The metadata columns a later import may fill in: digested again at every fill."""
    return digest(row, FILLABLE_CASE_COLUMNS)


def case_pixels_digest(row: Mapping) -> str:
    return digest(row, PIXEL_COLUMNS)
