"""Persistence: cases, predictions, decisions and an append-only audit log (SQLAlchemy; SQLite or PostgreSQL)."""

from skinapp.store.store import (
    DECISIONS, AuditEntry, Decision, DecisionConflict, Store, StoredCase, StoredPrediction, WorklistRow, data_dir,
    database_url,
)

__all__ = [
    "DECISIONS", "AuditEntry", "Decision", "DecisionConflict", "Store", "StoredCase", "StoredPrediction",
    "WorklistRow", "data_dir", "database_url",
]
