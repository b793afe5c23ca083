"""The worklist: every case with its latest prediction, decision and outcome, its patient context, most urgent first;
filters, and the flat records the worklist shows and the CSV export writes. Pure functions over stored
records: no torch, no Streamlit."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from skinapp.store import CaseRecord, Decision, Outcome, Store, StoredCase, StoredPrediction
from skinapp.trust.risk import CANNOT_EXCLUDE, HIGH, LOW, SUSPICIOUS_UNGRADED, TIER_SHORT_NAMES
from skinapp.vocab import CLASSES, SITE_PROFILE_MARK
from skinapp.workflow.context import LesionContext, ugly_duckling_scores

# The worklist's order, stated once (the page shows ORDER_RULE above the table): risk tier first, then
# malignancy, unreviewed before reviewed. Flags have their own column and filter and do not reorder.
NOT_ANALYSED = "not_analysed"   # a case the model could not analyse always needs a person first
# An ungraded model's "suspicious" ranks with High: its warning said "consider excision".
TIER_RANK = {NOT_ANALYSED: 0, HIGH: 1, SUSPICIOUS_UNGRADED: 1, CANNOT_EXCLUDE: 2, LOW: 3, None: 3}
TIER_LABELS = {NOT_ANALYSED: "Not analysed", **TIER_SHORT_NAMES}
ORDER_RULE = ("Order: cases to review first; among them, cases the model could not analyse, then High risk, "
              "Cannot exclude and Low, each highest malignancy first. Flags do not change the order.")


def risk_tier_of(prediction: StoredPrediction | None) -> str | None:
    """The tier a result was given. Results of models without tiers had one mark, the safety net: above it they
    keep their own "suspicious" (worded "consider excision" on the case page, so it ranks with High), below it
    "low"."""
    if prediction is None:
        return NOT_ANALYSED
    if prediction.risk_tier is not None:
        return prediction.risk_tier
    if prediction.suspicious is None:
        return None
    return SUSPICIOUS_UNGRADED if prediction.suspicious else LOW


@dataclass(frozen=True)
class WorklistRow:
    case: StoredCase
    prediction: StoredPrediction | None
    decision: Decision | None
    thumbnail_jpeg: bytes
    context: LesionContext | None = None
    outcome: Outcome | None = None      # what the lesion turned out to be (the latest outcome entered)

    @property
    def reviewed(self) -> bool:
        """A decision on the latest result. A case analysed again after its decision is back to review: the
        decision stays on record beside the result it was made on."""
        return self.decision is not None and self.decision.made_on(self.prediction)

    @property
    def earlier_decision(self) -> Decision | None:
        """The latest decision where it was made on an earlier result than the one shown now."""
        return self.decision if self.decision is not None and not self.reviewed else None

    @property
    def status(self) -> str:
        if self.reviewed:
            return "reviewed"
        return "to review (analysed again after a decision)" if self.decision is not None else "to review"

    @property
    def risk_tier(self) -> str | None:
        return risk_tier_of(self.prediction)

    @property
    def order_key(self) -> tuple[bool, int, float, int]:
        """ORDER_RULE as a sort key (the case id last: the same order on every run)."""
        malignancy = self.prediction.malignancy if self.prediction is not None else 1.0
        return self.reviewed, TIER_RANK[self.risk_tier], -malignancy, self.case.id


def patient_contexts(records: list[CaseRecord]) -> dict[int, LesionContext]:
    """Each analysed case's ugly-duckling context among its patient's other analysed lesions."""
    patients: dict[str, list[CaseRecord]] = {}
    for record in records:
        if record.case.patient_id and record.prediction is not None:
            patients.setdefault(record.case.patient_id, []).append(record)
    contexts: dict[int, LesionContext] = {}
    for group in patients.values():
        embeddings = np.stack([r.prediction.embedding for r in group if r.prediction is not None])
        for context in ugly_duckling_scores([r.case.id for r in group], embeddings):
            contexts[context.key] = context
    return contexts


def build_worklist(records: list[CaseRecord]) -> list[WorklistRow]:
    """In the order of ORDER_RULE."""
    contexts = patient_contexts(records)
    rows = [WorklistRow(r.case, r.prediction, r.decision, r.thumbnail_jpeg, contexts.get(r.case.id), r.outcome)
            for r in records]
    return sorted(rows, key=lambda row: row.order_key)


def worklist(store: Store, patient_id: str | None = None) -> list[WorklistRow]:
    return build_worklist(store.case_records(patient_id))


@dataclass(frozen=True)
class Filters:
    status: str = "all"            # "all", "to review", "reviewed"
    flagged_only: bool = False
    tier: str | None = None        # one of TIER_LABELS' keys; None: any
    diagnosis: str | None = None   # predicted class
    text: str = ""                 # matches case name or patient id
    structure: str | None = None   # one of STRUCTURES the model sees (probability ≥ STRUCTURE_SEEN); None: any


STRUCTURE_SEEN = 0.5  # a structure counts as seen at this calibrated probability or more


def structure_seen(prediction: StoredPrediction | None, structure: str) -> bool:
    return prediction is not None and prediction.structure_probabilities().get(structure, 0.0) >= STRUCTURE_SEEN


def apply_filters(rows: list[WorklistRow], filters: Filters) -> list[WorklistRow]:
    text = filters.text.strip().lower()
    kept = []
    for row in rows:
        if filters.status != "all" and (filters.status == "reviewed") != row.reviewed:
            continue
        if filters.flagged_only and not (row.prediction is None or row.prediction.needs_manual_check):
            continue
        if filters.tier and row.risk_tier != filters.tier:
            continue
        if filters.diagnosis and (row.prediction is None or row.prediction.predicted_class != filters.diagnosis):
            continue
        if filters.structure and not structure_seen(row.prediction, filters.structure):
            continue
        if text and text not in row.case.name.lower() and text not in (row.case.patient_id or "").lower():
            continue
        kept.append(row)
    return kept


def model_label(prediction: StoredPrediction | None, installed_weights_sha256: str | None,
                installed_version: str | None = None) -> str:
    if prediction is None:
        return ""
    if installed_weights_sha256 is None or prediction.weights_sha256 == installed_weights_sha256:
        return "current"
    if installed_version is not None and prediction.model_version.startswith(installed_version + SITE_PROFILE_MARK):
        return "site profile " + prediction.model_version.removeprefix(installed_version + SITE_PROFILE_MARK)
    return f"older model ({prediction.model_version})"


def worklist_records(rows: list[WorklistRow], installed_weights_sha256: str | None = None,
                     installed_version: str | None = None) -> list[dict]:
    """One flat record per case: what the worklist shows and the CSV export writes. `model` says whether the
    prediction was made by the installed model or an older one; `decision_made_on` names the result a decision
    was made on, which after a re-analysis is not the one in the columns before it; the `outcome_` columns say what
    the lesion turned out to be (the latest outcome entered), with the model class it counts as."""
    records = []
    for row in rows:
        p, d, o = row.prediction, row.decision, row.outcome
        records.append({
            "case": row.case.name,
            "patient": row.case.patient_id or "",
            "site": row.case.metadata.site.label,
            "age": row.case.metadata.age,
            "sex": row.case.metadata.sex or "",
            "top_diagnosis": p.predicted_class if p else "not analysed",
            "top_probability": round(float(p.probabilities[CLASSES.index(p.predicted_class)]), 4) if p else None,
            "malignancy": round(p.malignancy, 4) if p else None,
            "malignancy_spread": round(p.malignancy_spread, 4) if p else None,
            "risk_tier": TIER_LABELS.get(row.risk_tier or "", ""),
            "suspicious": bool(p.suspicious) if p else False,
            "needs_manual_check": (p.needs_manual_check if p else True),
            "prediction_set": " | ".join(p.prediction_set) if p and p.prediction_set else "",
            "flags": "; ".join(f.reason for f in p.flags) if p else "not analysed",
            "ugly_duckling": round(row.context.ugly_duckling, 3) if row.context and row.context.ugly_duckling else None,
            "status": row.status,
            "decision": d.label if d else "",
            "decision_made_on": d.made_on_text if d else "",  # the result the decision belongs to
            "decision_on_current_result": row.reviewed if d else "",
            "reviewer": d.reviewer if d else "",
            "decided_at": d.created_at.isoformat(timespec="seconds") if d else "",
            "note": d.note if d else "",
            "outcome": o.kind_label if o else "",
            "outcome_diagnosis": o.diagnosis_label if o else "",
            "outcome_class": (o.model_class or "") if o else "",
            "outcome_malignancy": o.malignancy if o else "",
            "outcome_date": o.result_date.isoformat() if o else "",
            "outcome_lab_reference": (o.lab_reference or "") if o else "",
            "model": model_label(p, installed_weights_sha256, installed_version),
            "model_version": p.model_version if p else "",
            "weights_sha256": p.weights_sha256 if p else "",
            "source": row.case.source,
        })
    return records
