"""Creating and upgrading the database: tables, the columns later versions added, the guards, the start of the
audit chain and, on PostgreSQL, what the application's role may do. Run by whoever owns the tables: the app
itself for its own SQLite file, `python -m skinapp db init` as the owner role for a clinic's PostgreSQL."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, create_engine, func, insert, inspect, select
from sqlalchemy.engine import Connection

from skinapp.store.audit import CHAIN_STARTED, GENESIS, entry_hash, entry_mac
from skinapp.store.guards import (
    POSTGRES_TRIGGERS,
    SQLITE_TRIGGER_COUNT,
    grant_statements,
    postgres_statements,
    sqlite_statements,
)
from skinapp.store.schema import audit_log, decisions, metadata

SYSTEM_ACTOR = "skinapp"


class StoreSetupError(RuntimeError):
    """The database is not ready for this version and this connection may not make it so."""


def missing_parts(connection: Connection) -> list[str]:
    """Tables, columns and guards this version needs that the database lacks (empty: ready)."""
    inspector = inspect(connection)
    existing = set(inspector.get_table_names())
    missing = [f"table {t.name}" for t in metadata.sorted_tables if t.name not in existing]
    for table in metadata.sorted_tables:
        if table.name in existing:
            have = {c["name"] for c in inspector.get_columns(table.name)}
            missing += [f"column {table.name}.{c.name}" for c in table.c if c.name not in have]
    if connection.dialect.name == "sqlite":
        count = connection.exec_driver_sql("SELECT count(*) FROM sqlite_master WHERE type = 'trigger'").scalar()
        if (count or 0) < SQLITE_TRIGGER_COUNT:
            missing.append("the append-only guards")
    elif connection.dialect.name == "postgresql":
        present = {r[0] for r in connection.exec_driver_sql("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")}
        missing += [f"trigger {t}" for t in POSTGRES_TRIGGERS if t not in present]
        disabled = connection.exec_driver_sql(
            "SELECT tgname FROM pg_trigger WHERE left(tgname, 8) = 'skinapp_' AND tgenabled = 'D'").scalars().all()
        missing += [f"trigger {t} (disabled)" for t in disabled]
    if "audit_log" in existing and not missing:
        # One statement: counted apart, an entry written in between by another process would look unchained.
        rows, chained = connection.execute(select(func.count(), func.count(audit_log.c.entry_hash))).one()
        if rows and not chained:
            missing.append("the start of the audit chain")
    return missing


def _add_missing_columns(connection: Connection) -> None:
    inspector = inspect(connection)
    for table in metadata.sorted_tables:
        have = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.c:
            if column.name not in have:  # every column added after a release is nullable
                kind = column.type.compile(dialect=connection.dialect)
                connection.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}")


def _start_chain(connection: Connection) -> None:
    """Seal the entries of an older database under the first chained entry."""
    rows = connection.execute(select(audit_log).order_by(audit_log.c.id)).mappings().all()
    if not rows or any(r["entry_hash"] is not None for r in rows):
        return
    previous = GENESIS
    for r in rows:
        previous = entry_hash(previous, r["at"], r["actor"], r["action"], r["case_id"], r["details"])
    latest_decision = connection.execute(select(func.max(decisions.c.id))).scalar()
    insert_audit_entry(connection, previous, SYSTEM_ACTOR, CHAIN_STARTED, None,
                       {"entries_before": len(rows), "decisions_before": latest_decision or 0})


def insert_audit_entry(connection: Connection, previous: str, actor: str, action: str, case_id: int | None,
                       details: dict, key: bytes | None = None) -> None:
    """Write one entry chained to `previous` (the caller holds the lock that makes `previous` the last one), signed
    with the server's `key` where given."""
    at = dt.datetime.now(dt.UTC)
    hashed = entry_hash(previous, at, actor, action, case_id, details)
    connection.execute(insert(audit_log).values(
        at=at, actor=actor, action=action, case_id=case_id, details=details, prev_hash=previous, entry_hash=hashed,
        entry_mac=entry_mac(key, hashed) if key is not None else None))


def initialise(engine: Engine, app_role: str | None = None) -> list[str]:
    """Create or upgrade everything; idempotent. Returns what was added or changed."""
    with engine.begin() as connection:
        done = missing_parts(connection)
        metadata.create_all(connection)
        _add_missing_columns(connection)
        dialect = connection.dialect.name
        guards = sqlite_statements() if dialect == "sqlite" else postgres_statements() if dialect == "postgresql" else []
        for statement in guards:
            connection.exec_driver_sql(statement)
        if app_role is not None:
            if dialect != "postgresql":
                raise StoreSetupError("an application role only exists on PostgreSQL")
            for statement in grant_statements(app_role):
                connection.exec_driver_sql(statement)
            done.append(f"privileges of {app_role}")
        _start_chain(connection)
    return done


def initialise_url(url: str, app_role: str | None = None) -> list[str]:
    engine = create_engine(url, hide_parameters=True)
    try:
        return initialise(engine, app_role)
    finally:
        engine.dispose()


def connected_as_owner(connection: Connection) -> bool:
    """PostgreSQL: whether this connection owns the tables or is a superuser, so it could rewrite the record."""
    if connection.dialect.name != "postgresql":
        return False
    return bool(connection.exec_driver_sql(
        "SELECT r.rolsuper OR t.tableowner = current_user FROM pg_roles r, pg_tables t "
        "WHERE r.rolname = current_user AND t.tablename = 'audit_log'").scalar())
