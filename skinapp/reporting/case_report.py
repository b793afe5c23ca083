"""Case reports a clinic can keep: a small self-contained HTML page and a PDF, for one case or for every case of
a patient. Both draw the same `CaseReport` content; every user or file string is escaped."""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np

from skinapp.reporting.case_content import DISCLAIMER, OUTCOME_HEADER, CaseReport, case_report, report_jpeg
from skinapp.reporting.viewer import jpeg_data_url
from skinapp.store import Decision, StoredCase, StoredPrediction


def _table(rows: Sequence[Sequence[str]], header: Sequence[str] | None = None) -> str:
    e = html.escape
    head = "<tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def _case_html(report: CaseReport) -> str:
    e = html.escape
    parts = [f"<section><h1>Case {e(report.case_name)}</h1>", f"<p><b>{e(DISCLAIMER)}</b></p>",
             _table([(k, v) for k, v in report.facts])]
    if report.call is None:
        parts.append("<p>The model did not analyse this image.</p>")
    else:
        parts += [f"<h2>Model result</h2><p>Top diagnosis: <b>{e(report.call)}</b></p>",
                  *(f"<p>{e(note)}</p>" for note in report.call_notes),
                  _table(report.probabilities, ("Diagnosis", "Probability")), f"<p>{e(report.model or '')}</p>"]
        if report.flags:
            parts.append("<h2>Why to check this case</h2><ul>" + "".join(f"<li>{e(f)}</li>" for f in report.flags) + "</ul>")
    if report.structures:
        parts.append("<h2>Structures the model sees</h2><ul>" + "".join(f"<li>{e(m)}</li>" for m in report.structures)
                     + f"</ul><p>{e(report.structures_caption)}</p>")
    if report.measurements:
        parts.append("<h2>Measurements</h2><ul>" + "".join(f"<li>{e(m)}</li>" for m in report.measurements) + "</ul>")
    parts.append("<h2>Images</h2><div class='pictures'>" + "".join(
        f"<figure><img alt='{e(p.title)}' src='{jpeg_data_url(report_jpeg(p.image))}'>"
        f"<figcaption><b>{e(p.title)}</b>. {e(p.legend)}</figcaption></figure>" for p in report.pictures) + "</div>")
    parts.append("<h2>Decisions</h2>")
    if report.decision_warning:
        parts.append(f"<p><strong>{e(report.decision_warning)}</strong></p>")
    if report.decisions:
        parts.append(_table([(d.when, d.reviewer, d.decision, d.made_on, d.note) for d in report.decisions],
                            ("When", "Reviewer", "Decision", "Made on", "Note")))
    else:
        parts.append("<p>No decision recorded yet.</p>")
    parts.append("<h2>Outcome</h2>")
    if report.outcomes:
        if len(report.outcomes) > 1:
            parts.append("<p>The first line is the outcome; those below it were corrected by it.</p>")
        parts.append(_table([(o.result_date, o.outcome, o.diagnosis, o.counts_as, o.lab_reference, o.entered, o.note)
                             for o in report.outcomes], OUTCOME_HEADER))
    else:
        parts.append("<p>No outcome recorded yet.</p>")
    return "\n".join(parts) + "</section>"


def case_reports_html(reports: Sequence[CaseReport], title: str) -> str:
    e = html.escape
    first = reports[0]
    return "\n".join([
        "<!doctype html><html><head><meta charset='utf-8'>", f"<title>{e(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:0.2em 0.6em;text-align:left}.pictures{display:flex;flex-wrap:wrap;gap:1em}"
        "figure{width:18em;margin:0}figure img{width:100%}figcaption{font-size:0.85em}"
        "section{page-break-after:always}</style></head><body>",
        *(_case_html(r) for r in reports),
        f"<p><small>Report made {first.generated_at:%Y-%m-%d %H:%M} UTC by {e(first.generated_by)} with skinapp.</small></p>",
        "</body></html>"])


def case_report_html(case: StoredCase, image: np.ndarray, stored: StoredPrediction | None, history: list[Decision],
                     generated_by: str, **content) -> str:
    """One case as a small self-contained HTML page (JPEG pictures inline, each labelled)."""
    report = case_report(case, image, stored, history, generated_by, **content)
    return case_reports_html([report], f"skinapp case report — {case.name} — {report.date}")


def case_reports_pdf(reports: Sequence[CaseReport], title: str) -> bytes:
    from skinapp.reporting.pdf import reports_pdf  # reportlab only when a PDF is asked for

    return reports_pdf(reports, title)
