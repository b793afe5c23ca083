"""Persistence: cases, predictions, decisions and an append-only audit log (SQLAlchemy; SQLite or PostgreSQL)."""

from skinapp.store.records import (
    DECISIONS,
    AuditEntry,
    CaseRecord,
    Decision,
    DecisionConflict,
    StoredCase,
    StoredPrediction,
)
from skinapp.store.store import Store

__all__ = [
    "DECISIONS", "AuditEntry", "CaseRecord", "Decision", "DecisionConflict", "Store", "StoredCase", "StoredPrediction",
]
