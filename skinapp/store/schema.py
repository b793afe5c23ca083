"""Tables. Predictions, decisions, outcomes and audit entries are only ever added to, and a case only gains metadata it
lacked (on the record). `skinapp.store.guards` makes the database itself refuse anything else."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
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
)

metadata = MetaData()

cases = Table(
    "cases", metadata,
    Column("id", Integer, primary_key=True),
    Column("content_key", String(64), nullable=False, unique=True),  # io.identity: one row per image content
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
    Column("zoom_jpeg", LargeBinary),  # up to 2048 px where the file had more pixels than image_png (newer imports)
    Column("sop_instance_uid", String(64), index=True),  # the DICOM image's own UID: how the PACS finds it (newer imports)
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
    Column("prediction_id", Integer, ForeignKey("predictions.id")),  # the prediction the reviewer saw when deciding
    Column("model_version", String(128)),                            # …its model
    Column("predicted_class", String(8)),                            # …and its call
)

case_edits = Table(  # a reviewer's corrections of a case's metadata; the imported values stay in `cases`
    "case_edits", metadata,
    Column("id", Integer, primary_key=True),
    Column("case_id", Integer, ForeignKey("cases.id"), nullable=False, index=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("editor", String(128), nullable=False),
    Column("changes", JSON, nullable=False),    # {column: new value or null}, columns of EDITABLE_CASE_COLUMNS
)

case_measurements = Table(  # lengths a reviewer measured on the stored image
    "case_measurements", metadata,
    Column("id", Integer, primary_key=True),
    Column("case_id", Integer, ForeignKey("cases.id"), nullable=False, index=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("measured_by", String(128), nullable=False),
    Column("kind", String(16), nullable=False),   # "scale": a known length on the ruler; "diameter": the lesion's
    Column("points", JSON, nullable=False),       # [[x, y], [x, y]] in the stored image's pixels
    Column("length_mm", Float, nullable=False),   # scale: as the reviewer gave it; diameter: by the scale then in force
)

outcomes = Table(  # what the lesion turned out to be; a correction is a new row naming the one it replaces
    "outcomes", metadata,
    Column("id", Integer, primary_key=True),
    Column("case_id", Integer, ForeignKey("cases.id"), nullable=False, index=True),
    Column("kind", String(16), nullable=False),          # skinapp.outcomes.OUTCOME_KINDS
    Column("diagnosis", String(8)),                      # a code of skinapp.outcomes.DIAGNOSES; set for histopathology
    Column("diagnosis_text", Text),                      # the diagnosis in words, for "other"
    Column("breslow_mm", Float),                         # invasive melanoma only
    Column("result_date", Date, nullable=False),
    Column("lab_reference", String(64)),
    Column("note", Text, nullable=False, default=""),
    Column("entered_by", String(128), nullable=False),
    Column("entered_at", DateTime(timezone=True), nullable=False),
    Column("replaces_id", Integer, ForeignKey("outcomes.id")),  # the case's outcome before this one, if any
)

audit_log = Table(
    "audit_log", metadata,
    Column("id", Integer, primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(64), nullable=False),
    Column("case_id", Integer),
    Column("details", JSON, nullable=False),
    Column("prev_hash", String(64)),   # the hash chain (skinapp.store.audit); empty only on entries older than it
    Column("entry_hash", String(64)),
    Column("entry_mac", String(64)),   # HMAC of entry_hash under the server's key (`checkpoints.py`); empty on older entries
)
Index("audit_by_case", audit_log.c.case_id)

users = Table(
    "users", metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("display_name", String(128), nullable=False),  # what decisions and imports record
    Column("role", String(16), nullable=False),
    Column("password_hash", String(255), nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

sessions = Table(  # signed-in browser sessions; the browser holds the token, the database only its hash
    "sessions", metadata,
    Column("id", Integer, primary_key=True),
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True)),
)

review_queues = Table(  # each reviewer's queue as they entered it from the worklist (`queues.py`); latest wins
    "review_queues", metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(64), nullable=False, index=True),
    Column("case_ids", JSON, nullable=False),
    Column("entered_at", DateTime(timezone=True), nullable=False),
)

site_profiles = Table(  # a clinic's site profiles (`skinapp.inference.site`); retiring one is an audit entry
    "site_profiles", metadata,
    Column("id", Integer, primary_key=True),
    Column("identity", String(64), nullable=False, unique=True),   # SiteProfile.identity
    Column("name", String(128), nullable=False),
    Column("model_identity", String(64), nullable=False, index=True),  # the model it was estimated for
    Column("n_images", Integer, nullable=False),
    Column("source", Text, nullable=False),                         # what it was estimated on, in words
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("data", LargeBinary, nullable=False),                    # the profile file (safetensors)
)

APPEND_ONLY = ("audit_log", "decisions", "predictions", "case_edits", "case_measurements", "outcomes", "site_profiles")
FILLABLE_CASE_COLUMNS = ("patient_id", "lesion_id", "study_date", "age", "sex", "site_region", "site_fine")
EDITABLE_CASE_COLUMNS = ("patient_id", "lesion_id", "age", "sex", "site_region", "site_fine", "study_date")
USER_UPDATABLE_COLUMNS = ("display_name", "role", "password_hash", "disabled")

