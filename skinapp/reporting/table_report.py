"""A report of headed sections (paragraphs and tables) as an A4 PDF: the clinic's record of the model for its quality
meeting (`workflow.clinic_record` fills it). The content is plain data, so the PDF can be read back and checked; the
look (DejaVu Sans, grids, footer) is the case report's (`pdf`)."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence
from dataclasses import dataclass, field

from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.platypus import KeepTogether, SimpleDocTemplate, Spacer, Table

from skinapp.reporting.pdf import _CELL, _HEADED, _SMALL, _STYLES, _text, page_footer

_WIDTH = A4[0] - 36 * mm


@dataclass(frozen=True)
class TableBlock:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""


@dataclass(frozen=True)
class Section:
    heading: str
    paragraphs: tuple[str, ...] = ()
    tables: tuple[TableBlock, ...] = ()
    notes: tuple[str, ...] = ()        # small print below the tables: what is counted


@dataclass(frozen=True)
class TableReport:
    title: str
    generated_by: str
    generated_at: dt.datetime
    lead: tuple[str, ...] = ()         # set in bold under the title: what the figures are and are not
    sections: tuple[Section, ...] = field(default_factory=tuple)


def _table(block: TableBlock) -> Table:
    columns = max(1, len(block.header))
    style = _SMALL if columns > 6 else _CELL
    rows = [[_text(h, style) for h in block.header]] + [[_text(c, style) for c in row] for row in block.rows]
    return Table(rows, colWidths=[_WIDTH / columns] * columns, style=_HEADED, repeatRows=1)


def _section(section: Section) -> list:
    story: list = [_text(section.heading, _STYLES["Heading2"]), *(_text(p) for p in section.paragraphs)]
    for block in section.tables:
        part: list = [_text(block.caption, _STYLES["Heading4"])] if block.caption else []
        part += [_table(block), Spacer(1, 2 * mm)]
        story.append(KeepTogether(part))
    story += [_text(n, _SMALL) for n in section.notes]
    return story


def table_report_pdf(report: TableReport) -> bytes:
    buffer = io.BytesIO()
    on_page = page_footer(f"{report.title} · made {report.generated_at:%Y-%m-%d %H:%M} UTC by {report.generated_by} "
                          "with skinapp")

    document = SimpleDocTemplate(buffer, pagesize=A4, title=report.title, author=report.generated_by, creator="skinapp",
                                 leftMargin=18 * mm, rightMargin=18 * mm, topMargin=16 * mm, bottomMargin=18 * mm)
    story: list = [_text(report.title, _STYLES["Heading1"]), *(_text(line, _STYLES["Heading4"]) for line in report.lead)]
    for section in report.sections:
        story += _section(section)
    document.build(story, onFirstPage=on_page, onLaterPages=on_page)
    return buffer.getvalue()


def rows_of(values: Sequence[Sequence[object]]) -> tuple[tuple[str, ...], ...]:
    """Table rows as text (None as a dash)."""
    return tuple(tuple("—" if v is None else str(v) for v in row) for row in values)
