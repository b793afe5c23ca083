"""Metadata CSVs beside the images: ISIC 2020 `train.csv` style or HAM10000 metadata style."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pandas as pd

from skinapp.vocab import Metadata

_NAME_COLUMNS = ("image_name", "image_id", "image", "isic_id")
_COLUMNS = {
    "age": ("age_approx", "age"),
    "sex": ("sex",),
    "site": ("anatom_site_general_challenge", "anatom_site_general", "localization", "site"),
    "patient": ("patient_id", "patient"),
    "lesion": ("lesion_id", "lesion"),
}


_UNKNOWN_WORDS = {"unknown", "na", "n/a", "nan", "none", "missing", "-", "?"}  # what CSVs write for "not known"


@dataclass(frozen=True)
class MetadataRow:
    metadata: Metadata
    patient_id: str | None
    lesion_id: str | None = None
    problems: tuple[str, ...] = ()   # values the row gives that are not a valid age, sex or site: left unknown


def _problems(age: str | None, sex: str | None, site: str | None, metadata: Metadata) -> tuple[str, ...]:
    def given(value: str | None) -> bool:
        return value is not None and value.strip().lower() not in _UNKNOWN_WORDS

    problems = []
    if given(age) and metadata.age is None:
        problems.append(f"age {age!r} is not an age in years between 0 and 120; left unknown")
    if given(sex) and metadata.sex is None:
        problems.append(f"sex {sex!r} is not male or female; left unknown")
    if given(site) and metadata.site.region is None:
        problems.append(f"site {site!r} is not an anatomic site the model knows; left unknown")
    return tuple(problems)


def _first(table: pd.DataFrame, names: tuple[str, ...]) -> str | None:
    return next((n for n in names if n in table.columns), None)


def _cell(record: dict, column: str | None) -> str | None:
    if column is None:
        return None
    return (record.get(column) or "").strip().strip('"').strip() or None


def read_metadata_csv(path: Path | str | BinaryIO, name: str | None = None) -> dict[str, MetadataRow]:
    """Image name → metadata, patient and lesion. Raises ValueError with a plain reason when the CSV is unusable.
    `path` may be an open binary file (an upload); `name` is what messages call it."""
    path_name = name or str(getattr(path, "name", path))
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise ValueError(f"metadata CSV {path_name} could not be read ({exc})") from None
    table.columns = [c.strip().lower() for c in table.columns]
    name_column = _first(table, _NAME_COLUMNS)
    if name_column is None:
        raise ValueError(f"metadata CSV {path_name} has no image name column (one of {', '.join(_NAME_COLUMNS)})")
    columns = {key: _first(table, names) for key, names in _COLUMNS.items()}
    rows = {}
    for record in table.to_dict("records"):
        name = _cell(record, name_column)
        if name is None:
            continue
        age, sex, site = (_cell(record, columns[key]) for key in ("age", "sex", "site"))
        metadata = Metadata.parse(age, sex, site)
        rows[name] = MetadataRow(metadata, _cell(record, columns["patient"]), _cell(record, columns["lesion"]),
                                 _problems(age, sex, site, metadata))
    return rows
