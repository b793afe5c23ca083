"""The same lesion over time: images grouped by patient and lesion id (or, without a lesion id, by patient and
anatomic site), in date order, and the change between two of them in area, diameter and malignancy.

Sizes are compared in millimetres only: two photographs are rarely taken at the same magnification, so a
change in pixels says nothing about the lesion. Pure functions over stored records.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from skinapp.inference.measurements import LesionMeasurements
from skinapp.reporting.text import percent_text
from skinapp.store import CaseRecord, StoredCase
from skinapp.store.records import DIAMETER, Measurement


@dataclass(frozen=True, order=True)
class LesionKey:
    patient_id: str
    lesion: str
    by_site: bool = False   # grouped by anatomic site because the files give no lesion id: may mix lesions

    @property
    def label(self) -> str:
        who = f"patient {self.patient_id}, " if self.patient_id else ""
        if self.by_site:
            return f"{who}lesions on the {self.lesion} (grouped by site: there is no lesion id)"
        return f"{who}lesion {self.lesion}"


def lesion_key(case: StoredCase) -> LesionKey | None:
    if case.lesion_id:
        return LesionKey(case.patient_id or "", case.lesion_id)
    site = case.metadata.site
    if case.patient_id and site.region is not None:
        return LesionKey(case.patient_id, site.label, by_site=True)
    return None


class OfACase(Protocol):
    """A stored record or a worklist row: anything that carries its case."""

    @property
    def case(self) -> StoredCase: ...


def taken_order(record: OfACase) -> tuple[str, int]:
    """Sort key: the day the picture was taken, else (unknown) its import date."""
    return record.case.study_date or f"{record.case.imported_at:%Y-%m-%d}", record.case.id


def lesion_series(records: Iterable[CaseRecord]) -> dict[LesionKey, list[CaseRecord]]:
    """Every lesion with two or more images, each series in the order the pictures were taken (an image whose date
    is unknown by its import date)."""
    groups: dict[LesionKey, list[CaseRecord]] = {}
    for record in records:
        key = lesion_key(record.case)
        if key is not None:
            groups.setdefault(key, []).append(record)
    return {key: sorted(group, key=taken_order) for key, group in sorted(groups.items()) if len(group) > 1}


def case_date(record: OfACase) -> str:
    """When the picture was taken, or that it is not known (with the import date, which orders it)."""
    case = record.case
    return case.study_date or f"date taken unknown (imported {case.imported_at:%Y-%m-%d})"


def interval_text(days: int) -> str:
    """Time between two pictures as a clinician says it: days up to two months, then months, then years."""
    if days == 0:
        return "same day"
    if abs(days) < 60:
        return f"{days} day{'s' if abs(days) != 1 else ''}"
    months = round(days / 30.4375)
    if abs(months) < 24:
        return f"{months} months"
    years, rest = divmod(months, 12)
    return f"{years} years" + (f" {rest} months" if rest else "")


@dataclass(frozen=True)
class LesionState:
    """What is known about the lesion on one date."""

    date: str                          # `case_date`: the day taken, or that it is unknown
    taken_on: str | None               # ISO date the picture was taken; None: unknown
    area_mm2: float | None
    diameter_mm: float | None
    diameter_source: str | None        # "measured by <reviewer>" or "from the model's outline"
    malignancy: float | None

    @classmethod
    def of(cls, record: CaseRecord, measured: LesionMeasurements | None, lengths: Iterable[Measurement] = ()) -> LesionState:
        by_hand = [m for m in lengths if m.kind == DIAMETER]
        if by_hand:
            diameter, source = by_hand[-1].length_mm, f"measured by {by_hand[-1].measured_by}"
        elif measured is not None and measured.longest_diameter_mm is not None:
            diameter, source = measured.longest_diameter_mm, "from the model's outline"
        else:
            diameter, source = None, None
        return cls(case_date(record), record.case.study_date, measured.area_mm2 if measured else None, diameter, source,
                   record.prediction.malignancy if record.prediction is not None else None)


@dataclass(frozen=True)
class LesionChange:
    earlier: LesionState
    later: LesionState

    @property
    def days(self) -> int | None:
        """Days between the two pictures; None where either date is unknown."""
        if self.earlier.taken_on is None or self.later.taken_on is None:
            return None
        return int((np.datetime64(self.later.taken_on) - np.datetime64(self.earlier.taken_on)).astype(int))

    @staticmethod
    def _change(before: float | None, after: float | None, unit: str, name: str) -> str:
        if before is None or after is None:
            return (f"{name}: cannot be compared (an image without a scale, without an outline, or with the lesion "
                    "cut off by the image border; calibrate each image on its ruler)")
        relative = f" ({(after - before) / before:+.0%})" if before > 0 else ""
        return f"{name}: {before:.1f} → {after:.1f} {unit}{relative}"

    def describe(self) -> list[str]:
        days = self.days
        span = f"{self.earlier.date} → {self.later.date}" + (
            f" ({interval_text(days)})" if days is not None else
            " (time between unknown: the day a picture was taken is not recorded; enter it on its review page)")
        diameter = self._change(self.earlier.diameter_mm, self.later.diameter_mm, "mm", "Longest diameter")
        sources = (self.earlier.diameter_source, self.later.diameter_source)
        if None not in sources and sources[0] != sources[1]:
            diameter += f" — {sources[0]} then {sources[1]}, so part of the change may be the method"
        lines = [span, self._change(self.earlier.area_mm2, self.later.area_mm2, "mm²", "Area"), diameter]
        before, after = self.earlier.malignancy, self.later.malignancy
        if before is None or after is None:
            lines.append("Malignancy probability: one of the images has no model result")
        else:
            lines.append(f"Malignancy probability: {percent_text(before)} → {percent_text(after)} "
                         f"({(after - before) * 100:+.0f} percentage points)")
        return lines


def series_of_case(records: Iterable[CaseRecord], case: StoredCase) -> list[CaseRecord]:
    """The images of this case's lesion among `records` (its patient's, or its lesion id's), when there are two or
    more; else empty."""
    key = lesion_key(case)
    return lesion_series(records).get(key, []) if key is not None else []
