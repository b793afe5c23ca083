"""The worklist: every case with its latest prediction and decision, its patient context, most urgent first;
filters, and the flat records the worklist shows and the CSV export writes. Pure functions over stored
records: no torch, no Streamlit."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from skinapp.store import CaseRecord, Decision, Store, StoredCase, StoredPrediction
from skinapp.vocab import CLASSES
from skinapp.workflow.context import LesionContext, ugly_duckling_scores

UNANALYSED_URGENCY = 2.0        # a case the model could not analyse always needs a person first
MANUAL_CHECK_URGENCY = 0.5      # added to the malignancy probability of a flagged case
SUSPICIOUS_URGENCY = 1.0        # added above the melanoma safety net: ahead of every case below it


@dataclass(frozen=True)
class WorklistRow:
    case: StoredCase
    prediction: StoredPrediction | None
    decision: Decision | None
    thumbnail_jpeg: bytes
    context: LesionContext | None = None

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
    def urgency(self) -> float:
        """Most urgent first: above the melanoma safety net, then likely malignant, and cases the model is unsure
        about."""
        p = self.prediction
        if p is None:
            return UNANALYSED_URGENCY
        return (p.malignancy + (MANUAL_CHECK_URGENCY if p.needs_manual_check else 0.0)
                + (SUSPICIOUS_URGENCY if p.suspicious else 0.0))


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
    """Unreviewed before reviewed, then most urgent first, then oldest first."""
    contexts = patient_contexts(records)
    rows = [WorklistRow(r.case, r.prediction, r.decision, r.thumbnail_jpeg, contexts.get(r.case.id)) for r in records]
    return sorted(rows, key=lambda row: (row.reviewed, -row.urgency, row.case.id))


def worklist(store: Store, patient_id: str | None = None) -> list[WorklistRow]:
    return build_worklist(store.case_records(patient_id))


@dataclass(frozen=True)
class Filters:
    status: str = "all"            # "all", "to review", "reviewed"
    flagged_only: bool = False
    diagnosis: str | None = None   # predicted class
    text: str = ""                 # matches case name or patient id


def apply_filters(rows: list[WorklistRow], filters: Filters) -> list[WorklistRow]:
    text = filters.text.strip().lower()
    kept = []
    for row in rows:
        if filters.status != "all" and (filters.status == "reviewed") != row.reviewed:
            continue
        if filters.flagged_only and not (row.prediction is None or row.prediction.needs_manual_check):
            continue
        if filters.diagnosis and (row.prediction is None or row.prediction.predicted_class != filters.diagnosis):
            continue
        if text and text not in row.case.name.lower() and text not in (row.case.patient_id or "").lower():
            continue
        kept.append(row)
    return kept


def site_label(case: StoredCase) -> str:
    return case.metadata.site.label


def model_label(prediction: StoredPrediction | None, installed_weights_sha256: str | None) -> str:
    if prediction is None:
        return ""
    if installed_weights_sha256 is None or prediction.weights_sha256 == installed_weights_sha256:
        return "current"
    return f"older model ({prediction.model_version})"


def worklist_records(rows: list[WorklistRow], installed_weights_sha256: str | None = None) -> list[dict]:
    """One flat record per case: what the worklist shows and the CSV export writes. `model` says whether the
    prediction was made by the installed model or an older one; `decision_made_on` names the result a decision
    was made on, which after a re-analysis is not the one in the columns before it."""
    records = []
    for row in rows:
        p, d = row.prediction, row.decision
        records.append({
            "case": row.case.name,
            "patient": row.case.patient_id or "",
            "site": site_label(row.case),
            "age": row.case.metadata.age,
            "sex": row.case.metadata.sex or "",
            "top_diagnosis": p.predicted_class if p else "not analysed",
            "top_probability": round(float(p.probabilities[CLASSES.index(p.predicted_class)]), 4) if p else None,
            "malignancy": round(p.malignancy, 4) if p else None,
            "malignancy_spread": round(p.malignancy_spread, 4) if p else None,
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
            "model": model_label(p, installed_weights_sha256),
            "model_version": p.model_version if p else "",
            "weights_sha256": p.weights_sha256 if p else "",
            "source": row.case.source,
        })
    return records
