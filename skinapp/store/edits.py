"""A reviewer's corrections of a case's metadata, measurements on its image and outcomes, checked before they are
kept: the message names the field and the rule, as for every text the store keeps."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

from skinapp.io.capture_date import EARLIEST_YEAR, calendar_date
from skinapp.outcomes import OutcomeError, checked_outcome
from skinapp.store.limits import InvalidText, checked
from skinapp.store.records import DIAMETER, MODEL_FIELDS, SCALE, OutcomeEntry
from skinapp.store.schema import EDITABLE_CASE_COLUMNS
from skinapp.vocab import FINE_SITES, REGION_OF_SITE, REGIONS, SEXES

MIN_MEASURED_PIXELS = 5.0   # two clicks closer than this are a slip, not a length
MAX_RULER_MM = 100.0


def checked_case_changes(changes: dict[str, object]) -> dict[str, object]:
    """The corrections as the store keeps them: ids stripped (empty means unknown), age in years 0–120, sex and
    site from the vocabulary, a fine site only with its own region."""
    unknown = set(changes) - set(EDITABLE_CASE_COLUMNS)
    if unknown:
        raise InvalidText(f"{', '.join(sorted(unknown))} cannot be corrected in the app")
    kept: dict[str, object] = {}
    for column in ("patient_id", "lesion_id"):
        if column in changes:
            value = changes[column]
            text = checked(column.replace("_", " "), None if value is None else str(value))
            kept[column] = (text or "").strip() or None
    if "age" in changes:
        age = changes["age"]
        if age is not None:
            try:
                age = float(age)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise InvalidText(f"the age {age!r} is not a number of years") from None
            if math.isnan(age) or not 0 <= age <= 120:
                raise InvalidText(f"the age {age:g} is not between 0 and 120 years")
        kept["age"] = age
    if "sex" in changes:
        if changes["sex"] is not None and changes["sex"] not in SEXES:
            raise InvalidText(f"the sex must be one of {', '.join(SEXES)} or unknown")
        kept["sex"] = changes["sex"]
    if "site_region" in changes or "site_fine" in changes:
        region, fine = changes.get("site_region"), changes.get("site_fine")
        if region is not None and region not in REGIONS:
            raise InvalidText(f"{region!r} is not an anatomic region the model knows")
        if fine is not None and (fine not in FINE_SITES or REGION_OF_SITE[str(fine)] != region):
            raise InvalidText(f"the site {fine!r} does not lie in the region {region or 'unknown'}")
        kept["site_region"], kept["site_fine"] = region, fine
    if "study_date" in changes:
        kept["study_date"] = _checked_taken_on(changes["study_date"])
    return kept


def _checked_taken_on(value: object) -> str | None:
    """The day the picture was taken: a date (or ISO text) between 1900 and today; None: unknown."""
    if value is None or value == "":
        return None
    text = value.isoformat() if isinstance(value, dt.date) else str(value).strip()
    parts = text[:10].split("-")
    date = calendar_date(parts[0], parts[1], parts[2]) if len(parts) == 3 and all(p.isdigit() for p in parts) else None
    if date is None:
        raise InvalidText(f"the date the picture was taken, {text[:20]!r}, is not a date between "
                          f"{EARLIEST_YEAR} and today (YYYY-MM-DD)")
    return date


def changes_model_input(changes: dict[str, object]) -> bool:
    return any(column in MODEL_FIELDS for column in changes)


def checked_points(points: object, image_size: tuple[int, int]) -> list[list[float]]:
    """Two points (x, y) inside the stored image (width, height), far enough apart to be a length."""
    try:
        (x0, y0), (x1, y1) = [(float(x), float(y)) for x, y in points]  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise InvalidText("a measurement needs exactly two points") from None
    width, height = image_size
    if not all(0 <= x <= width and 0 <= y <= height for x, y in ((x0, y0), (x1, y1))):
        raise InvalidText("a measured point lies outside the image")
    if math.hypot(x1 - x0, y1 - y0) < MIN_MEASURED_PIXELS:
        raise InvalidText("the two points are too close together to measure; click the two ends of the length")
    return [[x0, y0], [x1, y1]]


def checked_ruler_length(kind: str, length_mm: float | None) -> float | None:
    if kind == DIAMETER:
        return None
    if kind != SCALE:
        raise ValueError(f"unknown measurement kind {kind!r}")
    if length_mm is None or not 0 < float(length_mm) <= MAX_RULER_MM:
        raise InvalidText(f"the distance on the ruler must be between 0 and {MAX_RULER_MM:g} mm")
    return float(length_mm)


def checked_outcome_entry(entry: OutcomeEntry, today: dt.date | None = None) -> OutcomeEntry:
    """An outcome as the store keeps it: the rules of `skinapp.outcomes.checked_outcome` and the text limits; texts
    stripped, an empty laboratory reference kept as none."""
    try:
        diagnosis, breslow_mm, text = checked_outcome(entry.kind, entry.diagnosis, entry.breslow_mm, entry.result_date,
                                                      entry.diagnosis_text, today)
    except OutcomeError as exc:
        raise InvalidText(str(exc)) from None
    reference = (checked("lab reference", entry.lab_reference) or "").strip() or None
    note = checked("note", entry.note or "", multiline=True) or ""
    return dataclasses.replace(entry, diagnosis=diagnosis, breslow_mm=breslow_mm, lab_reference=reference, note=note,
                               diagnosis_text=checked("diagnosis in words", text))
