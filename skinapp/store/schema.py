"""Tables. Predictions and decisions are only ever added to, and a case only gains metadata it lacked (on the
record); the audit log refuses updates and deletes at the database level (triggers), so what happened stays
on record whoever writes to the database."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    event,
)
from sqlalchemy.schema import DDL

metadata = MetaData()

cases = Table(
    "cases", metadata,
    Column("id", Integer, primary_key=True),
    Column("content_key", String(64), nullable=False, unique=True),  # sha256 of the image pixels: one row per image
    Column("name", String(255), nullable=False),                      # the case id the clinician sees
    Column("source", Text, nullable=False),
    Column("frame", Integer),
    Column("patient_id", String(128), index=True),
    Column("lesion_id", String(128)),
    Column("study_date", String(10)),
    Column("age", Float),
    Column("sex", String(8)),
    Column("site_region", String(32)),
    Column("site_fine", String(32)),
    Column("is_dermoscopic", Boolean, nullable=False),
    Column("original_width", Integer),
    Column("original_height", Integer),
    Column("pixel_spacing_mm", JSON),
    Column("acquisition", JSON),
    Column("notes", JSON),
    Column("image_png", LargeBinary, nullable=False),   # the display-size image, lossless
    Column("thumbnail_jpeg", LargeBinary, nullable=False),
    Column("imported_at", DateTime(timezone=True), nullable=False),
    Column("imported_by", String(128), nullable=False),
)

predictions = Table(
    "predictions", metadata,
    Column("id", Integer, primary_key=True),
    Column("case_id", Integer, ForeignKey("cases.id"), nullable=False, index=True),
    Column("model_version", String(128), nullable=False),
    Column("weights_sha256", String(64), nullable=False),  # the model identity (ModelCard.identity) that made the prediction
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("predicted_class", String(8), nullable=False),
    Column("malignancy", Float, nullable=False),
    Column("temperature", Float, nullable=False, default=1.0),  # calibration applied to the probabilities
    Column("probabilities", JSON, nullable=False),
    Column("flags", JSON, nullable=False),
    Column("metadata_used", JSON, nullable=False),
    Column("arrays", LargeBinary, nullable=False),         # npz: per-view probabilities, embedding, maps
)

decisions = Table(
    "decisions", metadata,
    Column("id", Integer, primary_key=True),
    Column("case_id", Integer, ForeignKey("cases.id"), nullable=False, index=True),
    Column("reviewer", String(128), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("decision", String(32), nullable=False),
    Column("diagnosis", String(8)),
    Column("note", Text, nullable=False, default=""),
    Column("replaces_id", Integer, ForeignKey("decisions.id")),  # the decision the reviewer saw when deciding
    Column("prediction_id", Integer, ForeignKey("predictions.id")),
)

audit_log = Table(
    "audit_log", metadata,
    Column("id", Integer, primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(64), nullable=False),
    Column("case_id", Integer),
    Column("details", JSON, nullable=False),
)
Index("audit_by_case", audit_log.c.case_id)

_SQLITE_APPEND_ONLY = [
    DDL(f"CREATE TRIGGER IF NOT EXISTS audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log "
        "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END")
    for verb in ("UPDATE", "DELETE")
]
_POSTGRES_APPEND_ONLY = [
    DDL("CREATE OR REPLACE FUNCTION audit_log_refuse() RETURNS trigger AS $$ "
        "BEGIN RAISE EXCEPTION 'the audit log is append-only'; END; $$ LANGUAGE plpgsql"),
    DDL("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log"),
    DDL("CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION audit_log_refuse()"),
]
for statement in _SQLITE_APPEND_ONLY:
    event.listen(audit_log, "after_create", statement.execute_if(dialect="sqlite"))
for statement in _POSTGRES_APPEND_ONLY:
    event.listen(audit_log, "after_create", statement.execute_if(dialect="postgresql"))
