"""The `ingest` command: import files, print what came in and what was rejected, write the report as JSON. The
cases stream through one at a time: what is kept of each is its metadata, never its pixels, so a large folder
needs no more memory than its largest file."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from skinapp.io import ImportReport, iter_cases


def run_ingest(paths: Sequence[Path], report_path: Path | None = None, metadata_csv: Path | None = None) -> int:
    """Returns the exit code: 0 if any case was imported, 1 if none could be."""
    report = ImportReport()
    patients: dict[str, list[str]] = {}
    described: list[dict] = []
    unassigned = 0
    for case in iter_cases(paths, report, metadata_csv):
        if case.patient_id:
            patients.setdefault(case.patient_id, []).append(case.name)
        else:
            unassigned += 1
        described.append(case.to_dict())
    print(report.summary())
    if described:
        print(f"{len(patients)} patient(s)" + (f"; {unassigned} case(s) without a patient id" if unassigned else ""))
    if report_path is not None:
        report_path.parent.mkdir(parents=True, exist_ok=True)
        document = {**report.to_dict(), "patients": patients, "cases": described}
        report_path.write_text(json.dumps(document, indent=2, ensure_ascii=False))
        print(f"report: {report_path}")
    if not described:
        print("error: no input could be read; nothing was imported", file=sys.stderr)
        return 1
    return 0
