"""Reports on stored cases, for one case or every case of a patient, as PDF or HTML, named with the case id (or
patient id) and the date. Reads the store; the export is audited by the caller's `Store.log_export`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from skinapp.model.card import ModelCard
from skinapp.model.measured import CardMetrics
from skinapp.reporting.case_content import CaseReport, case_report, file_stem
from skinapp.reporting.case_report import case_reports_html, case_reports_pdf
from skinapp.store import Store

FORMATS = {"pdf": "application/pdf", "html": "text/html"}


@dataclass(frozen=True)
class ReportFile:
    name: str
    mime: str
    data: bytes


def stored_reports(store: Store, case_ids: Sequence[int], generated_by: str, installed: ModelCard | None,
             now: dt.datetime) -> list[CaseReport]:
    reports = []
    for case_id in case_ids:
        case, stored = store.case(case_id), store.latest_prediction(case_id)
        if case is None:
            continue
        # The recall quoted next to the call belongs to the model that made it: known only for the installed one.
        metrics = metrics_of(installed, stored.weights_sha256 if stored is not None else None)
        reports.append(case_report(case, store.case_image(case_id), stored, store.decisions(case_id), generated_by,
                                   lengths=store.measurements(case_id), card_metrics=metrics, now=now,
                                   outcomes=store.outcomes(case_id),
                                   structures=installed.structures if metrics is not None and installed else None))
    return reports


def report_name(subject: str, kind: str, when: dt.datetime) -> str:
    """`<case id>_<date>.pdf`, or `patient_<id>_<date>.pdf` for a patient's cases."""
    return f"{file_stem(subject, f'{when:%Y-%m-%d}')}.{kind}"


def patient_subject(patient_id: str) -> str:
    return f"patient_{patient_id}"


def metrics_of(installed: ModelCard | None, weights_sha256: str | None) -> CardMetrics | None:
    """The installed card's measured figures, where it is the model that made a result (else unknown here)."""
    return installed.metrics if installed is not None and installed.identity == weights_sha256 else None


def report_file(store: Store, case_ids: Sequence[int], generated_by: str, kind: str = "pdf",
                installed: ModelCard | None = None, patient_id: str | None = None) -> ReportFile:
    """One case (`case_ids` of one) or a patient's cases (`patient_id` names the file) in one file."""
    now = dt.datetime.now(dt.UTC)
    reports = stored_reports(store, case_ids, generated_by, installed, now)
    if not reports:
        raise ValueError("none of these cases is in the store")
    subject = patient_subject(patient_id) if patient_id is not None else reports[0].case_name
    title = (f"skinapp report — patient {patient_id} — {len(reports)} case(s)" if patient_id is not None
             else f"skinapp case report — {reports[0].case_name}") + f" — {now:%Y-%m-%d}"
    data = case_reports_pdf(reports, title) if kind == "pdf" else case_reports_html(reports, title).encode()
    return ReportFile(report_name(subject, kind, now), FORMATS[kind], data)
