"""The PDF case report (reportlab): the same content as the HTML report, laid out for A4 and a clinic's file.

Text is set in DejaVu Sans (shipped with matplotlib, already a dependency): reportlab's built-in fonts have no
Greek, arrows or non-Latin scripts, and a patient's name or a note may hold any of them."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib
from reportlab.lib import colors
from reportlab.lib.fonts import addMapping
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import Image, KeepTogether, PageBreak, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from skinapp.reporting.case_content import DISCLAIMER, OUTCOME_HEADER, CaseReport, report_jpeg

_FONTS = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
pdfmetrics.registerFont(TTFont("DejaVuSans", str(_FONTS / "DejaVuSans.ttf")))
pdfmetrics.registerFont(TTFont("DejaVuSans-Bold", str(_FONTS / "DejaVuSans-Bold.ttf")))
addMapping("DejaVuSans", 0, 0, "DejaVuSans")
addMapping("DejaVuSans", 1, 0, "DejaVuSans-Bold")
addMapping("DejaVuSans", 0, 1, "DejaVuSans")
addMapping("DejaVuSans", 1, 1, "DejaVuSans-Bold")


def _styles() -> dict[str, ParagraphStyle]:
    sample = getSampleStyleSheet()
    styles = {}
    for name in ("BodyText", "Heading1", "Heading2", "Heading3", "Heading4"):
        bold = name.startswith("Heading")
        styles[name] = ParagraphStyle(f"skinapp-{name}", parent=sample[name],
                                      fontName="DejaVuSans-Bold" if bold else "DejaVuSans")
    return styles


_STYLES = _styles()
_BODY = _STYLES["BodyText"]
_SMALL = ParagraphStyle("small", parent=_BODY, fontSize=8, leading=10)
_CELL = ParagraphStyle("cell", parent=_BODY, fontSize=9, leading=11)
_GRID = TableStyle([("GRID", (0, 0), (-1, -1), 0.4, colors.grey), ("VALIGN", (0, 0), (-1, -1), "TOP"),
                    ("BACKGROUND", (0, 0), (0, -1), colors.whitesmoke)])
_HEADED = TableStyle([("GRID", (0, 0), (-1, -1), 0.4, colors.grey), ("VALIGN", (0, 0), (-1, -1), "TOP"),
                      ("BACKGROUND", (0, 0), (-1, 0), colors.whitesmoke)])
_PICTURE_WIDTH = 56 * mm


def _text(value: object, style: ParagraphStyle = _BODY) -> Paragraph:
    """reportlab reads a small markup language in Paragraph: user strings are escaped first."""
    from xml.sax.saxutils import escape

    return Paragraph(escape(str(value)).replace("\n", "<br/>"), style)


def _picture(picture) -> list:
    height, width = picture.image.shape[:2]
    drawn = Image(io.BytesIO(report_jpeg(picture.image)), width=_PICTURE_WIDTH, height=_PICTURE_WIDTH * height / width)
    return [drawn, _text(picture.title, _CELL), _text(picture.legend, _SMALL)]


def _case_story(report: CaseReport) -> list:
    story: list = [_text(f"Case {report.case_name}", _STYLES["Heading1"]), _text(DISCLAIMER, _STYLES["Heading4"]),
                   Table([[_text(k, _CELL), _text(v, _CELL)] for k, v in report.facts], colWidths=[40 * mm, 130 * mm],
                         style=_GRID)]
    if report.call is None:
        story.append(_text("The model did not analyse this image."))
    else:
        story += [_text("Model result", _STYLES["Heading2"]), _text(f"Top diagnosis: {report.call}", _STYLES["Heading3"]),
                  *(_text(n) for n in report.call_notes), Spacer(1, 2 * mm),
                  Table([[_text("Diagnosis", _CELL), _text("Probability", _CELL)]]
                        + [[_text(n, _CELL), _text(p, _CELL)] for n, p in report.probabilities],
                        colWidths=[110 * mm, 30 * mm], style=_HEADED),
                  _text(report.model or "", _SMALL)]
        if report.flags:
            story += [_text("Why to check this case", _STYLES["Heading2"]), *(_text(f"• {f}") for f in report.flags)]
    if report.structures:
        story += [_text("Structures the model sees", _STYLES["Heading2"]), *(_text(f"• {m}") for m in report.structures),
                  _text(report.structures_caption, _SMALL)]
    if report.measurements:
        story += [_text("Measurements", _STYLES["Heading2"]), *(_text(f"• {m}") for m in report.measurements)]
    cells = [_picture(p) for p in report.pictures]
    rows: list[list[object]] = [list(cells[i:i + 3]) for i in range(0, len(cells), 3)]
    rows[-1] += [""] * (3 - len(rows[-1]))
    story.append(KeepTogether([_text("Images", _STYLES["Heading2"]),
                               Table(rows, colWidths=[_PICTURE_WIDTH + 2 * mm] * 3,
                                     style=TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP")]))]))
    decisions: list = [_text("Decisions", _STYLES["Heading2"])]
    if report.decision_warning:
        decisions.append(_text(report.decision_warning, _STYLES["Heading4"]))
    if report.decisions:
        decisions.append(Table([[_text(h, _CELL) for h in ("When", "Reviewer", "Decision", "Made on", "Note")]]
                               + [[_text(c, _CELL) for c in (d.when, d.reviewer, d.decision, d.made_on, d.note)]
                                  for d in report.decisions],
                               colWidths=[30 * mm, 30 * mm, 35 * mm, 40 * mm, 35 * mm], style=_HEADED, repeatRows=1))
    else:
        decisions.append(_text("No decision recorded yet."))
    story.append(KeepTogether(decisions))
    outcome: list = [_text("Outcome", _STYLES["Heading2"])]
    if report.outcomes:
        if len(report.outcomes) > 1:
            outcome.append(_text("The first line is the outcome; those below it were corrected by it."))
        outcome.append(Table([[_text(h, _SMALL) for h in OUTCOME_HEADER]]  # seven columns: the smaller type
                             + [[_text(c, _SMALL) for c in (o.result_date, o.outcome, o.diagnosis, o.counts_as,
                                                            o.lab_reference, o.entered, o.note)] for o in report.outcomes],
                             colWidths=[21 * mm, 27 * mm, 36 * mm, 20 * mm, 20 * mm, 25 * mm, 25 * mm], style=_HEADED,
                             repeatRows=1))
    else:
        outcome.append(_text("No outcome recorded yet."))
    story.append(KeepTogether(outcome))
    return story


def page_footer(footer: str):
    """A reportlab page callback: `footer` and the page number at the foot of every page."""
    def on_page(canvas, document) -> None:
        canvas.saveState()
        canvas.setFont("DejaVuSans", 7)
        canvas.drawString(document.leftMargin, 10 * mm, footer[:150])
        canvas.drawRightString(A4[0] - document.rightMargin, 10 * mm, f"page {document.page}")
        canvas.restoreState()

    return on_page


def reports_pdf(reports: Sequence[CaseReport], title: str) -> bytes:
    buffer = io.BytesIO()
    first = reports[0]
    on_page = page_footer(f"{title} · made {first.generated_at:%Y-%m-%d %H:%M} UTC by {first.generated_by} with skinapp")

    document = SimpleDocTemplate(buffer, pagesize=A4, title=title, author=first.generated_by, creator="skinapp",
                                 leftMargin=18 * mm, rightMargin=18 * mm, topMargin=16 * mm, bottomMargin=18 * mm)
    story: list = []
    for i, report in enumerate(reports):
        if i:
            story.append(PageBreak())
        story += _case_story(report)
    document.build(story, onFirstPage=on_page, onLaterPages=on_page)
    return buffer.getvalue()
