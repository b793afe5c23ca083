"""What the database itself refuses, so that the record holds whoever writes to it.

- Predictions, decisions, outcomes, audit entries, metadata corrections, measurements and site profiles are
  append-only: no UPDATE, DELETE, TRUNCATE, and no INSERT that would replace an existing row (SQLite's
  `INSERT OR REPLACE`, an UPSERT).
- A case is never deleted or replaced and only gains metadata it lacked (a reviewer's correction is a new row
  in `case_edits`, the imported value stays); a user account is never deleted.
- SQLite: the application's own connections also run under an authorizer that refuses DROP, ALTER, new
  triggers, ATTACH and `PRAGMA writable_schema`, so not even SQL run through the app can remove the triggers.
- PostgreSQL: the tables belong to an owner role; the application connects as a role that may only read,
  insert, and fill in the case columns that may be filled (`grant_statements`). It cannot TRUNCATE, ALTER,
  DROP or disable a trigger, because only a table's owner may.
"""

from __future__ import annotations

import re
import sqlite3

from sqlalchemy import JSON

from skinapp.store.schema import APPEND_ONLY, FILLABLE_CASE_COLUMNS, USER_UPDATABLE_COLUMNS, cases, users

_MESSAGES = {"audit_log": "the audit log is append-only", "decisions": "decisions are append-only",
             "predictions": "predictions are append-only",
             "case_edits": "metadata corrections are append-only", "case_measurements": "measurements are append-only",
             "outcomes": "outcomes are append-only (a correction is a new outcome)",
             "cases": "a stored case is never removed or replaced",
             "users": "a user account is never removed (disable it instead)",
             "site_profiles": "a site profile is never changed or removed (retire it instead)"}
_IMMUTABLE_CASE = [c.name for c in cases.c if c.name not in FILLABLE_CASE_COLUMNS]
_IMMUTABLE_USER = [c.name for c in users.c if c.name not in USER_UPDATABLE_COLUMNS]
_UNIQUE = {"cases": ("id", "content_key"), "users": ("id", "username"), "site_profiles": ("id", "identity")}


def _sqlite_raise(message: str) -> str:
    return f"BEGIN SELECT RAISE(ABORT, '{message}'); END"


def sqlite_statements() -> list[str]:
    statements = []
    for table, message in _MESSAGES.items():
        keys = " OR ".join(f"{k} = NEW.{k}" for k in _UNIQUE.get(table, ("id",)))
        statements.append(f"CREATE TRIGGER IF NOT EXISTS {table}_no_replace BEFORE INSERT ON {table} "
                          f"WHEN EXISTS (SELECT 1 FROM {table} WHERE {keys}) {_sqlite_raise(message)}")
        statements.append(f"CREATE TRIGGER IF NOT EXISTS {table}_no_delete BEFORE DELETE ON {table} {_sqlite_raise(message)}")
        if table in APPEND_ONLY:
            statements.append(f"CREATE TRIGGER IF NOT EXISTS {table}_no_update BEFORE UPDATE ON {table} "
                              f"{_sqlite_raise(message)}")
    changed = " OR ".join([*(f"NEW.{c} IS NOT OLD.{c}" for c in _IMMUTABLE_CASE),
                           *(f"(OLD.{c} IS NOT NULL AND NEW.{c} IS NOT OLD.{c})" for c in FILLABLE_CASE_COLUMNS)])
    statements.append(f"CREATE TRIGGER IF NOT EXISTS cases_fill_only BEFORE UPDATE ON cases WHEN {changed} "
                      f"{_sqlite_raise('a stored case only gains metadata it lacked')}")
    changed_user = " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in _IMMUTABLE_USER)
    statements.append(f"CREATE TRIGGER IF NOT EXISTS users_keep_identity BEFORE UPDATE ON users WHEN {changed_user} "
                      f"{_sqlite_raise('a user name never changes')}")
    return statements


SQLITE_TRIGGER_COUNT = len(sqlite_statements())


