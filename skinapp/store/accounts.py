"""User accounts and signed-in sessions. Passwords are kept only as Argon2id hashes (argon2-cffi); a session
is a random token the browser keeps in a cookie, of which the database keeps only the SHA-256. Every sign-in,
failed sign-in, sign-out and change to an account is in the audit trail."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, insert, select, update

from skinapp.store.limits import InvalidText, checked
from skinapp.store.schema import audit_log, sessions, users
from skinapp.store.store import Store

ROLES = {"reviewer": "reviews cases, records decisions, imports and exports",
         "admin": "also manages user accounts and sees the audit check"}
MIN_PASSWORD_LENGTH = 12
SESSION_HOURS = 12  # a clinic shift; after it the reviewer signs in again
LOCKOUT_FAILURES, LOCKOUT_MINUTES = 5, 15  # after 5 failed sign-ins from one address a name is refused there 15 min
SIGN_IN_FAILED, SIGN_IN_UNLOCKED = "sign-in failed", "sign-in unlocked"
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
_hasher = PasswordHasher()
_UNKNOWN_USER_HASH = _hasher.hash(secrets.token_hex(16))  # checked against when the name is unknown: same timing


class AccountError(ValueError):
    """An account cannot be made or changed so; the message says why."""


@dataclass(frozen=True)
class User:
    id: int
    username: str
    display_name: str
    role: str
    disabled: bool

    @property
    def label(self) -> str:
        """What decisions, imports and the audit trail record: unambiguous, and readable."""
        return f"{self.display_name} ({self.username})"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def _user(row) -> User:
    return User(row["id"], row["username"], row["display_name"], row["role"], bool(row["disabled"]))


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _check_password(password: str) -> None:
    checked("password", password)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")


class Accounts:
    def __init__(self, store: Store):
        self.store = store

    def any(self) -> bool:
        with self.store.engine.connect() as connection:
            return bool(connection.execute(select(func.count()).select_from(users)).scalar())

    def all(self) -> list[User]:
        with self.store.engine.connect() as connection:
            return [_user(r) for r in connection.execute(select(users).order_by(users.c.username)).mappings()]

    def get(self, username: str) -> User | None:
        with self.store.engine.connect() as connection:
            row = connection.execute(select(users).where(users.c.username == username)).mappings().first()
        return _user(row) if row else None

    def add(self, username: str, display_name: str, password: str, role: str, actor: str) -> User:
        username = username.strip().lower()
        if not _USERNAME.match(username):
            raise AccountError("a user name is 2 to 64 lower-case letters, digits, '.', '_' or '-', starting with a "
                               "letter or digit")
        display_name = (checked("display name", display_name.strip()) or "").strip()
        if not display_name:
            raise AccountError("an account needs the person's name as it should appear on decisions")
        if role not in ROLES:
            raise AccountError(f"a role is one of: {', '.join(ROLES)}")
        _check_password(password)
        with self.store.write_transaction() as connection:
            if connection.execute(select(users.c.id).where(users.c.username == username)).first():
                raise AccountError(f"there is already an account named {username}")
            connection.execute(insert(users).values(username=username, display_name=display_name, role=role,
                                                    password_hash=_hasher.hash(password), disabled=False,
                                                    created_at=dt.datetime.now(dt.UTC)))
            self.store.append_audit(connection, actor, "user added", None, username=username, role=role)
        user = self.get(username)
        assert user is not None
        return user

    def set_disabled(self, username: str, disabled: bool, actor: str) -> None:
        """A disabled account cannot sign in and its open sessions end at once; its history stays."""
        with self.store.write_transaction() as connection:
            row = connection.execute(select(users.c.id).where(users.c.username == username)).first()
            if row is None:
                raise AccountError(f"there is no account named {username}")
            connection.execute(update(users).where(users.c.id == row[0]).values(disabled=disabled))
            if disabled:
                connection.execute(update(sessions).where(sessions.c.user_id == row[0], sessions.c.ended_at.is_(None))
                                   .values(ended_at=dt.datetime.now(dt.UTC)))
            self.store.append_audit(connection, actor, "user disabled" if disabled else "user enabled", None, username=username)

    def set_password(self, username: str, password: str, actor: str) -> None:
        """A new password; every open session of the account ends (whoever knew the old one is signed out)."""
        _check_password(password)
        with self.store.write_transaction() as connection:
            row = connection.execute(select(users.c.id).where(users.c.username == username)).first()
            if row is None:
                raise AccountError(f"there is no account named {username}")
            connection.execute(update(users).where(users.c.id == row[0]).values(password_hash=_hasher.hash(password)))
            connection.execute(update(sessions).where(sessions.c.user_id == row[0], sessions.c.ended_at.is_(None))
                               .values(ended_at=dt.datetime.now(dt.UTC)))
            self.store.append_audit(connection, actor, "password changed", None, username=username)

    def sign_in(self, username: str, password: str, client: str | None = None) -> tuple[User, str] | None:
        """The user and a new session token, or None (unknown name, wrong password, disabled account, or a name
        locked after LOCKOUT_FAILURES failures from this `client` address within LOCKOUT_MINUTES: the caller cannot
        tell which, nor can someone guessing names or passwords). Failures from another address, or from before an
        administrator's `unlock`, do not count: someone guessing cannot lock a colleague out."""
        username = username.strip().lower()[:64]
        client = (client or "")[:64] or None
        try:
            checked("password", password)
        except InvalidText:
            return None
        with self.store.engine.connect() as connection:
            row = connection.execute(select(users).where(users.c.username == username)).mappings().first()
            failures = self._failures(connection, username, client)
        try:
            _hasher.verify(row["password_hash"] if row else _UNKNOWN_USER_HASH, password)
            valid = row is not None and not row["disabled"] and failures < LOCKOUT_FAILURES
        except (VerificationError, InvalidHashError):
            valid = False
        with self.store.write_transaction() as connection:
            if not valid:
                safe_name = username if _USERNAME.match(username) else "(not a valid user name)"
                self.store.append_audit(connection, "skinapp", SIGN_IN_FAILED, None, username=safe_name, client=client)
                return None
            assert row is not None
            token = secrets.token_urlsafe(32)
            now = dt.datetime.now(dt.UTC)
            connection.execute(insert(sessions).values(token_sha256=_token_digest(token), user_id=row["id"], created_at=now,
                                                       expires_at=now + dt.timedelta(hours=SESSION_HOURS)))
            self.store.append_audit(connection, _user(row).label, "signed in", None)
        return _user(row), token

    def session_user(self, token: str | None) -> User | None:
        """The signed-in user of a session token, while the session is open and the account enabled."""
        if not isinstance(token, str) or not token or len(token) > 100:
            return None
        now = dt.datetime.now(dt.UTC)
        with self.store.engine.connect() as connection:
            row = connection.execute(
                select(users, sessions.c.expires_at).join(sessions, sessions.c.user_id == users.c.id)
                .where(sessions.c.token_sha256 == _token_digest(token), sessions.c.ended_at.is_(None))).mappings().first()
        if row is None or row["disabled"]:
            return None
        expires = row["expires_at"] if row["expires_at"].tzinfo else row["expires_at"].replace(tzinfo=dt.UTC)
        return _user(row) if expires > now else None

    @staticmethod
    def _failures(connection, username: str, client: str | None) -> int:
        since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=LOCKOUT_MINUTES)
        failures = 0
        for action, details in connection.execute(
                select(audit_log.c.action, audit_log.c.details).where(
                    audit_log.c.action.in_((SIGN_IN_FAILED, SIGN_IN_UNLOCKED)), audit_log.c.at >= since)
                .order_by(audit_log.c.id)):
            if details.get("username") != username:
                continue
            if action == SIGN_IN_UNLOCKED:
                failures = 0
            elif details.get("client") == client:
                failures += 1
        return failures

    def locked_out(self, username: str) -> list[str]:
        """The addresses from which `username` is refused now (after LOCKOUT_FAILURES failures), for the
        administrator's page; "(no address)" for the command line's."""
        since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=LOCKOUT_MINUTES)
        with self.store.engine.connect() as connection:
            clients = {d.get("client") for d in connection.execute(select(audit_log.c.details).where(
                audit_log.c.action == SIGN_IN_FAILED, audit_log.c.at >= since)).scalars() if d.get("username") == username}
            return sorted(c or "(no address)" for c in clients
                          if self._failures(connection, username, c) >= LOCKOUT_FAILURES)

    def unlock(self, username: str, actor: str) -> None:
        """Let `username` sign in again at once from every address (audited)."""
        with self.store.write_transaction() as connection:
            self.store.append_audit(connection, actor, SIGN_IN_UNLOCKED, None, username=username)

    def session_end_reason(self, token: str | None) -> str | None:
        """Why a session token that once signed someone in no longer does, told to whoever holds it (they were
        signed in with it); None for a token that never named a session."""
        if not isinstance(token, str) or not token or len(token) > 100:
            return None
        with self.store.engine.connect() as connection:
            row = connection.execute(
                select(users.c.disabled, sessions.c.ended_at).join(sessions, sessions.c.user_id == users.c.id)
                .where(sessions.c.token_sha256 == _token_digest(token))).mappings().first()
        if row is None:
            return None
        if row["disabled"]:
            return "Your account has been disabled by an administrator, so you were signed out. Ask an administrator."
        if row["ended_at"] is not None:
            return "You were signed out. Sign in again to go on."
        return f"Your session ended after {SESSION_HOURS} hours. Sign in again to go on."

    def sign_out(self, token: str | None) -> None:
        if not token:
            return
        user = self.session_user(token)
        with self.store.write_transaction() as connection:
            connection.execute(update(sessions).where(sessions.c.token_sha256 == _token_digest(token),
                                                      sessions.c.ended_at.is_(None)).values(ended_at=dt.datetime.now(dt.UTC)))
            if user is not None:
                self.store.append_audit(connection, user.label, "signed out", None)
