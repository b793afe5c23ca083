"""The referral / report letter of one case (`reporting/letter.py`), from the stored case, the latest decision
and the clinic's letterhead."""

from __future__ import annotations

import datetime as dt

from skinapp.model.card import ModelCard
from skinapp.reporting.letter import ReferralLetter, letter_pdf
from skinapp.store import Decision, Store
from skinapp.store.letterhead import Letterheads
from skinapp.store.limits import checked
from skinapp.trust.risk import TIER_NAMES
from skinapp.vocab import CLASS_NAMES
from skinapp.workflow.reports import FORMATS, ReportFile, report_name, stored_reports


def decision_words(decision: Decision | None) -> str:
    """The reviewer's decision as a letter says it: the diagnosis first where there is one."""
    if decision is None:
        return "No decision recorded yet: this letter carries the decision support only."
    if decision.decision == "agree" and decision.predicted_class:
        return (f"{CLASS_NAMES[decision.predicted_class]} ({decision.predicted_class}): the reviewer agrees with the "
                "decision support's top diagnosis.")
    if decision.decision == "disagree":
        return decision.label.replace("Disagree: ", "Diagnosis: ", 1) + " (the reviewer differs from the decision support)."
    return decision.label + "."


def letter_file(store: Store, case_id: int, author: str, addressee: str, question: str,
                installed: ModelCard | None = None, now: dt.datetime | None = None) -> ReportFile:
    """The letter as a PDF named `letter_<case>_<date>.pdf`. The addressee and question are checked as the store
    checks every text."""
    now = now or dt.datetime.now(dt.UTC)
    addressee = (checked("addressee", addressee, multiline=True) or "").strip()
    question = (checked("clinical question", question, multiline=True) or "").strip()
    reports = stored_reports(store, [case_id], author, installed, now)
    if not reports:
        raise ValueError(f"there is no case {case_id}")
    stored, latest = store.latest_prediction(case_id), store.latest_decision(case_id)
    letter = ReferralLetter(
        letterhead=Letterheads(store).current(), addressee=addressee, question=question, report=reports[0],
        decision=decision_words(latest), decision_note=latest.note if latest else "",
        decided_by=f"{latest.reviewer}, {latest.created_at:%Y-%m-%d %H:%M} UTC" if latest else "",
        risk=TIER_NAMES.get(stored.risk_tier or "") if stored is not None else None, author=author, written_at=now)
    return ReportFile(report_name(f"letter_{reports[0].case_name}", "pdf", now), FORMATS["pdf"], letter_pdf(letter))
