"""The referral / report letter: a letter that leaves the clinic, on one A4 page where possible. The clinic's
letterhead, the addressee and the clinical question come first, then the reviewer's decision and diagnosis; the
model's answer follows as decision support, named with its version, with the lesion's picture and outline."""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.platypus import Image, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from skinapp.reporting.case_content import DISCLAIMER, CaseReport, report_jpeg
from skinapp.reporting.pdf import _BODY, _SMALL, _STYLES, page_footer
from skinapp.store.letterhead import Letterhead

NO_LETTERHEAD = "(No clinic letterhead set: an administrator sets it under Administration.)"
_PICTURE_WIDTH = 52 * mm
_RIGHT = ParagraphStyle("right", parent=_BODY, alignment=2)
_CLINIC = ParagraphStyle("clinic", parent=_STYLES["Heading2"], spaceBefore=0, spaceAfter=1 * mm)


@dataclass(frozen=True)
class ReferralLetter:
    letterhead: Letterhead | None
    addressee: str            # several lines: name, department, address
    question: str             # the clinical question, or why the patient is referred
    report: CaseReport        # the case as the reports read it
    decision: str             # the reviewer's decision and diagnosis in words (`workflow.letters.decision_words`)
    decision_note: str
    decided_by: str           # "Dr A (dra), 2026-12-06 10:12 UTC"; empty: no decision yet
    risk: str | None          # the model's risk tier in words, where it grades risk
    author: str               # who signs the letter (the signed-in reviewer)
    written_at: dt.datetime


def _lines(text: str, style: ParagraphStyle = _BODY) -> Paragraph:
    return Paragraph(escape(text).replace("\n", "<br/>"), style)


def _labelled(label: str, text: str) -> Paragraph:
    return Paragraph(f"<b>{escape(label)}</b> " + escape(text).replace("\n", "<br/>"), _BODY)


def letter_pdf(letter: ReferralLetter) -> bytes:
    report, head = letter.report, letter.letterhead
    facts = dict(report.facts)
    story: list = []
    if head is not None:
        story += [_lines(head.clinic, _CLINIC), _lines("\n".join(x for x in (head.address, head.contact) if x), _SMALL)]
    else:
        story.append(_lines(NO_LETTERHEAD, _SMALL))
    story += [Spacer(1, 6 * mm), _lines(letter.addressee or "(no addressee)"), Spacer(1, 4 * mm),
              _lines(f"{letter.written_at:%Y-%m-%d}", _RIGHT), Spacer(1, 2 * mm),
              _lines(f"Re: patient {facts.get('Patient', 'not given')}, lesion {facts.get('Lesion', 'not given')} "
                     f"({facts.get('Site', 'site unknown')}); age / sex {facts.get('Age / sex', 'unknown')}; picture "
                     f"taken {facts.get('Image taken', 'not recorded')}; case {report.case_name}",
                     _STYLES["Heading4"]),
              _labelled("Clinical question:", letter.question or "(none given)"), Spacer(1, 3 * mm),
              _lines("Our assessment", _STYLES["Heading3"]),
              _labelled("Decision:", letter.decision)]
    if letter.decision_note:
        story.append(_labelled("Note:", letter.decision_note))
    if letter.decided_by:
        story.append(_lines(f"Recorded by {letter.decided_by}.", _SMALL))
    hand = [m for m in report.measurements if m.startswith("Longest diameter measured by")]
    story += [_lines(m) for m in hand]
    story += [Spacer(1, 3 * mm), _lines("Decision support (not a diagnosis)", _STYLES["Heading3"])]
    if report.call is None:
        story.append(_lines("The model did not analyse this image."))
    else:
        story.append(_labelled("The model's top diagnosis:", report.call))
        if letter.risk:
            story.append(_labelled("Malignancy risk:", letter.risk))
        story.append(_lines(report.model or "", _SMALL))
    pictures = report.pictures[:2]
    cells = []
    for picture in pictures:
        height, width = picture.image.shape[:2]
        cells.append([Image(io.BytesIO(report_jpeg(picture.image)), width=_PICTURE_WIDTH,
                            height=_PICTURE_WIDTH * height / width), _lines(picture.title, _SMALL)])
    if cells:
        story += [Spacer(1, 2 * mm), Table([cells], colWidths=[_PICTURE_WIDTH + 4 * mm] * len(cells),
                                           style=TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"),
                                                             ("LINEBELOW", (0, 0), (-1, -1), 0, colors.white)]))]
    story += [Spacer(1, 4 * mm), _lines(DISCLAIMER, _SMALL), Spacer(1, 6 * mm), _lines("Yours sincerely,"),
              Spacer(1, 8 * mm), _lines(letter.author)]
    buffer = io.BytesIO()
    title = f"Letter — case {report.case_name} — {letter.written_at:%Y-%m-%d}"
    document = SimpleDocTemplate(buffer, pagesize=A4, title=title, author=letter.author, creator="skinapp",
                                 leftMargin=20 * mm, rightMargin=20 * mm, topMargin=16 * mm, bottomMargin=18 * mm)
    on_page = page_footer(f"{title} · written with skinapp")
    document.build(story, onFirstPage=on_page, onLaterPages=on_page)
    return buffer.getvalue()
