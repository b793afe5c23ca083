"""End to end in a real headless Chromium: the app as a clinician uses it (Debian's chromium, driven by
Playwright's Python package through `executable_path`; no browser is downloaded)."""

import os
import re
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


PASSWORD = "a long browser password"


def _account(data: Path, username: str, name: str) -> None:
    data.mkdir(parents=True, exist_ok=True)
    store = Store.open(f"sqlite:///{data / 'skinapp.db'}")
    Accounts(store).add(username, name, PASSWORD, "reviewer", actor="test set-up")
    store.engine.dispose()


def _signed_in_page(playwright, url: str, username: str, height: int):
    """A fresh headless Chromium page, signed in; it returns once the browser holds the session cookie, so a
    reload or a link opened later stays signed in."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                         args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
    page = browser.new_page(viewport={"width": 1400, "height": height})
    page.set_default_timeout(120_000)
    page.goto(url)
    page.get_by_label("User name", exact=True).fill(username)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("Signed in as").wait_for()
    page.wait_for_function("document.cookie.includes('skinapp_session=')")
    return browser, page


@pytest.mark.browser
@pytest.mark.slow
def test_upload_a_dicom_folder_review_a_case_and_record_a_decision(running_app, tmp_path):
    url, data = running_app
    _account(data, "drbrowser", "Dr Browser")
    folder = _dicom_folder(tmp_path)
    screenshot = Path(os.environ.get("SKINAPP_SCREENSHOT_DIR", tmp_path)) / "case_review.png"
    with sync_api.sync_playwright() as playwright:
        browser, page = _signed_in_page(playwright, url, "drbrowser", height=1900)
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
        page.get_by_text(re.compile(r"^Saved on .*: Needs biopsy or excision\.")).wait_for()  # and on to the next case
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


HOSTILE_NAME = ":red-background[MELANOMA confirmed - excise today] [see](https:evil.example) www.evil.example"


@pytest.mark.browser
@pytest.mark.slow
def test_user_strings_are_plain_text_in_the_real_browser(running_app, tmp_path):
    """File names, patient ids and reviewer names holding Streamlit markdown, links or HTML show as the text they
    are: no coloured badge, no link, no markup, in the title, captions, decision history or chart."""
    from PIL import Image

    from conftest import synthetic_lesion

    url, data = running_app
    _account(data, "drx", "Dr <b>X</b> https://evil.example")
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    names = (HOSTILE_NAME, "<a href=https:evil.example>link", "c")
    for seed, name in enumerate(names):
        Image.fromarray(synthetic_lesion(seed=seed)[0]).save(uploads / f"{name}.png")
    (uploads / "meta.csv").write_text("image_name,patient_id\n" + "".join(
        f'"{n}","<a href=https://evil.example>P1</a> [x](https://evil.example)"\n' for n in names))
    with sync_api.sync_playwright() as playwright:
        browser, page = _signed_in_page(playwright, url, "drx", height=1600)
        page.get_by_test_id("stSidebar").get_by_role("link", name="Import").click()
        page.locator("input[type=file]").nth(0).set_input_files(sorted(uploads.glob("*.png")))
        page.locator("input[type=file]").nth(2).set_input_files(uploads / "meta.csv")
        page.get_by_role("button", name="Import and analyse").click()
        page.get_by_text("case(s) in the worklist from this import").wait_for()

        store = Store.open(f"sqlite:///{data / 'skinapp.db'}")
        (hostile,) = [r.case.id for r in worklist(store) if r.case.name == HOSTILE_NAME]
        page.goto(f"{url}/Case_review?case={hostile}")
        page.get_by_text("Malignancy probability").first.wait_for()
        page.get_by_text("Agree with the model").click()
        page.get_by_role("button", name="Save decision").click()
        page.get_by_text(re.compile(r"^Saved on .*: Agree with the model\.")).wait_for()
        page.goto(f"{url}/Case_review?case={hostile}")  # saving moved on to the next case: back to this one
        page.get_by_text("Malignancy probability").first.wait_for()
        main = page.get_by_test_id("stMain")
        shown = main.inner_text().replace("\u2060", "")  # the invisible joiners that stop link detection
        headings = [h.replace("\u2060", "") for h in main.get_by_role("heading").all_inner_texts()]
        assert f"Case {HOSTILE_NAME}" in headings  # the name, as typed
        links = page.evaluate("""() => [...document.querySelectorAll("a[href*='evil']")].map(a =>
            (a.closest('[data-testid^=st]') || a.parentElement).getAttribute('data-testid') + ': ' + a.outerHTML)""")
        assert links == []
        assert main.locator("b", has_text="X").count() == 0
        assert "Patient: <a href=https://evil.example>P1</a> [x](https://evil.example)" in shown
        assert "Dr <b>X</b> https://evil.example (drx)" in shown  # the reviewer, in the decision history
        badges = page.evaluate("""() => [...document.querySelectorAll('[data-testid=stMain] span')]
            .filter(e => e.textContent.includes('MELANOMA') && getComputedStyle(e).backgroundColor !== 'rgba(0, 0, 0, 0)')
            .length""")
        assert badges == 0

        page.get_by_test_id("stSidebar").get_by_role("link", name="Patient context").click()
        page.wait_for_url("**/Patient_context**")
        chart = page.locator(".js-plotly-plot", has_text="How different it looks")
        chart.wait_for()
        assert chart.locator("a").count() == 0
        assert HOSTILE_NAME in chart.inner_text() and names[1] in chart.inner_text()
        browser.close()
    store.engine.dispose()
