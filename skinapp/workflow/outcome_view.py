"""What the app shows of outcomes (what a lesion turned out to be) and the case page's outcome form, worked out from
stored records: the choices the form offers, its fields as an outcome to record, and the texts around it. Pure
functions; the pages only lay them out. No Streamlit here.

Texts meant as markdown pass user strings through `plain_markdown`; table rows hold them as they are."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from skinapp.outcomes import DIAGNOSES, DIAGNOSIS_BY_CODE, OTHER, OUTCOME_KINDS
from skinapp.reporting.text import plain_markdown
from skinapp.store import Outcome, OutcomeEntry

KIND_CHOICES: list[str] = list(OUTCOME_KINDS)
DIAGNOSIS_CHOICES: list[str | None] = [None, *(d.code for d in DIAGNOSES)]


def kind_choice_label(kind: str) -> str:
    return OUTCOME_KINDS[kind]


def diagnosis_choice_label(code: str | None) -> str:
    """A choice of the clinical list as the form shows it: the name, and what the model calls it."""
    if code is None:
        return "—"
    entry = DIAGNOSIS_BY_CODE[code]
    if entry.model_class is None:
        return f"{entry.name} (give it in words)"
    return f"{entry.name} ({entry.model_class}, {entry.malignancy_text})"


def outcome_entry(case_id: int, kind: str, diagnosis: str | None, breslow_mm: float | None, result_date: dt.date,
                  diagnosis_text: str, lab_reference: str, note: str) -> OutcomeEntry:
    """The form's fields as the store takes them. The Breslow field and the words field count only where the
    diagnosis has them (the form keeps showing them while the reviewer changes the diagnosis)."""
    entry = DIAGNOSIS_BY_CODE.get(diagnosis or "")
    return OutcomeEntry(
        case_id=case_id, kind=kind, result_date=result_date, diagnosis=diagnosis,
        breslow_mm=breslow_mm if entry is not None and entry.breslow else None,
        diagnosis_text=diagnosis_text if diagnosis == OTHER else None,
        lab_reference=lab_reference or None, note=note or "")


def outcome_problem(kind: str | None, result_date: dt.date | None) -> str | None:
    """What is missing before the form can save; None when it can (the store checks the rest and says why)."""
    if kind is None:
        return "Choose what kind of outcome this is."
    if result_date is None:
        return "Give the date of the result."
    return None


def latest_outcome_text(outcome: Outcome | None) -> str:
    """The case's outcome in one markdown line."""
    if outcome is None:
        return "**Outcome:** none recorded yet."
    counts = ", ".join(x for x in (outcome.model_class or "", outcome.malignancy) if x)
    return (f"**Outcome:** {plain_markdown(outcome.label)}" + (f" (counts as {counts})" if counts else "")
            + (f" · lab reference {plain_markdown(outcome.lab_reference)}" if outcome.lab_reference else "")
            + f" · entered by {plain_markdown(outcome.entered_by)}")


def outcome_short_text(outcome: Outcome | None) -> str | None:
    """For the patient page's lesion cards (markdown)."""
    if outcome is None:
        return None
    return f"Outcome: {plain_markdown(outcome.diagnosis_label or outcome.kind_label)} ({outcome.result_date:%Y-%m-%d})"


def outcome_history(history: Sequence[Outcome]) -> list[dict[str, str]]:
    """The case's outcomes, latest first, as table rows (shown as text, not markdown)."""
    return [{"date": o.result_date.isoformat(), "outcome": o.kind_label, "diagnosis": o.diagnosis_label,
             "lab reference": o.lab_reference or "", "entered (UTC)": f"{o.entered_at:%Y-%m-%d %H:%M}",
             "by": o.entered_by, "note": o.note} for o in reversed(history)]


def outcome_saved_text(outcome: Outcome) -> str:
    corrected = " It replaces the outcome before it, which stays on record." if outcome.replaces_id else ""
    return f"Outcome saved: {plain_markdown(outcome.label)}.{corrected}"


def outcome_conflict_text(other: Outcome) -> str:
    return (f"Not saved: {plain_markdown(other.entered_by)} recorded the outcome “{plain_markdown(other.label)}” on "
            f"this case at {other.entered_at:%H:%M} UTC while you had it open. Read it above; press Save again to "
            "record yours after it.")
