"""Sign-in accounts and sessions, on both backends and through the command line."""

import datetime as dt
import io

import pytest
import sqlalchemy

from skinapp.cli.main import main
from skinapp.store import Store
from skinapp.store.accounts import AccountError, Accounts
from skinapp.store.schema import sessions

PASSWORD = "a long enough password"


def test_the_app_hashes_passwords_with_argon2id_at_full_cost(cheap_password_hashing):
    """The tests hash cheaply (conftest); the app's own hasher must keep OWASP's Argon2id minimum or more."""
    from argon2 import Type

    app_hasher = cheap_password_hashing
    assert app_hasher.type is Type.ID and app_hasher.memory_cost >= 19 * 1024 and app_hasher.time_cost >= 2
    assert app_hasher.hash(PASSWORD).startswith("$argon2id$")


def test_accounts_sign_in_and_sessions(db_url):
    accounts = Accounts(Store.open(db_url))
    assert not accounts.any()
    user = accounts.add("Dr.Meyer", "Dr A. Meyer", PASSWORD, "reviewer", actor="admin")
    assert user.username == "dr.meyer" and user.label == "Dr A. Meyer (dr.meyer)" and not user.is_admin
    for bad, message in ((("x", "X", PASSWORD, "reviewer"), "2 to 64"), (("dr.meyer", "Other", PASSWORD, "reviewer"), "already"),
                         (("drb", "Dr B", "short", "reviewer"), "12 characters"), (("drc", "Dr C", PASSWORD, "root"), "role"),
                         (("drd", "  ", PASSWORD, "reviewer"), "name")):
        with pytest.raises(AccountError, match=message):
            accounts.add(*bad, actor="admin")

    assert accounts.sign_in("dr.meyer", "wrong password") is None and accounts.sign_in("nobody", PASSWORD) is None
    signed_in, token = accounts.sign_in(" DR.MEYER ", PASSWORD)
    assert signed_in == user and accounts.session_user(token) == user
    assert accounts.session_user("x" * 43) is None and accounts.session_user(None) is None
    with Store.open(db_url).engine.connect() as connection:  # only the token's hash is kept
        stored = connection.execute(sqlalchemy.select(sessions.c.token_sha256)).scalar()
    assert stored != token and len(stored) == 64

    accounts.sign_out(token)
    assert accounts.session_user(token) is None
    assert accounts.session_end_reason(token) == "You were signed out. Sign in again to go on."
    _, token = accounts.sign_in("dr.meyer", PASSWORD)
    accounts.set_disabled("dr.meyer", True, actor="admin")  # ends open sessions and refuses new ones
    assert accounts.session_user(token) is None and accounts.sign_in("dr.meyer", PASSWORD) is None
    assert "disabled by an administrator" in accounts.session_end_reason(token)  # the holder is told why
    assert accounts.session_end_reason("x" * 43) is None and accounts.session_end_reason(None) is None
    accounts.set_disabled("dr.meyer", False, actor="admin")
    _, token = accounts.sign_in("dr.meyer", PASSWORD)
    accounts.set_password("dr.meyer", "a new long password", actor="admin")
    assert accounts.session_user(token) is None  # a password change signs out every session of the account
    assert accounts.sign_in("dr.meyer", PASSWORD) is None and accounts.sign_in("dr.meyer", "a new long password")
    actions = [e.action for e in accounts.store.audit_entries()]
    assert actions.count("sign-in failed") == 4 and "user disabled" in actions and "password changed" in actions
    assert accounts.store.verify_audit().ok

    with pytest.raises(sqlalchemy.exc.DBAPIError), accounts.store.engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM users")  # accounts are disabled, never removed


def test_a_session_expires(db_url, monkeypatch):
    accounts = Accounts(Store.open(db_url))
    accounts.add("drx", "Dr X", PASSWORD, "admin", actor="admin")
    _, token = accounts.sign_in("drx", PASSWORD)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=13)

    class Later(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return later

    monkeypatch.setattr("skinapp.store.accounts.dt.datetime", Later)
    assert accounts.session_user(token) is None


def test_users_command(tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path / 'skinapp.db'}"
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["users", "add", "drk", "--name", "Dr K", "--role", "admin", "--database", url, "--password-stdin"]) == 0
    assert "added drk (admin)" in capsys.readouterr().out
    assert main(["users", "disable", "drk", "--database", url]) == 0
    assert capsys.readouterr().out == "drk disabled\n"
    assert main(["users", "list", "--database", url]) == 0
    assert capsys.readouterr().out.split() == ["drk", "admin", "disabled", "Dr", "K"]
    assert main(["users", "disable", "nobody", "--database", url]) == 2
    assert "there is no account named nobody" in capsys.readouterr().err
    assert Accounts(Store.open(url)).get("drk").disabled


def test_repeated_failed_sign_ins_lock_the_name_for_a_while(db_url, monkeypatch):
    from skinapp.store.accounts import LOCKOUT_FAILURES, LOCKOUT_MINUTES

    accounts = Accounts(Store.open(db_url))
    accounts.add("dry", "Dr Y", PASSWORD, "reviewer", actor="admin")
    for _ in range(LOCKOUT_FAILURES):
        assert accounts.sign_in("dry", "a guessed password") is None
    assert accounts.sign_in("dry", PASSWORD) is None  # locked, even with the right password
    assert accounts.sign_in("other", "x") is None and accounts.get("other") is None
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=LOCKOUT_MINUTES + 1)

    class Later(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return later

    monkeypatch.setattr("skinapp.store.accounts.dt.datetime", Later)
    assert accounts.sign_in("dry", PASSWORD) is not None


def test_a_guessing_address_locks_itself_out_not_the_colleague_and_an_administrator_unlocks(db_url):
    from skinapp.store.accounts import LOCKOUT_FAILURES

    accounts = Accounts(Store.open(db_url))
    accounts.add("dr.lee", "Dr Lee", PASSWORD, "reviewer", actor="admin")
    for _ in range(LOCKOUT_FAILURES):
        assert accounts.sign_in("dr.lee", "a wrong guess here", client="203.0.113.9") is None
    assert accounts.sign_in("dr.lee", PASSWORD, client="203.0.113.9") is None  # locked from the guessing address
    assert accounts.sign_in("dr.lee", PASSWORD, client="10.0.0.5") is not None  # Dr Lee at their desk is not
    assert accounts.locked_out("dr.lee") == ["203.0.113.9"]
    accounts.unlock("dr.lee", actor="Dr Admin (admin)")
    assert accounts.locked_out("dr.lee") == [] and accounts.sign_in("dr.lee", PASSWORD, client="203.0.113.9")
    unlocked = [e for e in accounts.store.audit_entries() if e.action == "sign-in unlocked"]
    assert [(e.actor, e.details["username"]) for e in unlocked] == [("Dr Admin (admin)", "dr.lee")]
