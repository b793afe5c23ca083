"""The `ingest` command: import files, print what came in and what was rejected, write the report as JSON."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from skinapp.io import load_cases


def run_ingest(paths: Sequence[Path], report_path: Path | None = None, metadata_csv: Path | None = None) -> int:
    """Returns the exit code: 0 if any case was imported, 1 if none could be."""
    cases, report = load_cases(paths, metadata_csv=metadata_csv)
    patients: dict[str, list[str]] = {}
    for case in cases:
        if case.patient_id:
            patients.setdefault(case.patient_id, []).append(case.name)
    print(report.summary())
    if cases:
        unassigned = sum(1 for c in cases if not c.patient_id)
        print(f"{len(patients)} patient(s)" + (f"; {unassigned} case(s) without a patient id" if unassigned else ""))
    if report_path is not None:
        report_path.parent.mkdir(parents=True, exist_ok=True)
        document = {**report.to_dict(), "patients": patients, "cases": [case.to_dict() for case in cases]}
        report_path.write_text(json.dumps(document, indent=2, ensure_ascii=False))
        print(f"report: {report_path}")
    if not cases:
        print("error: no input could be read; nothing was imported", file=sys.stderr)
        return 1
    return 0
