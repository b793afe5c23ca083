"""Limits on every text the store keeps, checked before the database sees it, so that SQLite and PostgreSQL
accept and refuse exactly the same things and the message says which value broke which rule."""

from __future__ import annotations

import unicodedata

LIMITS = {  # characters
    "case name": 255, "file": 1024, "patient id": 128, "lesion id": 128, "study date": 10, "sex": 8, "site": 32,
    "reviewer": 128, "note": 4000, "file note": 1000, "acquisition detail": 256, "user name": 64, "display name": 60,
    "password": 1024, "lab reference": 64, "diagnosis in words": 255, "clinic name": 120, "address": 500,
    "contact": 200, "addressee": 500, "clinical question": 1000, "site profile name": 60, "site profile source": 500,
}
MAX_FILE_NOTES = 50
_ALLOWED_IN_MULTILINE = {"\n", "\t"}
_DIRECTION_OVERRIDES = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}  # can make a name read backwards


class InvalidText(ValueError):
    """A text the store will not keep; the message names the field and the rule."""


def checked(field: str, value: str | None, *, multiline: bool = False) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidText(f"the {field} is not text")
    limit = LIMITS[field]
    if len(value) > limit:
        raise InvalidText(f"the {field} is {len(value):,} characters long; at most {limit:,} are kept")
    for character in value:
        if unicodedata.category(character) in ("Cc", "Cs") and not (multiline and character in _ALLOWED_IN_MULTILINE):
            kind = "an unreadable (non-UTF-8) byte" if unicodedata.category(character) == "Cs" else "a control character"
            raise InvalidText(f"the {field} holds {kind} (U+{ord(character):04X})")
        if character in _DIRECTION_OVERRIDES:
            raise InvalidText(f"the {field} holds a text-direction override (U+{ord(character):04X})")
    return value


def checked_notes(notes: list[str]) -> list[str]:
    if len(notes) > MAX_FILE_NOTES:
        raise InvalidText(f"the file carries {len(notes)} notes; at most {MAX_FILE_NOTES} are kept")
    return [checked("file note", n, multiline=True) or "" for n in notes]
