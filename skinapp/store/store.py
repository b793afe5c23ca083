"""`Store`: cases, predictions, decisions and the audit trail in one database (SQLite file by default,
PostgreSQL for a clinic). Nothing is updated in place: a new decision is a new row that names the decision
it replaces and the prediction it was made on, so the history of every case stays complete. A reviewer who
decides on an out-of-date view of the case (a colleague decided, or the model analysed it again) gets a
`DecisionConflict` or `PredictionChanged` instead of a decision beside something they never saw."""

from __future__ import annotations

import datetime as dt
import io
import logging
import math
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image
from sqlalchemy import Engine, create_engine, event, func, insert, select, true
from sqlalchemy.engine import Connection, CursorResult
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from skinapp.config import audit_key_file, database_url
from skinapp.inference.prediction import Prediction
from skinapp.io.case import Case
from skinapp.io.identity import display_pixels_key
from skinapp.model.clinic_levels import ClinicLevels
from skinapp.outcomes import DIAGNOSIS_BY_CODE, OTHER
from skinapp.store.audit import CHAIN_STARTED, GENESIS, ChainCheck, check_chain, text_digest
from skinapp.store.checkpoints import CheckpointLog, checkpoint_problems, load_keys
from skinapp.store.codec import (
    as_utc,
    case_from_row,
    decision_from_row,
    metadata_columns,
    outcome_from_row,
    png_bytes,
    prediction_arrays,
    thumbnail_jpeg,
)
from skinapp.store.decoded import IDS_PER_QUERY, DecodedPredictions
from skinapp.store.digests import case_content_digest, case_metadata_digest, case_pixels_digest, row_digest
from skinapp.store.edits import (
    changes_model_input,
    checked_case_changes,
    checked_outcome_entry,
    checked_points,
    checked_ruler_length,
)
from skinapp.store.guards import sqlite_authorizer
from skinapp.store.limits import InvalidText, checked, checked_notes
from skinapp.store.record_check import record_problems
from skinapp.store.records import (
    DECISIONS,
    SCALE,
    AddedCase,
    AuditCheck,
    AuditEntry,
    CaseRecord,
    Decision,
    DecisionConflict,
    Measurement,
    Outcome,
    OutcomeConflict,
    OutcomeEntry,
    PredictionChanged,
    StoredCase,
    StoredPrediction,
)
from skinapp.store.schema import audit_log, case_edits, case_measurements, cases, decisions, outcomes, predictions
from skinapp.store.setup import (
    SYSTEM_ACTOR,
    StoreSetupError,
    connected_as_owner,
    initialise,
    insert_audit_entry,
    missing_parts,
)
from skinapp.trust.flags import Flag
from skinapp.vocab import CLASSES

log = logging.getLogger(__name__)
GUARDS_RECREATED = "database guards recreated"  # found removed when the store was opened


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_id(result: CursorResult) -> int:
    key = result.inserted_primary_key
    if key is None:
        raise RuntimeError("the database returned no id for a new row")
    return int(key[0])


_FILLABLE = [cases.c.patient_id, cases.c.lesion_id, cases.c.study_date, cases.c.age, cases.c.sex, cases.c.site_region,
             cases.c.site_fine]


def _fillable_values(case: Case) -> dict:
    meta = case.metadata
    return {"patient_id": checked("patient id", case.patient_id), "lesion_id": checked("lesion id", case.lesion_id),
            "study_date": checked("study date", case.study_date), "age": meta.age, "sex": checked("sex", meta.sex),
            "site_region": checked("site", meta.site.region), "site_fine": checked("site", meta.site.fine)}


def _checked_acquisition(case: Case) -> dict:
    return {k: checked("acquisition detail", v) if isinstance(v, str) else v
            for k, v in vars(case.acquisition).items() if v is not None}


CLINIC_LEVELS_ADOPTED, CLINIC_LEVELS_WITHDRAWN = "clinic levels adopted", "clinic levels withdrawn"
_AUDIT_LOCK = 7_346_201  # PostgreSQL advisory lock that serialises writers of the audit chain


def _sqlite_connect(connection, _record) -> None:
    connection.isolation_level = None  # transactions are begun by `_sqlite_begin`, not by the driver
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")     # readers never wait for the writer
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _sqlite_guard(connection, _record) -> None:
    connection.set_authorizer(sqlite_authorizer)


def _sqlite_begin(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE" if connection.get_execution_options().get("write") else "BEGIN")


def _engine(url: str, guarded: bool) -> Engine:
    """hide_parameters: a failed statement is logged without its values (patient data)."""
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True, hide_parameters=True)
    engine = create_engine(url, connect_args={"timeout": 10, "check_same_thread": False}, hide_parameters=True)
    event.listen(engine, "connect", _sqlite_connect)
    if guarded:
        event.listen(engine, "connect", _sqlite_guard)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


SETUP_ATTEMPTS = 6
CONCURRENT_ATTEMPTS = 4
_GIVE_WAY = {"40P01", "40001"}  # PostgreSQL: deadlock detected, serialisation failure


def _initialise_once_set_up(engine: Engine) -> None:
    """Set the database up; where several processes open a new SQLite file at once, one of them does it and the
    others, finding it locked, look again until it is done."""
    for attempt in range(SETUP_ATTEMPTS):
        try:
            initialise(engine)
            return
        except OperationalError as exc:
            if "locked" not in str(exc) or attempt == SETUP_ATTEMPTS - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
            with engine.connect() as connection:
                if not missing_parts(connection):
                    return


