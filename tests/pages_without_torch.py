"""Run by tests/test_app_torch_free.py in a fresh interpreter: signs in, opens every page that does not run the
model, and prints whether torch was imported on the way ("torch loaded" / "torch not loaded")."""

from __future__ import annotations

import sys

from fresh_app import data_dir_with_account, signed_in

PAGES = ("pages/3_Patient_context.py", "pages/4_Model_card.py", "pages/5_Administration.py",
         "pages/6_Lesion_over_time.py", "pages/7_Clinic_record.py")


def main() -> None:
    data_dir_with_account("admin", "admin")
    app = signed_in("admin")
    failures = [f"worklist: {app.exception}"] if app.exception else []
    for page in PAGES:
        app.switch_page(page).run()
        if app.exception:
            failures.append(f"{page}: {app.exception}")
    print("\n".join(failures) or "pages ran")
    print("torch loaded" if "torch" in sys.modules else "torch not loaded")


if __name__ == "__main__":
    main()
