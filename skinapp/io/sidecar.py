"""Metadata CSVs beside the images: ISIC 2020 `train.csv` style or HAM10000 metadata style."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from skinapp.vocab import Metadata

_NAME_COLUMNS = ("image_name", "image_id", "image", "isic_id")
_COLUMNS = {
    "age": ("age_approx", "age"),
    "sex": ("sex",),
    "site": ("anatom_site_general_challenge", "anatom_site_general", "localization", "site"),
    "patient": ("patient_id", "lesion_id"),
}


@dataclass(frozen=True)
class SidecarRow:
    metadata: Metadata
    patient_id: str | None


def _first(table: pd.DataFrame, names: tuple[str, ...]) -> str | None:
    return next((n for n in names if n in table.columns), None)


def read_sidecar(path: Path) -> dict[str, SidecarRow]:
    """Image name → metadata and patient. Raises ValueError with a plain reason when the CSV is unusable."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise ValueError(f"metadata CSV {path} could not be read ({exc})") from None
    table.columns = [c.strip().lower() for c in table.columns]
    name_column = _first(table, _NAME_COLUMNS)
    if name_column is None:
        raise ValueError(f"metadata CSV {path} has no image name column (one of {', '.join(_NAME_COLUMNS)})")
    columns = {key: _first(table, names) for key, names in _COLUMNS.items()}
    rows = {}
    for record in table.to_dict("records"):
        get = lambda key: record.get(columns[key]) if columns[key] else None
        patient = (get("patient") or "").strip() or None
        rows[str(record[name_column]).strip()] = SidecarRow(Metadata.parse(get("age"), get("sex"), get("site")), patient)
    return rows
