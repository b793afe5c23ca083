"""Persistence: cases, predictions, decisions and an append-only audit log (SQLAlchemy; SQLite or PostgreSQL)."""

from skinapp.store.limits import InvalidText
from skinapp.store.records import (
    DECISIONS,
    AuditCheck,
    AuditEntry,
    CaseRecord,
    Decision,
    DecisionConflict,
    PredictionChanged,
    StoredCase,
    StoredPrediction,
)
from skinapp.store.setup import StoreSetupError
from skinapp.store.store import Store

__all__ = [
    "DECISIONS", "AuditCheck", "AuditEntry", "CaseRecord", "Decision", "DecisionConflict", "InvalidText",
    "PredictionChanged", "Store", "StoreSetupError", "StoredCase", "StoredPrediction",
]
