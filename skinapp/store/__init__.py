"""Persistence: cases, predictions, decisions, outcomes and an append-only audit log (SQLAlchemy; SQLite or PostgreSQL)."""

from skinapp.store.limits import InvalidText
from skinapp.store.records import (
    DECISIONS,
    AuditCheck,
    AuditEntry,
    CaseRecord,
    Decision,
    DecisionConflict,
    Outcome,
    OutcomeConflict,
    OutcomeEntry,
    PredictionChanged,
    StoredCase,
    StoredPrediction,
)
from skinapp.store.setup import StoreSetupError
from skinapp.store.store import Store

__all__ = [
    "DECISIONS", "AuditCheck", "AuditEntry", "CaseRecord", "Decision", "DecisionConflict", "InvalidText",
    "Outcome", "OutcomeConflict", "OutcomeEntry", "PredictionChanged", "Store", "StoreSetupError", "StoredCase",
    "StoredPrediction",
]
