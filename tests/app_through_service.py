"""Run by tests/test_model_service.py in a fresh interpreter, the app pointed at a model service by
SKINAPP_MODEL_URL (and its secret file): signs in, imports real images on the Import page, opens the case and a
Grad-CAM of another class, records a decision. Prints what it saw, one line each, then whether torch was
imported on the way ("torch loaded" / "torch not loaded")."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from fresh_app import data_dir_with_account, signed_in
from streamlit.testing.v1 import AppTest


def texts(app: AppTest) -> str:
    return "\n".join(str(e.value) for kind in ("markdown", "caption", "info", "success", "warning", "error")
                     for e in app.get(kind))


def main(images: list[Path]) -> None:
    from skinapp.store import Store
    from skinapp.workflow.worklist import worklist

    database = data_dir_with_account("doctor", "reviewer")
    app = signed_in("doctor", timeout=300)
    app.switch_page("pages/1_Import.py").run()
    app.get("file_uploader")[0].set_value([(p.name, p.read_bytes(), "image/jpeg") for p in images])
    app.run()
    app.button(key="import_button").click().run()
    print("import:", " | ".join(m.value for m in [*app.success, *app.warning, *app.error]).replace("\n", " "))
    store = Store.open(f"sqlite:///{database}")
    case_ids = [row.case.id for row in worklist(store)]
    stored = [store.latest_prediction(c) for c in case_ids]
    print("stored:", ";".join(f"{p.model_version}|{p.weights_sha256}" if p else "none" for p in stored))
    app.session_state["case_id"] = case_ids[0]
    app.switch_page("pages/2_Case_review.py").run()
    failures = [f"case page: {app.exception}"] if app.exception else []
    app.selectbox(key="overlay_kind").set_value("What drove the diagnosis").run()
    app.selectbox(key="gradcam_class").set_value("BCC").run()
    failures += [f"grad-cam: {app.exception}"] if app.exception else []
    failures += [line for line in texts(app).splitlines() if "is not loaded" in line or "went wrong" in line]
    print("case page:", "; ".join(failures) or "ran")

    # the service stops answering: the app says so in one sentence, and a decision still saves
    from skinapp.distributed.model_client import ModelClient

    attempts, connect = [], ModelClient.connect

    def counted(*args, **kwargs):
        attempts.append(1)
        return connect(*args, **kwargs)

    ModelClient.connect = counted  # type: ignore[method-assign]
    import app_shared

    app_shared.SERVICE_RETRY_SECONDS = 600  # longer than this phase takes on a loaded machine
    os.environ["SKINAPP_MODEL_URL"] = os.environ["DEAD_MODEL_URL"]
    app = signed_in("doctor", timeout=300)
    app.switch_page("pages/1_Import.py").run()
    app.get("file_uploader")[0].set_value([(p.name, p.read_bytes(), "image/jpeg") for p in images[:1]])
    app.run()
    print("service down, import page:", " | ".join(e.value for e in app.error).replace("\n", " "),
          "| import button disabled" if app.button(key="import_button").disabled else "| import button enabled")
    app.session_state["case_id"] = case_ids[0]
    app.switch_page("pages/2_Case_review.py").run()
    app.button(key="pick_agree").click().run()
    app.button(key="save_decision").click().run()
    print("service down, decision:", "saved" if "Saved on" in texts(app) else texts(app).replace("\n", " ")[:300],
          "| exception" if app.exception else "")
    print(f"service down, connection attempts: {len(attempts)}")  # once, not on every page within the retry interval
    print("torch loaded" if "torch" in sys.modules else "torch not loaded")


if __name__ == "__main__":
    main([Path(a) for a in sys.argv[1:]])