def postgres_statements() -> list[str]:
    statements = [
        "CREATE OR REPLACE FUNCTION skinapp_refuse() RETURNS trigger AS $$ BEGIN "
        "RAISE EXCEPTION USING MESSAGE = TG_ARGV[0]; END; $$ LANGUAGE plpgsql",
    ]
    def distinct(c: str) -> str:
        cast = "::text" if isinstance(cases.c[c].type, JSON) else ""  # json has no equality operator: compare the text
        return f"NEW.{c}{cast} IS DISTINCT FROM OLD.{c}{cast}"

    case_changed = " OR ".join([*(distinct(c) for c in _IMMUTABLE_CASE),
                                *(f"(OLD.{c} IS NOT NULL AND NEW.{c} IS DISTINCT FROM OLD.{c})" for c in FILLABLE_CASE_COLUMNS)])
    user_changed = " OR ".join(f"NEW.{c} IS DISTINCT FROM OLD.{c}" for c in _IMMUTABLE_USER)
    for name, condition, message in (("skinapp_case_fill_only", case_changed, "a stored case only gains metadata it lacked"),
                                     ("skinapp_user_identity", user_changed, "a user name never changes")):
        statements.append(f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger AS $$ BEGIN IF {condition} THEN "
                          f"RAISE EXCEPTION '{message}'; END IF; RETURN NEW; END; $$ LANGUAGE plpgsql")
    for table, message in _MESSAGES.items():
        row_ops = "UPDATE OR DELETE" if table in APPEND_ONLY else "DELETE"
        for trigger, timing in ((f"skinapp_{table}_rows", f"BEFORE {row_ops} ON {table} FOR EACH ROW"),
                                (f"skinapp_{table}_truncate", f"BEFORE TRUNCATE ON {table} FOR EACH STATEMENT")):
            statements.append(f"DROP TRIGGER IF EXISTS {trigger} ON {table}")
            statements.append(f"CREATE TRIGGER {trigger} {timing} EXECUTE FUNCTION skinapp_refuse('{message}')")
    for trigger, table, function in (("skinapp_cases_fill_only", "cases", "skinapp_case_fill_only"),
                                     ("skinapp_users_identity", "users", "skinapp_user_identity")):
        statements.append(f"DROP TRIGGER IF EXISTS {trigger} ON {table}")
        statements.append(f"CREATE TRIGGER {trigger} BEFORE UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION {function}()")
    statements.append("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")  # the trigger of earlier versions
    return statements


POSTGRES_TRIGGERS = sorted({s.split()[2] for s in postgres_statements() if s.startswith("CREATE TRIGGER")})

_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def grant_statements(app_role: str) -> list[str]:
    """What the application's role may do on PostgreSQL: read everything, insert, fill in a case's missing
    metadata and manage user accounts. Nothing else (run by the tables' owner)."""
    if not _ROLE_NAME.match(app_role):
        raise ValueError(f"{app_role!r} is not a plain PostgreSQL role name (lower-case letters, digits, _)")
    tables = ", ".join(_MESSAGES)
    return [
        f"REVOKE ALL ON {tables}, sessions, review_queues FROM {app_role}",
        f"GRANT USAGE ON SCHEMA public TO {app_role}",
        f"GRANT SELECT, INSERT ON {tables} TO {app_role}",
        f"GRANT UPDATE ({', '.join(FILLABLE_CASE_COLUMNS)}) ON cases TO {app_role}",
        f"GRANT UPDATE ({', '.join(USER_UPDATABLE_COLUMNS)}) ON users TO {app_role}",
        f"GRANT SELECT, INSERT, UPDATE (ended_at) ON sessions TO {app_role}",
        f"GRANT SELECT, INSERT ON review_queues TO {app_role}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {app_role}",
    ]


_DENIED_ACTIONS = frozenset({
    sqlite3.SQLITE_DROP_TABLE, sqlite3.SQLITE_DROP_TEMP_TABLE, sqlite3.SQLITE_DROP_TRIGGER,
    sqlite3.SQLITE_DROP_TEMP_TRIGGER, sqlite3.SQLITE_DROP_INDEX, sqlite3.SQLITE_DROP_VIEW, sqlite3.SQLITE_ALTER_TABLE,
    sqlite3.SQLITE_CREATE_TRIGGER, sqlite3.SQLITE_CREATE_TEMP_TRIGGER, sqlite3.SQLITE_ATTACH,
    sqlite3.SQLITE_CREATE_VTABLE, sqlite3.SQLITE_DROP_VTABLE,
})
_DENIED_PRAGMAS = frozenset({"writable_schema", "foreign_keys", "ignore_check_constraints", "recursive_triggers"})


def sqlite_authorizer(action: int, arg1: str | None, arg2: str | None, _database: str | None, _trigger: str | None) -> int:
    """Installed on the application's SQLite connections once the schema is in place: the triggers then
    cannot be removed or worked around through them (rows themselves are refused by the triggers, which
    say why)."""
    if action in _DENIED_ACTIONS:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_PRAGMA and (arg1 or "").lower() in _DENIED_PRAGMAS and arg2 is not None:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK
