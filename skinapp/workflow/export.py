"""The worklist as a CSV file a spreadsheet opens safely."""

from __future__ import annotations

import csv
import io

from skinapp.reporting.text import spreadsheet_safe
from skinapp.workflow.worklist import WorklistRow, worklist_records

__all__ = ["export_csv", "spreadsheet_safe"]


def export_csv(rows: list[WorklistRow], installed_weights_sha256: str | None = None,
               installed_version: str | None = None) -> bytes:
    records = worklist_records(rows, installed_weights_sha256, installed_version)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(records[0]) if records else ["case"])
    writer.writeheader()
    for record in records:
        writer.writerow({k: spreadsheet_safe(v) for k, v in record.items()})
    return buffer.getvalue().encode("utf-8-sig")  # the BOM lets spreadsheet programs read the accents right
