"""Run by tests/test_app_torch_free.py in a fresh interpreter: signs in, opens every page that does not run the
model, and prints whether torch was imported on the way ("torch loaded" / "torch not loaded")."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PAGES = ("pages/3_Patient_context.py", "pages/4_Model_card.py", "pages/5_Administration.py",
         "pages/6_Lesion_over_time.py", "pages/7_Clinic_record.py")


def main() -> None:
    os.environ["SKINAPP_DATA_DIR"] = tempfile.mkdtemp()
    os.environ.pop("SKINAPP_DATABASE_URL", None)
    from skinapp.store import Store
    from skinapp.store.accounts import Accounts

    store = Store.open(f"sqlite:///{Path(os.environ['SKINAPP_DATA_DIR']) / 'skinapp.db'}")
    Accounts(store).add("admin", "Dr Admin", "a long test password", "admin", actor="test set-up")
    store.engine.dispose()
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    app.text_input(key="sign_in_username").input("admin")
    app.text_input(key="sign_in_password").input("a long test password")
    app.button(key="FormSubmitter:sign_in_form-Sign in").click().run()
    failures = [f"worklist: {app.exception}"] if app.exception else []
    for page in PAGES:
        app.switch_page(page).run()
        if app.exception:
            failures.append(f"{page}: {app.exception}")
    print("\n".join(failures) or "pages ran")
    print("torch loaded" if "torch" in sys.modules else "torch not loaded")


if __name__ == "__main__":
    main()
