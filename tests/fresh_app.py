"""The app under AppTest in a fresh interpreter, signed in: shared by the scripts that check what such a process
imports (`pages_without_torch.py`, `app_through_service.py`). Importing this loads Streamlit, never torch."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PASSWORD = "a long test password"


def data_dir_with_account(username: str, role: str) -> Path:
    """A new data folder (SQLite) holding one account; returns the database's path."""
    from skinapp.store import Store
    from skinapp.store.accounts import Accounts

    os.environ["SKINAPP_DATA_DIR"] = tempfile.mkdtemp()
    os.environ.pop("SKINAPP_DATABASE_URL", None)
    database = Path(os.environ["SKINAPP_DATA_DIR"]) / "skinapp.db"
    store = Store.open(f"sqlite:///{database}")
    Accounts(store).add(username, f"Dr {username.title()}", PASSWORD, role, actor="test set-up")
    store.engine.dispose()
    return database


def signed_in(username: str, timeout: float = 120) -> AppTest:
    """The worklist of a new app session, signed in as `username`."""
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=timeout).run()
    app.text_input(key="sign_in_username").input(username)
    app.text_input(key="sign_in_password").input(PASSWORD)
    app.button(key="FormSubmitter:sign_in_form-Sign in").click().run()
    return app