class Store:
    def __init__(self, engine: Engine):
        """engine: a database that is set up (`skinapp.store.setup`); `Store.open` makes sure of it."""
        self.engine = engine
        self._decoded = DecodedPredictions()
        self._keys: list[bytes] | None = None

    def _signing_key(self) -> bytes:
        """The server's key that signs each audit entry (made on first use: `SKINAPP_AUDIT_KEY_FILE`)."""
        if self._keys is None:
            self._keys = load_keys(audit_key_file())
        return self._keys[0]

    @classmethod
    def open(cls, url: str | None = None) -> Store:
        """Opens the database, creating or upgrading it first where this connection may (SQLite; PostgreSQL
        as the tables' owner). A clinic's PostgreSQL is set up once by its owner (`python -m skinapp db init`)
        and the app connects as a role that cannot rewrite the record."""
        url = url or database_url()
        engine = _engine(url, guarded=True)
        with engine.connect() as connection:
            missing = missing_parts(connection)
        if missing:
            setup = _engine(url, guarded=False)
            try:
                _initialise_once_set_up(setup)
            except ProgrammingError as exc:
                raise StoreSetupError(
                    f"the database lacks {', '.join(missing[:3])}{' …' if len(missing) > 3 else ''} and this connection "
                    "may not add them: run `python -m skinapp db init` as the role that owns the tables") from exc
            finally:
                setup.dispose()
        store = cls(engine)
        removed = [m for m in missing if "guards" in m or m.startswith("trigger ")]
        if removed and not any(m.startswith("table ") for m in missing):  # guards of a database in use went missing
            log.warning("the database's guards were missing and were put back: %s", ", ".join(removed))
            with store.write_transaction() as connection:
                store.append_audit(connection, SYSTEM_ACTOR, GUARDS_RECREATED, None, missing=removed)
        return store

    def guards_recreated_since(self, since: dt.datetime) -> list[dt.datetime]:
        """When the database's guards were found removed (and put back) since `since`: someone set them aside."""
        with self.engine.connect() as connection:
            return [as_utc(at) for at in connection.execute(select(audit_log.c.at).where(
                audit_log.c.action == GUARDS_RECREATED, audit_log.c.at >= since).order_by(audit_log.c.id)).scalars()]

    @property
    def connected_as_owner(self) -> bool:
        """PostgreSQL only: True where the app could rewrite the record (it connects as owner or superuser)."""
        with self.engine.connect() as connection:
            return connected_as_owner(connection)

    # --- writing -----------------------------------------------------------------------------------------------

    @contextmanager
    def write_transaction(self) -> Iterator[Connection]:
        """A write transaction; on SQLite it takes the write lock at once, so a read-then-write (is there a newer
        decision? then add mine) cannot interleave with another reviewer's."""
        with self.engine.connect() as connection:
            connection.execution_options(write=True)
            with connection.begin():
                yield connection

    def append_audit(self, connection: Connection, actor: str, action: str, case_id: int | None, **details) -> None:
        """Append one entry to the hash chain. Writers are serialised (SQLite: the write lock already taken;
        PostgreSQL: an advisory lock held to the end of the transaction), so each entry follows the last."""
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_AUDIT_LOCK})")
        previous = connection.execute(select(audit_log.c.entry_hash).order_by(audit_log.c.id.desc()).limit(1)).scalar()
        insert_audit_entry(connection, previous or GENESIS, actor, action, case_id, details, self._signing_key())

    def add_case(self, case: Case, actor: str) -> AddedCase:
        """The same image imported again is the same case. What it was stored with is never overwritten, but
        metadata it lacked (e.g. the patient, once a metadata CSV comes along) is filled in, on the record."""
        # The file's content key names the case; cases stored before content keys were named by their display
        # pixels, which a file that decodes as it did then still finds.
        pixels_key = display_pixels_key(case.image)
        key = case.content_key or pixels_key
        offered = _fillable_values(case)  # checked before anything is written: InvalidText names the field
        name, source, notes = checked("case name", case.name), checked("file", case.source), checked_notes(list(case.notes))
        acquisition, actor = _checked_acquisition(case), self._actor(actor)
        for attempt in range(CONCURRENT_ATTEMPTS):
            try:
                return self._add_case_once(case, actor, key, pixels_key, offered, name, source, notes, acquisition)
            except (IntegrityError, OperationalError) as exc:
                # Another import stored the same image a moment ago (PostgreSQL lets both look before either
                # writes), or the database chose this writer to give way: looking again finds the case, and this
                # import reads "already stored" like any repeat.
                retry = isinstance(exc, IntegrityError) or getattr(exc.orig, "sqlstate", None) in _GIVE_WAY
                if not retry or attempt == CONCURRENT_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def _add_case_once(self, case: Case, actor: str, key: str, pixels_key: str, offered: dict, name: str | None,
                       source: str | None, notes: list[str], acquisition: dict) -> AddedCase:
        with self.write_transaction() as connection:
            existing = connection.execute(select(*_FILLABLE, cases.c.id).where(cases.c.content_key.in_({key, pixels_key}))
                                          .order_by(cases.c.id)).mappings().first()
            if existing is not None:
                filled = {k: v for k, v in offered.items() if v is not None and existing[k] is None}
                if filled:
                    connection.execute(cases.update().where(cases.c.id == existing["id"]).values(**filled))
                    now = connection.execute(select(*_FILLABLE).where(cases.c.id == existing["id"])).mappings().one()
                    self.append_audit(connection, actor, "case metadata filled", existing["id"], fields=sorted(filled),
                                      metadata_sha256=case_metadata_digest(now))
                return AddedCase(int(existing["id"]), False, tuple(sorted(filled)))
            case_id = _new_id(connection.execute(insert(cases).values(
                content_key=key, name=name, source=source, frame=case.frame, **offered,
                is_dermoscopic=case.is_dermoscopic, original_width=case.original_size[0],
                original_height=case.original_size[1],
                pixel_spacing_mm=list(case.pixel_spacing_mm) if case.pixel_spacing_mm else None,
                acquisition=acquisition, notes=notes, image_png=png_bytes(case.image),
                thumbnail_jpeg=thumbnail_jpeg(case.image), zoom_jpeg=case.zoom_jpeg, imported_at=_now(), imported_by=actor,
                sop_instance_uid=case.sop_instance_uid,
            )))
            stored = connection.execute(select(cases).where(cases.c.id == case_id)).mappings().one()
            self.append_audit(connection, actor, "case imported", case_id, source_kind=Path(case.source).suffix.lower() or "file",
                              content_sha256=case_content_digest(stored), metadata_sha256=case_metadata_digest(stored),
                              pixels_sha256=case_pixels_digest(stored))
        return AddedCase(int(case_id), True, ())

    def add_prediction(self, case_id: int, prediction: Prediction, flags: list[Flag], weights_sha256: str,
                       actor: str) -> int:
        """Store every output of `prediction`, made by the model whose identity is `weights_sha256`."""
        actor = self._actor(actor)
        with self.write_transaction() as connection:
            prediction_id = _new_id(connection.execute(insert(predictions).values(
                case_id=case_id, model_version=prediction.model_version, weights_sha256=weights_sha256,
                created_at=_now(), predicted_class=prediction.predicted_class, malignancy=prediction.malignancy,
                temperature=prediction.temperature,
                probabilities=prediction.class_probabilities(),
                flags=[{"code": f.code, "reason": f.reason, "serious": f.serious} for f in flags],
                metadata_used=metadata_columns(prediction.metadata_used),
                arrays=prediction_arrays(prediction),
            )))
            stored = connection.execute(select(predictions).where(predictions.c.id == prediction_id)).mappings().one()
            self.append_audit(connection, actor, "prediction stored", case_id, prediction_id=prediction_id,
                              model_version=prediction.model_version, weights_sha256=weights_sha256,
                              predicted_class=prediction.predicted_class, flags=[f.code for f in flags],
                              content_sha256=row_digest(stored))
        return int(prediction_id)

    def record_decision(self, case_id: int, reviewer: str, decision: str, *, seen_prediction_id: int | None,
                        seen_decision_id: int | None = None, diagnosis: str | None = None, note: str = "") -> Decision:
        """Save a decision on the prediction the reviewer saw (`seen_prediction_id`; None: the case had none).
        `seen_decision_id` is the latest decision the reviewer saw (None: none). If someone decided since,
        nothing is written and DecisionConflict carries their decision; if the case was analysed again since,
        nothing is written and PredictionChanged says so."""
        reviewer = self._actor(reviewer)
        note = checked("note", note, multiline=True) or ""
        if decision not in DECISIONS:
            raise ValueError(f"unknown decision {decision!r}")
        if decision == "disagree" and diagnosis not in DIAGNOSIS_BY_CODE and diagnosis not in CLASSES:
            raise ValueError("a disagreement needs the diagnosis the reviewer chose")
        if decision == "disagree" and diagnosis == OTHER and not note.strip():
            raise InvalidText("“other” needs the diagnosis in words: write it in the note")
        diagnosis = diagnosis if decision == "disagree" else None
        with self.write_transaction() as connection:
            if self.engine.dialect.name != "sqlite":  # SQLite's BEGIN IMMEDIATE already serialises writers
                connection.execute(select(cases.c.id).where(cases.c.id == case_id).with_for_update())
            current = self._latest_decision(connection, case_id)
            if (current.id if current else None) != seen_decision_id:
                if current is None:  # decisions are never deleted, so the one the reviewer saw must still be there
                    raise RuntimeError(f"decision {seen_decision_id} of case {case_id} is missing from the database")
                raise DecisionConflict(current)
            shown = connection.execute(select(predictions.c.id, predictions.c.model_version, predictions.c.predicted_class)
                                       .where(predictions.c.case_id == case_id)
                                       .order_by(predictions.c.id.desc()).limit(1)).mappings().first()
            if (shown["id"] if shown else None) != seen_prediction_id:
                raise PredictionChanged(shown["id"] if shown else None)
            model_version = shown["model_version"] if shown else None
            predicted_class = shown["predicted_class"] if shown else None
            decision_id = _new_id(connection.execute(insert(decisions).values(
                case_id=case_id, reviewer=reviewer, created_at=_now(), decision=decision, diagnosis=diagnosis, note=note,
                replaces_id=seen_decision_id, prediction_id=seen_prediction_id, model_version=model_version,
                predicted_class=predicted_class,
            )))
            self.append_audit(connection, reviewer, "decision recorded", case_id, decision_id=decision_id, decision=decision,
                        diagnosis=diagnosis, replaces=seen_decision_id, previous=current.decision if current else None,
                        prediction_id=seen_prediction_id, model_version=model_version, predicted_class=predicted_class,
                        note_sha256=text_digest(note))
            recorded = self._latest_decision(connection, case_id)
            assert recorded is not None  # just inserted, in this transaction
            return recorded

    def record_outcome(self, entry: OutcomeEntry, entered_by: str, *,
                       seen_outcome_id: int | Literal["latest"] | None = "latest", via: str = "case page") -> Outcome:
        """Record what the lesion turned out to be (`skinapp.outcomes`); it replaces the case's outcome before it, which
        stays on record. `seen_outcome_id`: the case's latest outcome the person saw (None: none); if another came in
        since, nothing is written and OutcomeConflict carries it. "latest": replace whatever is latest."""
        (recorded,) = self.record_outcomes([entry], entered_by, seen={entry.case_id: seen_outcome_id}, via=via)
        return recorded

    def record_outcomes(self, entries: Sequence[OutcomeEntry], entered_by: str, *,
                        seen: dict[int, int | Literal["latest"] | None] | None = None, via: str = "import") -> list[Outcome]:
        """Record outcomes all together or not at all: each is checked first (InvalidText names the first that
        breaks a rule, ValueError an unknown case), then all are written with their audit entries in one
        transaction. Outcomes of one case follow each other in the order given. `via` is kept in the audit entries."""
        entered_by = self._actor(entered_by)
        kept = [checked_outcome_entry(e) for e in entries]
        seen = seen or {}
        with self.write_transaction() as connection:
            wanted = sorted({e.case_id for e in kept})
            known: set[int] = set()
            for start in range(0, len(wanted), IDS_PER_QUERY):
                chunk = wanted[start:start + IDS_PER_QUERY]
                query = select(cases.c.id).where(cases.c.id.in_(chunk))
                if self.engine.dialect.name != "sqlite":  # serialise writers of a case's outcomes, as for decisions
                    query = query.with_for_update()
                known.update(connection.execute(query).scalars())
            missing = [c for c in wanted if c not in known]
            if missing:
                raise ValueError(f"there is no case {missing[0]}")
            latest: dict[int, int | None] = {case_id: None for case_id in wanted}
            for start in range(0, len(wanted), IDS_PER_QUERY):
                chunk = wanted[start:start + IDS_PER_QUERY]
                latest.update(connection.execute(select(outcomes.c.case_id, func.max(outcomes.c.id))
                                                 .where(outcomes.c.case_id.in_(chunk)).group_by(outcomes.c.case_id)).all())
            for case_id, saw in seen.items():
                if saw != "latest" and latest.get(case_id) != saw:
                    current = latest.get(case_id)
                    if current is None:
                        raise RuntimeError(f"outcome {saw} of case {case_id} is missing from the database")
                    raise OutcomeConflict(self._outcome(connection, current))
            written = []
            now = _now()
            for entry in kept:
                replaces = latest[entry.case_id]
                outcome_id = _new_id(connection.execute(insert(outcomes).values(
                    case_id=entry.case_id, kind=entry.kind, diagnosis=entry.diagnosis, diagnosis_text=entry.diagnosis_text,
                    breslow_mm=entry.breslow_mm, result_date=entry.result_date, lab_reference=entry.lab_reference,
                    note=entry.note, entered_by=entered_by, entered_at=now, replaces_id=replaces)))
                self.append_audit(connection, entered_by, "outcome recorded", entry.case_id, **_outcome_details(
                    outcome_id, entry), replaces=replaces, via=via)
                latest[entry.case_id] = outcome_id
                written.append(outcome_id)
            by_id: dict[int, Outcome] = {}
            for start in range(0, len(written), IDS_PER_QUERY):
                by_id.update((r["id"], outcome_from_row(r)) for r in connection.execute(
                    select(outcomes).where(outcomes.c.id.in_(written[start:start + IDS_PER_QUERY]))).mappings())
        return [by_id[i] for i in written]

    def edit_case(self, case_id: int, editor: str, changes: dict[str, object]) -> tuple[StoredCase, bool]:
        """Correct a case's metadata (patient, lesion, age, sex, site, the date the picture was taken). The imported
        values stay in the record and the correction is a new row, audited. Returns the case as it now reads and
        whether what the model reads changed (then the case should be analysed again). Values equal to the current
        ones are not recorded."""
        editor = self._actor(editor)
        wanted = checked_case_changes(changes)
        with self.write_transaction() as connection:
            current = self._case(connection, case_id)
            if current is None:
                raise InvalidText(f"there is no case {case_id}")
            now = {"patient_id": current.patient_id, "lesion_id": current.lesion_id, "study_date": current.study_date,
                   **metadata_columns(current.metadata)}
            changed = {k: v for k, v in wanted.items() if now[k] != v}
            if changed:
                edit_id = _new_id(connection.execute(insert(case_edits).values(case_id=case_id, at=_now(), editor=editor,
                                                                               changes=changed)))
                row = connection.execute(select(case_edits).where(case_edits.c.id == edit_id)).mappings().one()
                self.append_audit(connection, editor, "case metadata corrected", case_id, fields=sorted(changed),
                                  edit_id=edit_id, content_sha256=row_digest(row))
            edited = self._case(connection, case_id)
        assert edited is not None
        return edited, changes_model_input(changed)

    def add_measurement(self, case_id: int, measured_by: str, kind: str, points: object,
                        length_mm: float | None = None) -> Measurement:
        """kind SCALE: two points on the image's ruler `length_mm` apart, which calibrates the image; kind
        DIAMETER: the lesion's longest diameter, in mm by the scale in force (the file's or a calibration)."""
        measured_by = self._actor(measured_by)
        ruler_mm = checked_ruler_length(kind, length_mm)
        with self.write_transaction() as connection:
            case = self._case(connection, case_id)
            if case is None:
                raise InvalidText(f"there is no case {case_id}")
            png = connection.execute(select(cases.c.image_png).where(cases.c.id == case_id)).scalar_one()
            width, height = Image.open(io.BytesIO(png)).size  # reads the header only
            kept = checked_points(points, (width, height))
            if ruler_mm is None:
                if case.mm_per_pixel is None:
                    raise InvalidText("the image has no scale yet: click two marks on the ruler a known distance apart first")
                ruler_mm = math.dist(*kept) * case.mm_per_pixel
            measurement_id = _new_id(connection.execute(insert(case_measurements).values(
                case_id=case_id, at=_now(), measured_by=measured_by, kind=kind, points=kept, length_mm=ruler_mm)))
            row = connection.execute(select(case_measurements).where(case_measurements.c.id == measurement_id)).mappings().one()
            self.append_audit(connection, measured_by, f"{kind} measured", case_id, measurement_id=measurement_id,
                              length_mm=round(ruler_mm, 3), content_sha256=row_digest(row))
        return _measurement(row)

    def measurements(self, case_id: int) -> list[Measurement]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(case_measurements).where(case_measurements.c.case_id == case_id)
                                      .order_by(case_measurements.c.id)).mappings()
            return [_measurement(r) for r in rows]

    @staticmethod
    def _actor(name: str) -> str:
        name = (checked("reviewer", name) or "").strip()
        if not name:
            raise ValueError("a decision or import needs the reviewer's name")
        return name

    def log_export(self, actor: str, what: str, case_ids: Iterable[int] = ()) -> None:
        actor = self._actor(actor)
        with self.write_transaction() as connection:
            self.append_audit(connection, actor, "export", None, what=what, cases=list(case_ids))

    def adopt_clinic_levels(self, levels: ClinicLevels) -> ClinicLevels:
        """Adopt risk levels refitted on this clinic's verified lesions: from now on the installed model, when its
        identity is `levels.base_identity`, runs with them (another model identity). The audit entry is the record;
        `withdraw_clinic_levels` undoes it, on the record too."""
        actor = self._actor(levels.adopted_by)
        with self.write_transaction() as connection:
            self.append_audit(connection, actor, CLINIC_LEVELS_ADOPTED, None, **levels.to_details())
        adopted = self.clinic_levels(levels.base_identity)
        assert adopted is not None
        return adopted

    def withdraw_clinic_levels(self, base_identity: str, actor: str) -> None:
        """Return the model to its card's own levels (audited); results made with the clinic's levels keep them."""
        actor = self._actor(actor)
        with self.write_transaction() as connection:
            self.append_audit(connection, actor, CLINIC_LEVELS_WITHDRAWN, None, base_identity=base_identity)

    def clinic_levels_adopted(self, base_identity: str) -> list[ClinicLevels]:
        """Every set of levels ever adopted for the model of this identity, in force or not: the cards its results
        may have been made under."""
        with self.engine.connect() as connection:
            rows = connection.execute(select(audit_log).where(audit_log.c.action == CLINIC_LEVELS_ADOPTED)
                                      .order_by(audit_log.c.id)).mappings().all()
        return [ClinicLevels.from_details(r["details"], r["actor"], as_utc(r["at"])) for r in rows
                if r["details"].get("base_identity") == base_identity]

    def clinic_levels(self, base_identity: str) -> ClinicLevels | None:
        """The levels in force for the model of this identity: the latest adoption, unless withdrawn since."""
        with self.engine.connect() as connection:
            rows = connection.execute(select(audit_log).where(audit_log.c.action.in_(
                (CLINIC_LEVELS_ADOPTED, CLINIC_LEVELS_WITHDRAWN))).order_by(audit_log.c.id.desc())).mappings()
            for row in rows:
                if row["details"].get("base_identity") != base_identity:
                    continue
                if row["action"] == CLINIC_LEVELS_WITHDRAWN:
                    return None
                return ClinicLevels.from_details(row["details"], row["actor"], as_utc(row["at"]))
        return None

    # --- reading -----------------------------------------------------------------------------------------------

    def _latest_decision(self, connection: Connection, case_id: int) -> Decision | None:
        query = select(decisions).where(decisions.c.case_id == case_id).order_by(decisions.c.id.desc()).limit(1)
        row = connection.execute(query).mappings().first()
        return decision_from_row(row) if row else None

    def latest_decision(self, case_id: int) -> Decision | None:
        with self.engine.connect() as connection:
            return self._latest_decision(connection, case_id)

    @staticmethod
    def _outcome(connection: Connection, outcome_id: int) -> Outcome:
        return outcome_from_row(connection.execute(select(outcomes).where(outcomes.c.id == outcome_id)).mappings().one())

    def outcomes(self, case_id: int) -> list[Outcome]:
        """Every outcome entered on the case, oldest first; the last is the case's outcome."""
        with self.engine.connect() as connection:
            rows = connection.execute(select(outcomes).where(outcomes.c.case_id == case_id).order_by(outcomes.c.id))
            return [outcome_from_row(r) for r in rows.mappings()]

    def latest_outcome(self, case_id: int) -> Outcome | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(outcomes).where(outcomes.c.case_id == case_id)
                                     .order_by(outcomes.c.id.desc()).limit(1)).mappings().first()
            return outcome_from_row(row) if row else None

    def cases_named(self, names: Iterable[str]) -> dict[str, list[int]]:
        """The cases each name (the case id the clinician sees) belongs to; a name may name several images."""
        wanted = sorted(set(names))
        found: dict[str, list[int]] = defaultdict(list)
        with self.engine.connect() as connection:
            for start in range(0, len(wanted), IDS_PER_QUERY):
                for name, case_id in connection.execute(select(cases.c.name, cases.c.id).where(
                        cases.c.name.in_(wanted[start:start + IDS_PER_QUERY])).order_by(cases.c.id)):
                    found[name].append(case_id)
        return dict(found)

    def existing_cases(self, case_ids: Iterable[int]) -> dict[int, str]:
        """Which of these case ids are cases, with their names."""
        wanted = sorted(set(case_ids))
        found: dict[int, str] = {}
        with self.engine.connect() as connection:
            for start in range(0, len(wanted), IDS_PER_QUERY):
                found.update(connection.execute(select(cases.c.id, cases.c.name).where(
                    cases.c.id.in_(wanted[start:start + IDS_PER_QUERY]))).all())
        return found

    def outcomes_of(self, case_ids: Iterable[int]) -> dict[int, list[Outcome]]:
        """Every outcome of these cases, oldest first (cases without one are left out)."""
        ids = sorted(set(case_ids))
        found: dict[int, list[Outcome]] = defaultdict(list)
        with self.engine.connect() as connection:
            for start in range(0, len(ids), IDS_PER_QUERY):
                for row in connection.execute(select(outcomes).where(outcomes.c.case_id.in_(ids[start:start + IDS_PER_QUERY]))
                                              .order_by(outcomes.c.id)).mappings():
                    found[row["case_id"]].append(outcome_from_row(row))
        return dict(found)

    @staticmethod
    def _latest_outcomes(connection: Connection, ids: list[int] | None) -> dict[int, Outcome]:
        latest = select(func.max(outcomes.c.id)).where(_of_cases(outcomes.c.case_id, ids)).group_by(outcomes.c.case_id)
        return {r["case_id"]: outcome_from_row(r)
                for r in connection.execute(select(outcomes).where(outcomes.c.id.in_(latest))).mappings()}

    def decisions(self, case_id: int) -> list[Decision]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(decisions).where(decisions.c.case_id == case_id).order_by(decisions.c.id))
            return [decision_from_row(r) for r in rows.mappings()]

    @staticmethod
    def _corrections(connection: Connection, ids: list[int] | None) -> tuple[dict[int, list[dict]], dict[int, float]]:
        """Per case (ids None: every case): the metadata corrections in order, and the pixel size of its latest
        ruler calibration."""
        edits: dict[int, list[dict]] = defaultdict(list)
        for case_id, changes in connection.execute(select(case_edits.c.case_id, case_edits.c.changes)
                                                   .where(_of_cases(case_edits.c.case_id, ids)).order_by(case_edits.c.id)):
            edits[case_id].append(changes)
        latest = (select(func.max(case_measurements.c.id)).where(_of_cases(case_measurements.c.case_id, ids),
                                                                  case_measurements.c.kind == SCALE)
                  .group_by(case_measurements.c.case_id))
        scales = {m.case_id: m.length_mm / m.length_px for m in map(_measurement, connection.execute(
            select(case_measurements).where(case_measurements.c.id.in_(latest))).mappings())}
        return edits, scales

    def _case(self, connection: Connection, case_id: int) -> StoredCase | None:
        row = connection.execute(select(*_CASE_COLUMNS).where(cases.c.id == case_id)).mappings().first()
        if row is None:
            return None
        edits, scales = self._corrections(connection, [case_id])
        return case_from_row(row, edits.get(case_id, ()), scales.get(case_id))

    def case(self, case_id: int) -> StoredCase | None:
        """The case as it now reads: its imported values with a reviewer's corrections on top."""
        with self.engine.connect() as connection:
            return self._case(connection, case_id)

    def known_sop_instance_uids(self, uids: Iterable[str], analysed_by: str | None = None) -> set[str]:
        """Those of `uids` whose image is already a case: a PACS pull does not fetch them again. With
        `analysed_by` (a model identity), only those whose latest result that model made: a case left without one
        (the model could not be asked) is fetched again, and the import analyses it."""
        wanted, known = list(dict.fromkeys(uids)), set[str]()
        latest = (select(predictions.c.case_id, func.max(predictions.c.id).label("id"))
                  .group_by(predictions.c.case_id).subquery())
        with self.engine.connect() as connection:
            for start in range(0, len(wanted), 500):
                query = select(cases.c.sop_instance_uid).where(cases.c.sop_instance_uid.in_(wanted[start:start + 500]))
                if analysed_by is not None:
                    query = (query.join(latest, latest.c.case_id == cases.c.id)
                             .join(predictions, predictions.c.id == latest.c.id)
                             .where(predictions.c.weights_sha256 == analysed_by))
                known.update(connection.execute(query).scalars())
        return known

    def case_image(self, case_id: int) -> np.ndarray:
        with self.engine.connect() as connection:
            blob = connection.execute(select(cases.c.image_png).where(cases.c.id == case_id)).scalar_one()
        return np.asarray(Image.open(io.BytesIO(blob)).convert("RGB"))

    def zoom_jpeg(self, case_id: int) -> bytes | None:
        """The larger copy for zooming in (JPEG, up to 2048 px), where the file had more pixels than the image."""
        with self.engine.connect() as connection:
            return connection.execute(select(cases.c.zoom_jpeg).where(cases.c.id == case_id)).scalar()

    def latest_weights(self, case_id: int) -> str | None:
        """The model identity of the case's latest prediction (None: never analysed), without loading it."""
        with self.engine.connect() as connection:
            return connection.execute(select(predictions.c.weights_sha256).where(predictions.c.case_id == case_id)
                                      .order_by(predictions.c.id.desc()).limit(1)).scalar()

    def latest_prediction(self, case_id: int) -> StoredPrediction | None:
        with self.engine.connect() as connection:
            latest = connection.execute(select(predictions.c.id).where(predictions.c.case_id == case_id)
                                        .order_by(predictions.c.id.desc()).limit(1)).scalar()
            return self._decoded.by_id(connection, [latest])[latest] if latest is not None else None

    def prediction(self, prediction_id: int) -> StoredPrediction | None:
        with self.engine.connect() as connection:
            return self._decoded.by_id(connection, [prediction_id]).get(prediction_id)

    def decided_since(self, since: dt.datetime | None = None) -> list[int]:
        """The cases with a decision recorded at or after `since` (None: ever), oldest decision first."""
        query = select(decisions.c.case_id, func.min(decisions.c.created_at).label("first")).group_by(decisions.c.case_id)
        if since is not None:
            query = query.where(decisions.c.created_at >= since)
        with self.engine.connect() as connection:
            return [int(r.case_id) for r in connection.execute(query.order_by("first", decisions.c.case_id))]

    def case_records(self, patient_id: str | None = None, lesion_id: str | None = None) -> list[CaseRecord]:
        """Every case (or one patient's, or one lesion's, as corrected) with its latest prediction, decision and
        outcome, in import order."""
        with self.engine.connect() as connection:
            query = select(*_CASE_COLUMNS, cases.c.thumbnail_jpeg)
            corrected = select(case_edits.c.case_id)  # a correction may have moved a case to or from the one asked for
            if patient_id is not None:
                query = query.where((cases.c.patient_id == patient_id) | cases.c.id.in_(corrected))
            if lesion_id is not None:
                query = query.where((cases.c.lesion_id == lesion_id) | cases.c.id.in_(corrected))
            case_rows = list(connection.execute(query.order_by(cases.c.id)).mappings())
            every_case = patient_id is None and lesion_id is None  # no list of ids: a large store has too many to bind
            edits, scales = self._corrections(connection, None if every_case else [r["id"] for r in case_rows])
            stored = {r["id"]: case_from_row(r, edits.get(r["id"], ()), scales.get(r["id"])) for r in case_rows}
            case_rows = [r for r in case_rows if (patient_id is None or stored[r["id"]].patient_id == patient_id)
                         and (lesion_id is None or stored[r["id"]].lesion_id == lesion_id)]
            ids = None if every_case else [r["id"] for r in case_rows]
            latest_p = {case_id: prediction_id for case_id, prediction_id in connection.execute(
                select(predictions.c.case_id, func.max(predictions.c.id)).where(_of_cases(predictions.c.case_id, ids))
                .group_by(predictions.c.case_id))}
            latest_d = (select(func.max(decisions.c.id)).where(_of_cases(decisions.c.case_id, ids))
                        .group_by(decisions.c.case_id))
            decoded = self._decoded.by_id(connection, latest_p.values())
            decision_rows = connection.execute(select(decisions).where(decisions.c.id.in_(latest_d))).mappings()
            by_case_p = {case_id: decoded[prediction_id] for case_id, prediction_id in latest_p.items()}
            by_case_d = {r["case_id"]: decision_from_row(r) for r in decision_rows}
            by_case_o = self._latest_outcomes(connection, ids)
        return [CaseRecord(stored[r["id"]], by_case_p.get(r["id"]), by_case_d.get(r["id"]), r["thumbnail_jpeg"],
                           by_case_o.get(r["id"])) for r in case_rows]

    def warm(self) -> None:
        """Decodes the latest prediction of every case ahead of the first worklist (run at app start)."""
        with self.engine.connect() as connection:
            latest = connection.execute(select(func.max(predictions.c.id)).group_by(predictions.c.case_id)).scalars()
            self._decoded.by_id(connection, list(latest))

    def reviewed_cases(self, case_ids: Iterable[int]) -> set[int]:
        """Which of these cases have a decision on their latest result (what the worklist calls reviewed),
        without loading the cases themselves."""
        ids = list(case_ids)
        reviewed: set[int] = set()
        with self.engine.connect() as connection:
            for start in range(0, len(ids), IDS_PER_QUERY):
                chunk = ids[start:start + IDS_PER_QUERY]
                latest_p = select(predictions.c.case_id, func.max(predictions.c.id)).where(
                    predictions.c.case_id.in_(chunk)).group_by(predictions.c.case_id)
                latest_d = (select(func.max(decisions.c.id)).where(decisions.c.case_id.in_(chunk))
                            .group_by(decisions.c.case_id))
                latest_result = {case_id: prediction_id for case_id, prediction_id in connection.execute(latest_p)}
                decided_on = connection.execute(select(decisions.c.case_id, decisions.c.prediction_id).where(
                    decisions.c.id.in_(latest_d))).all()
                reviewed |= {case_id for case_id, prediction_id in decided_on if latest_result.get(case_id) == prediction_id}
        return reviewed

    def audit_entries(self, case_id: int | None = None) -> list[AuditEntry]:
        with self.engine.connect() as connection:
            query = select(audit_log).order_by(audit_log.c.id)
            if case_id is not None:
                query = query.where(audit_log.c.case_id == case_id)
            return [AuditEntry(r["id"], as_utc(r["at"]), r["actor"], r["action"], r["case_id"], r["details"])
                    for r in connection.execute(query).mappings()]

    def verify_audit(self, checkpoints: CheckpointLog | None = None, pixels: bool = True,
                     records: bool = True) -> AuditCheck:
        """The hash chain; every case, prediction, measurement, correction, decision and outcome against the audit
        entry written with it (a row edited outside the application no longer matches its entry; `pixels`: the
        cases' pictures too, the longest part); and, given the checkpoint log, the chain against every signed
        checkpoint (a cut tail or a recomputed chain). `records` false: the chain, decisions and outcomes only (a
        quick check, for repeating often)."""
        with self.engine.connect() as connection:
            rows = connection.execute(select(audit_log).order_by(audit_log.c.id)).mappings().all()
            decision_rows = {r["id"]: r for r in connection.execute(select(decisions)).mappings()}
            outcome_rows = [outcome_from_row(r) for r in connection.execute(select(outcomes).order_by(outcomes.c.id)).mappings()]
            stored_rows = record_problems(connection, rows, pixels) if records else []
        signed, unsigned = checkpoints.read() if checkpoints is not None else ([], [])
        keys = self._keys if self._keys is not None else load_keys(audit_key_file(), create=False)
        chain: ChainCheck = check_chain(rows, heads_at={c.entries for c in signed}, keys=keys)
        problems = [*chain.problems, *unsigned, *checkpoint_problems(signed, chain.entries, chain.heads_at)]
        if not keys and any(r["entry_mac"] for r in rows):
            problems.append(f"the audit trail is signed, but this server has no key to check it with "
                            f"({audit_key_file()} is missing)")
        recorded: dict[int, dict] = {}
        sealed_decisions = 0
        for row in rows:
            if row["action"] == CHAIN_STARTED:
                sealed_decisions = int(row["details"].get("decisions_before", 0))
            elif row["action"] == "decision recorded" and "decision_id" in row["details"]:
                recorded[int(row["details"]["decision_id"])] = {**row["details"], "actor": row["actor"]}
        for decision_id, row in sorted(decision_rows.items()):
            entry = recorded.get(decision_id)
            if entry is None:
                if decision_id > sealed_decisions:
                    problems.append(f"decision {decision_id} has no audit entry: it was written outside the application")
                continue
            stored = {"actor": row["reviewer"], "decision": row["decision"], "diagnosis": row["diagnosis"],
                      "prediction_id": row["prediction_id"], "note_sha256": text_digest(row["note"] or "")}
            if any(entry.get(k) != v for k, v in stored.items()):
                problems.append(f"decision {decision_id} differs from its audit entry: it was altered")
        problems += [f"decision {d} named in the audit trail is missing" for d in sorted(set(recorded) - set(decision_rows))]
        problems += _outcome_problems(rows, outcome_rows)
        problems += stored_rows
        return AuditCheck(chain.entries, chain.before_chain, len(decision_rows), chain.head, tuple(problems),
                          len(outcome_rows), len(signed))


