"""End to end in a real headless Chromium: the app as a clinician uses it (Debian's chromium, driven by
Playwright's Python package through `executable_path`; no browser is downloaded)."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from pydicom.uid import JPEGBaseline8Bit

from conftest import REPO, SHARED_DATA
from dicom_factory import lesion_image, make_dicom
from skinapp.store import Store
from skinapp.store.accounts import Accounts
from skinapp.workflow.worklist import worklist

CHROMIUM = os.environ.get("SKINAPP_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (Debian package `chromium`)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def running_app(tmp_path, shipped_weights):
    port = _free_port()
    env = {**os.environ, "SKINAPP_DATA_DIR": str(tmp_path / "data")}
    env.pop("SKINAPP_DATABASE_URL", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("the app did not start: " + server.stdout.read1().decode(errors="replace"))
        yield url, tmp_path / "data"
    finally:
        server.terminate()
        server.wait(timeout=30)


def _dicom_folder(tmp_path: Path) -> Path:
    """Three real SIIM-ISIC DICOMs where the data is present, else three synthetic ones."""
    folder = tmp_path / "export" / "STUDY1"
    folder.mkdir(parents=True)
    real = sorted((SHARED_DATA / "siim_isic_2020" / "dicom").glob("*.dcm"))[:3]
    if real:
        for file in real:
            shutil.copy(file, folder / file.name)
    else:
        for seed in range(3):
            make_dicom(folder / f"IM{seed:04d}", lesion_image(seed=seed), JPEGBaseline8Bit)
    return folder


@pytest.mark.browser
@pytest.mark.slow
def test_upload_a_dicom_folder_review_a_case_and_record_a_decision(running_app, tmp_path):
    url, data = running_app
    data.mkdir(parents=True, exist_ok=True)
    accounts = Accounts(Store.open(f"sqlite:///{data / 'skinapp.db'}"))
    accounts.add("drbrowser", "Dr Browser", "a long browser password", "reviewer", actor="test set-up")
    accounts.store.engine.dispose()
    folder = _dicom_folder(tmp_path)
    screenshot = Path(os.environ.get("SKINAPP_SCREENSHOT_DIR", tmp_path)) / "case_review.png"
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1400, "height": 1900})
        page.set_default_timeout(120_000)
        page.goto(url)
        page.get_by_label("User name", exact=True).fill("drbrowser")
        page.get_by_label("Password", exact=True).fill("a long browser password")
        page.get_by_role("button", name="Sign in").click()
        page.get_by_text("Signed in as").wait_for()
        page.wait_for_function("document.cookie.includes('skinapp_session=')")
        page.reload()  # a reload starts a new Streamlit session: the session cookie keeps the reviewer signed in
        page.get_by_text("Signed in as").wait_for()

        # in-app navigation keeps the session (and the name)
        page.get_by_test_id("stSidebar").get_by_role("link", name="Import").click()
        page.locator("input[type=file][webkitdirectory]").set_input_files(folder)
        page.get_by_role("button", name="Import and analyse").click()  # waits until the upload enabled it
        page.get_by_text("case(s) in the worklist from this import").wait_for()
        assert "3 case(s) in the worklist from this import (3 new, 3 analysed)" in page.content()

        page.get_by_test_id("stSidebar").get_by_role("link", name="Case review").click()
        page.get_by_text("Malignancy probability").first.wait_for()
        page.get_by_text("Needs biopsy or excision").click()
        page.get_by_label("Note").fill("asymmetric, regression structures")
        page.get_by_role("button", name="Save decision").click()
        page.get_by_text("Saved: Needs biopsy or excision.").wait_for()
        page.screenshot(path=str(screenshot), full_page=True)

        page.get_by_role("button", name="Sign out").click()
        page.get_by_role("button", name="Sign in").wait_for()
        page.wait_for_function("!document.cookie.includes('skinapp_session=')")
        page.reload()
        page.get_by_role("button", name="Sign in").wait_for()
        assert "Signed in as" not in page.content()
        browser.close()
    assert screenshot.stat().st_size > 10_000
    store = Store.open(f"sqlite:///{data / 'skinapp.db'}")
    decided = [row for row in worklist(store) if row.decision is not None]
    assert len(decided) == 1 and decided[0].decision.reviewer == "Dr Browser (drbrowser)"
    assert decided[0].decision.note == "asymmetric, regression structures"