def _outcome_details(outcome_id: int, entry: Outcome | OutcomeEntry) -> dict:
    """What an outcome's audit entry holds of it: enough to prove the row unchanged; free texts as digests."""
    return {"outcome_id": outcome_id, "kind": entry.kind, "diagnosis": entry.diagnosis, "breslow_mm": entry.breslow_mm,
            "result_date": entry.result_date.isoformat(), "lab_reference_sha256": text_digest(entry.lab_reference or ""),
            "diagnosis_text_sha256": text_digest(entry.diagnosis_text or ""), "note_sha256": text_digest(entry.note)}


def _outcome_problems(audit_rows: Sequence, outcome_rows: list[Outcome]) -> list[str]:
    recorded = {int(r["details"]["outcome_id"]): r for r in audit_rows
                if r["action"] == "outcome recorded" and "outcome_id" in r["details"]}
    problems = []
    for outcome in outcome_rows:
        entry = recorded.get(outcome.id)
        if entry is None:
            problems.append(f"outcome {outcome.id} has no audit entry: it was written outside the application")
            continue
        stored = {**_outcome_details(outcome.id, outcome), "replaces": outcome.replaces_id}
        if (entry["actor"] != outcome.entered_by or entry["case_id"] != outcome.case_id
                or any(entry["details"].get(k) != v for k, v in stored.items())):
            problems.append(f"outcome {outcome.id} differs from its audit entry: it was altered")
    present = {o.id for o in outcome_rows}
    return problems + [f"outcome {o} named in the audit trail is missing" for o in sorted(set(recorded) - present)]


def _of_cases(column, ids: list[int] | None):
    """A filter on a case id column: these cases, or every case (None)."""
    return true() if ids is None else column.in_(ids)


def _measurement(row) -> Measurement:
    (x0, y0), (x1, y1) = row["points"]
    return Measurement(row["id"], row["case_id"], as_utc(row["at"]), row["measured_by"], row["kind"],
                       ((x0, y0), (x1, y1)), row["length_mm"])


_CASE_COLUMNS = [c for c in cases.c if c.name not in ("image_png", "thumbnail_jpeg", "zoom_jpeg", "content_key")]


