"""End to end in a real headless Chromium: the app as a clinician uses it (Debian's chromium, driven by
Playwright's Python package through `executable_path`; no browser is downloaded)."""

import datetime as dt
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
from skinapp.vocab import Site
from skinapp.workflow.worklist import worklist

CHROMIUM = os.environ.get("SKINAPP_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
pytestmark = [pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (Debian package `chromium`)"),
              pytest.mark.browser, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def running_app(tmp_path, shipped_weights):
    yield from _app_server(tmp_path, {})


@pytest.fixture
def app_with_pacs(tmp_path, shipped_weights, pacs):
    password = tmp_path / "pacs-password"
    password.write_text(f"{pacs.password}\n")
    yield from _app_server(tmp_path, {"SKINAPP_PACS_URL": pacs.url, "SKINAPP_PACS_USER": pacs.user,
                                      "SKINAPP_PACS_PASSWORD_FILE": str(password)})


def _app_server(tmp_path: Path, settings: dict[str, str]):
    """The app served by Streamlit on a free port of 127.0.0.1, with its own data folder: (url, data folder)."""
    port = _free_port()
    env = {**os.environ, "SKINAPP_DATA_DIR": str(tmp_path / "data"), **settings}
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


def _account(data: Path, username: str, name: str, role: str = "reviewer") -> None:
    data.mkdir(parents=True, exist_ok=True)
    store = Store.open(f"sqlite:///{data / 'skinapp.db'}")
    Accounts(store).add(username, name, PASSWORD, role, actor="test set-up")
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


@pytest.mark.data  # real SIIM-ISIC DICOMs where present
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
        _ticked(page, "Needs biopsy or excision")
        page.get_by_label("Note", exact=True).fill("asymmetric, regression structures")
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
        _upload(page, page.locator("input[type=file]").nth(0), sorted(uploads.glob("*.png")), shown="c.png")
        _upload(page, page.locator("input[type=file]").nth(2), [uploads / "meta.csv"], shown="meta.csv")
        page.get_by_role("button", name="Import and analyse").click()
        page.get_by_text("case(s) in the worklist from this import").wait_for()

        store = Store.open(f"sqlite:///{data / 'skinapp.db'}")
        (hostile,) = [r.case.id for r in worklist(store) if r.case.name == HOSTILE_NAME]
        page.goto(f"{url}/Case_review?case={hostile}")
        page.get_by_text("Malignancy probability").first.wait_for()
        page.get_by_text("Agree with the model").click()
        _ticked(page, "Agree with the model")
        page.get_by_role("button", name="Save decision").click()
        page.get_by_text(re.compile(r"^Saved on .*: Agree with the model\.")).wait_for()
        page.goto(f"{url}/Case_review?case={hostile}")  # saving moved on to the next case: back to this one
        page.get_by_text("Malignancy probability").first.wait_for()
        main = page.get_by_test_id("stMain")
        main.get_by_text("(drx)").first.wait_for()  # the decision history, drawn after the model's answer
        _idle(page)
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


TAKEN = ("2024:03:01 10:00:00", "2025:03:01 11:30:00")  # the lesion's two pictures, a year apart


def _exif(taken: str):
    from PIL import ExifTags, Image

    exif = Image.Exif()
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = taken
    return exif


def _clinic_folder(tmp_path: Path) -> tuple[Path, Path, tuple[str, str]]:
    """A folder as a clinic exports it: three DICOMs and two images of one lesion (a real SIIM-ISIC / HAM10000
    pair where the data is present, else synthetic ones), and the metadata CSV naming patient and lesion; the
    two names of the lesion's images."""
    import csv

    from PIL import Image

    from conftest import synthetic_lesion

    folder = _dicom_folder(tmp_path)
    rows = [["image_name", "patient_id", "lesion_id", "age_approx", "sex", "anatom_site_general_challenge"]]
    siim = SHARED_DATA / "siim_isic_2020" / "metadata.csv"
    if siim.exists():
        known = {r["image_name"]: r for r in csv.DictReader(siim.open())}
        rows += [[f.stem, known[f.stem]["patient_id"], "", known[f.stem]["age_approx"], known[f.stem]["sex"],
                  known[f.stem]["anatom_site_general_challenge"]] for f in sorted(folder.glob("*.dcm")) if f.stem in known]
    ham = SHARED_DATA / "ham10000"
    if (ham / "HAM10000_metadata.csv").exists():
        by_lesion: dict[str, list[dict]] = {}
        for row in csv.DictReader((ham / "HAM10000_metadata.csv").open()):
            by_lesion.setdefault(row["lesion_id"], []).append(row)
        lesion, pair = min((k, v) for k, v in by_lesion.items() if len(v) == 2)
        names = tuple(sorted(r["image_id"] for r in pair))
        for name, taken in zip(names, TAKEN, strict=True):  # as a camera writes them: the day taken in EXIF
            Image.open(ham / "images" / f"{name}.jpg").save(folder / f"{name}.jpg", quality=95, exif=_exif(taken))
        age, sex, site = pair[0]["age"], pair[0]["sex"], pair[0]["localization"]
    else:
        lesion, names, age, sex, site = "L-1", ("lesion_a", "lesion_b"), "50", "female", "back"
        for seed, (name, taken) in enumerate(zip(names, TAKEN, strict=True)):
            Image.fromarray(synthetic_lesion(150, 200, seed=seed)[0]).save(folder / f"{name}.png", exif=_exif(taken))
    rows += [[name, "WALK-P1", lesion, age, sex, site] for name in names]
    metadata = tmp_path / "metadata.csv"
    with metadata.open("w", newline="") as file:
        csv.writer(file).writerows(rows)
    return folder, metadata, names


def _case_counter(page) -> str:
    return page.get_by_text(re.compile(r"^Case \d+ of \d+ in your review queue$")).inner_text()


def _idle(page) -> None:
    """Until the script run is over and its elements drawn: no running sign, no stale (greyed) element."""
    page.wait_for_timeout(200)
    page.wait_for_function("""() => !document.querySelector('[data-testid=stStatusWidgetRunningIcon]')
        && !document.querySelector('[data-stale=true]')""")


def _upload(page, file_input, files: list[Path], shown: str) -> None:
    """Files put into one uploader, returning once the page lists `shown` and has redrawn. An import started sooner
    would run without them, and files handed to a second uploader while the page redraws after the first upload
    can be dropped by the browser page (CI saw it); a clinician sees an empty uploader then and picks again, which
    is what this does, at most three times."""
    for _ in range(3):
        _idle(page)
        file_input.set_input_files(files)
        try:
            page.get_by_text(shown, exact=True).first.wait_for(timeout=60_000)
            break
        except sync_api.TimeoutError:
            continue
    else:
        pytest.fail(f"the uploader never listed {shown}")
    _idle(page)


def _press(page, key: str) -> None:
    """A key pressed once the page is drawn (a shortcut pressed mid-run may meet a button not there yet)."""
    _idle(page)
    page.keyboard.press(key)


def _ticked(page, decision: str) -> None:
    """Wait for the decision's tick, as a reviewer sees it before saving (the click reruns the page)."""
    page.get_by_role("button", name=decision).locator("[data-testid=stIconMaterial]").wait_for()


def _drag(page, tool, start: tuple[float, float], end: tuple[float, float], shows) -> str:
    """A mouse drag across the measuring tool's image, from and to fractions of its width and height, until
    `shows` appears; the line must be drawn, with its length beside it, before the mouse is let go (that text is
    returned). A drag made while Streamlit is still redrawing the component is lost (on a busy machine it
    happens), and a clinician would drag again: so does the walk, three times at most."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    image = tool.locator(".stage")
    for _ in range(3):
        image.scroll_into_view_if_needed()
        box = image.bounding_box()
        (x1, y1), (x2, y2) = ((box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in (start, end))
        page.mouse.move(x1, y1)
        page.mouse.down()
        page.mouse.move(x2, y2, steps=12)
        line = tool.locator(".dragged")
        drawn = line.get_attribute("visibility") == "visible"  # drawn while dragging, before the mouse is let go
        live = tool.locator(".length").inner_text() if drawn else ""
        page.mouse.up()
        if not drawn:
            continue  # the frame was being redrawn: drag again
        assert float(line.get_attribute("x2")) > float(line.get_attribute("x1"))
        try:
            shows.wait_for(timeout=20_000)
            return live
        except PlaywrightTimeout:
            continue
    shows.wait_for(timeout=1_000)
    raise AssertionError("no line was drawn while dragging")


@pytest.mark.data  # real SIIM-ISIC DICOMs (and a HAM10000 pair) where present
def test_a_clinic_session_from_import_to_the_pdf(running_app, tmp_path):
    """Issue 12's walk on a 1440×900 screen: sign in → import a folder → review three cases in a row with the
    keyboard (decision keys, J/K, Ctrl+Enter) → zoom → calibrate on the ruler and measure → correct an age →
    compare two images of one lesion → look at a dermoscopic structure the model sees (issue 28) → download the PDF.
    Screenshots of each step are saved."""
    from pypdf import PdfReader

    url, data = running_app
    _account(data, "drwalk", "Dr Walk")
    folder, metadata, lesion_images = _clinic_folder(tmp_path)
    shots = Path(os.environ.get("SKINAPP_SCREENSHOT_DIR", tmp_path / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser, page = _signed_in_page(playwright, url, "drwalk", height=900)
        page.set_viewport_size({"width": 1440, "height": 900})

        page.get_by_test_id("stSidebar").get_by_role("link", name="Import").click()
        page.locator("input[type=file][webkitdirectory]").set_input_files(folder)
        sync_api.expect(page.get_by_role("button", name="Import and analyse")).to_be_enabled(timeout=120_000)  # folder in
        _upload(page, page.locator("input[type=file]").nth(2), [metadata], shown=metadata.name)
        page.get_by_role("button", name="Import and analyse").click()
        page.get_by_text("case(s) in the worklist from this import").wait_for()
        assert "5 case(s) in the worklist from this import (5 new, 5 analysed)" in page.content()
        _idle(page)
        page.screenshot(path=str(shots / "01_imported.png"), full_page=True)

        # Three cases in a row, from the keyboard
        page.get_by_test_id("stSidebar").get_by_role("link", name="Case review").click()
        page.get_by_text("Malignancy probability").first.wait_for()
        assert _case_counter(page) == "Case 1 of 5 in your review queue"
        _idle(page)
        save = page.get_by_role("button", name="Save decision")
        box = save.bounding_box()
        assert box["y"] + box["height"] <= 900, "the decision form needs scrolling on a 1440×900 screen"
        main = page.get_by_test_id("stMainBlockContainer").evaluate(  # the width content may take
            "el => { const s = getComputedStyle(el); return el.clientWidth - parseFloat(s.paddingLeft)"
            " - parseFloat(s.paddingRight); }")
        viewer = page.locator(".st-key-case_viewer").bounding_box()
        assert viewer["width"] >= 0.5 * main, (viewer, main)  # the picture first
        assert viewer["y"] + viewer["height"] <= 900, "the picture needs scrolling on a 1440×900 screen"
        page.screenshot(path=str(shots / "02_first_case.png"))
        _press(page, "3")  # needs biopsy or excision
        _ticked(page, "Needs biopsy or excision")
        page.get_by_label("Note", exact=True).press_sequentially("4 mm, 2 colours")  # digits typed in a note pick no decision
        save.click()
        page.get_by_text(re.compile(r"^Saved on .*: Needs biopsy or excision\.")).wait_for()
        assert _case_counter(page) == "Case 2 of 5 in your review queue"
        _press(page, "j")
        page.get_by_text("Case 3 of 5 in your review queue").wait_for()
        _press(page, "k")
        page.get_by_text("Case 2 of 5 in your review queue").wait_for()
        _press(page, "1")  # agree
        _ticked(page, "Agree with the model")
        _press(page, "Control+Enter")
        page.get_by_text(re.compile(r"^Saved on .*: Agree with the model\.")).wait_for()
        page.get_by_text("Case 3 of 5 in your review queue").wait_for()
        _press(page, "4")  # follow-up
        _ticked(page, "Follow-up")
        _press(page, "Control+Enter")
        page.get_by_text(re.compile(r"^Saved on .*: Follow-up\.")).wait_for()
        page.get_by_text("Case 4 of 5 in your review queue").wait_for()
        _idle(page)
        page.screenshot(path=str(shots / "03_three_reviewed.png"))
        page.reload()  # the queue is the reviewer's, kept in the database: a reload does not rebuild it
        page.get_by_text("Case 4 of 5 in your review queue").wait_for()

        # Zoom: the mouse wheel over the image narrows the shown part of it
        viewer = page.locator(".st-key-case_viewer .js-plotly-plot").last
        viewer.locator("image").first.wait_for()
        shown = "el => el._fullLayout.xaxis.range[1] - el._fullLayout.xaxis.range[0]"
        before = viewer.evaluate(shown)
        viewer.hover()
        for _ in range(4):
            page.mouse.wheel(0, -240)
            page.wait_for_timeout(100)
        page.wait_for_function(f"el => ({shown})(el) < {before} * 0.8", arg=viewer.element_handle())
        _idle(page)
        page.screenshot(path=str(shots / "04_zoomed.png"))

        # Calibrate on a 10 mm stretch, then measure across the lesion
        case_id = int(page.url.rsplit("case=", 1)[1])
        page.get_by_text("Measure in millimetres").click()
        frame = "iframe[title*='skinapp_image_tools']"
        tool = page.frame_locator(frame)
        page.wait_for_function(f"""() => {{ const f = document.querySelector("{frame}");
            const i = f && f.contentDocument.querySelector('.stage img');
            return i && i.complete && i.naturalWidth > 0 && f.getBoundingClientRect().height > 50; }}""")
        live = _drag(page, tool, (0.05, 0.9), (0.35, 0.9), page.get_by_label("Distance between the two marks (mm)"))
        assert re.fullmatch(r"\d+ pixels", live)  # no scale yet: the length in pixels, beside the line
        page.get_by_label("Distance between the two marks (mm)").fill("10")
        page.get_by_label("Distance between the two marks (mm)").press("Enter")
        page.get_by_role("button", name="Save the scale").click()
        page.get_by_text(re.compile(r"^Scale saved: 10 mm over \d+ pixels\.")).wait_for()
        page.get_by_text("2. Measure: drag across the lesion's longest diameter").click()
        page.wait_for_timeout(500)
        live = _drag(page, tool, (0.3, 0.5), (0.7, 0.5), page.get_by_role("button", name="Save the diameter"))
        assert re.fullmatch(r"\d+\.\d mm", live)  # calibrated: millimetres while dragging
        # the result and its button sit beside the picture, not below it
        beside = page.get_by_role("button", name="Save the diameter").bounding_box()
        shown = page.locator("iframe[title*='skinapp_image_tools']").bounding_box()
        assert beside["x"] > shown["x"] + shown["width"] and beside["y"] < shown["y"] + shown["height"]
        page.get_by_role("button", name="Save the diameter").click()
        page.get_by_text(re.compile(r"^Longest diameter saved: \d+\.\d mm\.")).wait_for()
        _idle(page)
        page.get_by_text("Measure in millimetres").scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "05_measured.png"))

        # Correct the age: the case is analysed again with it
        page.get_by_text("Correct the patient or lesion details").click()
        body = page.locator(f".st-key-body_map_{case_id} .js-plotly-plot")  # the site picked on the body map
        body.locator(".scatterlayer .point").first.wait_for()
        _idle(page)
        body.scroll_into_view_if_needed()  # a click lands where the map is on the screen
        x, y = body.evaluate("""gd => { const f = gd._fullLayout, i = gd.data[0].customdata.indexOf('hand'),
            r = gd.getBoundingClientRect();
            return [r.left + f.xaxis._offset + f.xaxis.l2p(gd.data[0].x[i]),
                    r.top + f.yaxis._offset + f.yaxis.l2p(gd.data[0].y[i])]; }""")
        page.mouse.click(x, y)
        sync_api.expect(page.locator(f".st-key-fix_site_{case_id}").get_by_role("combobox")).to_have_value("hand")
        _idle(page)
        page.get_by_label("Age (years)").fill("41")
        page.get_by_role("button", name="Save the corrections").click()
        page.get_by_text("Corrections saved. The model analysed the case again").wait_for()
        _idle(page)
        page.get_by_text("Corrections saved. The model analysed the case again").scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "06_age_corrected.png"))

        # Two images of one lesion, side by side
        store = Store.open(f"sqlite:///{data / 'skinapp.db'}")
        (lesion_case,) = [r.case.id for r in worklist(store) if r.case.name == lesion_images[0]]
        page.goto(f"{url}/Case_review?case={lesion_case}")
        page.get_by_role("button", name="Compare 2 images of this lesion").click()
        page.wait_for_url("**/Lesion_over_time**")
        page.get_by_text("Malignancy probability").first.wait_for()
        page.get_by_text("2024-03-01 → 2025-03-01 (12 months)").wait_for()  # the days taken, read from the files
        _idle(page)
        pair = page.frame_locator("iframe[title*='skinapp_image_tools']")
        left = pair.locator(".side.left .stage")
        left.scroll_into_view_if_needed()
        box = left.bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.5)
        for _ in range(3):
            page.mouse.wheel(0, -200)
            page.wait_for_timeout(100)
        views = [pair.locator(f".side.{side} .moving").get_attribute("data-view") for side in ("left", "right")]
        assert views[0] == views[1] and float(views[0].split()[0]) > 1.5  # zoomed, both alike
        page.screenshot(path=str(shots / "07_same_lesion.png"), full_page=True)

        # The structures the model sees, one of them drawn on the image
        page.goto(f"{url}/Case_review?case={lesion_case}")
        page.get_by_text("Malignancy probability").first.wait_for()
        _idle(page)  # the page has finished drawing before a list is opened on it
        layer = page.locator(".st-key-overlay_kind").get_by_role("combobox")
        for _ in range(3):  # a list opened while the page still lays out closes again: open it once more
            layer.click()
            try:
                page.get_by_role("option", name="Where it sees a structure").click(timeout=15_000)
                break
            except sync_api.TimeoutError:
                page.keyboard.press("Escape")
                _idle(page)
        sync_api.expect(layer).to_have_value("Where it sees a structure")
        page.get_by_text("Details: every diagnosis, the structures, the model").click()
        page.get_by_text("Structures the model sees").wait_for()
        page.get_by_text("where on the lesion the model sees the chosen dermoscopic structure").wait_for()
        sync_api.expect(page.locator(".st-key-structure_layer").get_by_role("combobox")).to_have_value(
            re.compile(r"^Pigment network \(\d+ %\)$"))
        _idle(page)
        page.screenshot(path=str(shots / "08_structure_layer.png"))

        # The case report as a PDF
        with page.expect_download() as download:
            page.get_by_role("button", name="Case report (PDF)").click()
        pdf = shots / download.value.suggested_filename
        download.value.save_as(pdf)

        # A referral letter, read back
        page.get_by_text("Write a referral or report letter (PDF)").click()
        page.get_by_label("To", exact=True).fill("Dr Smith, Plastic Surgery")
        page.get_by_label("Clinical question or reason for referral").fill("Excision of a changing lesion?")
        page.get_by_label("Clinical question or reason for referral").press("Tab")  # committed on leaving the field
        _idle(page)
        with page.expect_download() as download:
            page.get_by_role("button", name="Download the letter").click()
        letter = shots / download.value.suggested_filename
        download.value.save_as(letter)
        browser.close()

    assert pdf.name.startswith(f"{lesion_images[0]}_") and pdf.suffix == ".pdf"
    text = "".join(p.extract_text() for p in PdfReader(pdf).pages)
    assert lesion_images[0] in text and "Dr Walk" in text and "Structures the model sees" in text
    decided = [r for r in worklist(store) if r.decision is not None]
    assert sorted(r.decision.label for r in decided) == ["Agree with the model", "Follow-up", "Needs biopsy or excision"]
    assert [r.decision.note for r in decided if r.decision.decision == "biopsy"] == ["4 mm, 2 colours"]
    scale, diameter = store.measurements(case_id)
    assert scale.length_mm == 10 and diameter.length_mm > 0
    assert store.case(case_id).metadata.age == 41 and store.latest_prediction(case_id).metadata_used.age == 41
    assert store.case(case_id).metadata.site == Site("upper extremity", "hand")  # picked on the body map
    assert len(list(shots.glob("*.png"))) == 8
    letter_text = " ".join(p.extract_text() for p in PdfReader(letter).pages).replace("\n", " ")
    assert letter.name.startswith(f"letter_{lesion_images[0]}_") and len(PdfReader(letter).pages) == 1
    assert "Dr Smith, Plastic Surgery" in letter_text and "Excision of a changing lesion?" in letter_text
    assert letter_text.index("Our assessment") < letter_text.index("Decision support (not a diagnosis)")


@pytest.mark.data  # real SIIM-ISIC DICOMs where present
def test_an_outcome_recorded_shows_on_the_clinic_record_and_a_refit_is_refused(running_app, tmp_path):
    """Issue 27's walk: an administrator imports three images, records a histopathology outcome on a case (shown on
    the case page), opens the record at this clinic (one verified case, too few malignant lesions to judge) and asks
    for a refit, which is refused with the minimum counts named."""
    url, data = running_app
    _account(data, "dradmin", "Dr Admin", role="admin")
    folder = _dicom_folder(tmp_path)
    screenshot = Path(os.environ.get("SKINAPP_SCREENSHOT_DIR", tmp_path)) / "clinic_record.png"
    result_date = dt.date.today() - dt.timedelta(days=16)  # not today's (the form's default)
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser, page = _signed_in_page(playwright, url, "dradmin", height=1900)
        sidebar = page.get_by_test_id("stSidebar")
        main = page.get_by_test_id("stMain")

        sidebar.get_by_role("link", name="Import").click()
        page.locator("input[type=file][webkitdirectory]").set_input_files(folder)
        page.get_by_role("button", name="Import and analyse").click()  # waits until the upload enabled it
        page.get_by_text("case(s) in the worklist from this import").wait_for()
        assert "3 case(s) in the worklist from this import (3 new, 3 analysed)" in page.content()

        # The outcome, on the first case of the queue
        sidebar.get_by_role("link", name="Case review").click()
        page.get_by_text("Malignancy probability").first.wait_for()
        page.get_by_text("Outcome: none recorded yet.").wait_for()
        case_id = int(page.url.rsplit("case=", 1)[1])
        _idle(page)
        page.get_by_text("Record the outcome (histopathology or follow-up)").click()
        save = page.get_by_role("button", name="Save the outcome")
        save.wait_for()
        _idle(page)
        form = main.get_by_test_id("stForm").filter(has=save)
        kind, diagnosis = form.get_by_test_id("stSelectbox").nth(0), form.get_by_test_id("stSelectbox").nth(1)
        sync_api.expect(kind.get_by_role("combobox")).to_have_value("Histopathology result")  # the first choice
        diagnosis.get_by_role("combobox").click()
        page.keyboard.type("Dysplastic")  # the list is long (and drawn only where it shows): narrowed, as one types
        page.get_by_role("option", name="Dysplastic / Clark nevus (NV, benign)").click()
        sync_api.expect(diagnosis.get_by_role("combobox")).to_have_value("Dysplastic / Clark nevus (NV, benign)")
        when = form.get_by_test_id("stDateInputField")  # a date field of year, month and day segments, typed into
        for part, value in (("year", f"{result_date:%Y}"), ("month", f"{result_date:%m}"), ("day", f"{result_date:%d}")):
            when.locator(f"[role=spinbutton][data-type={part}]").click()
            page.keyboard.type(value)
        for part, value in (("year", result_date.year), ("month", result_date.month), ("day", result_date.day)):
            sync_api.expect(when.locator(f"[data-type={part}]")).to_have_attribute("aria-valuenow", str(value))
        form.get_by_label("Laboratory reference (optional)").fill("H26-04711")
        save.click()
        shown = f"Histopathology result: Dysplastic / Clark nevus (DN), {result_date.isoformat()}"
        page.get_by_text(re.compile("^Outcome saved: " + re.escape(shown).replace(":", "\u2060?:") + r"\.$")).wait_for()
        latest = main.get_by_text(re.compile(r"^Outcome: Histopathology result"))
        latest.wait_for()
        assert latest.inner_text().replace("\u2060", "") == (
            f"Outcome: {shown} (counts as NV, benign) · lab reference H26-04711 · entered by Dr Admin (dradmin)")

        # The record at this clinic counts it, and says it is too little to judge
        sidebar.get_by_role("link", name="Record at this clinic").click()
        page.wait_for_url("**/Clinic_record**")
        main.get_by_role("heading", name="The model's record at this clinic").wait_for()
        judgement = page.get_by_text(re.compile(r"^Only 0 verified malignant lesion"))
        judgement.wait_for()
        _idle(page)
        assert judgement.inner_text() == ("Only 0 verified malignant lesion(s), fewer than 20: the figures cannot be "
                                          "judged yet. The counts are shown as they stand; read no percentage from them.")
        assert "1 verified case(s), 0 malignant and 1 benign, 1 of them by histopathology." in main.inner_text()
        metrics = {m.get_by_test_id("stMetricLabel").inner_text().strip(): m.get_by_test_id("stMetricValue").inner_text()
                   for m in main.get_by_test_id("stMetric").all()}
        assert metrics == {"Verified cases": "1", "Malignant": "0", "Benign": "1", "By histopathology": "1"}

        # An administrator's refit: refused, with the minimum named
        page.get_by_role("button", name="Compute a refit").click()
        refusal = page.get_by_text(re.compile(r"^The refit is refused"))
        refusal.wait_for()
        assert refusal.inner_text().replace("\u2060", "") == (
            "The refit is refused: it needs at least 30 verified malignant and 100 verified benign lesions of this "
            "model; there are 0 and 1.")
        page.set_viewport_size({"width": 1400, "height": 3000})  # the page scrolls inside the app: tall enough for all of it
        _idle(page)
        main.get_by_role("heading", name="The model's record at this clinic").scroll_into_view_if_needed()
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    assert screenshot.stat().st_size > 10_000
    store = Store.open(f"sqlite:///{data / 'skinapp.db'}")
    (outcome,) = store.outcomes(case_id)
    assert (outcome.diagnosis, outcome.result_date.isoformat(), outcome.lab_reference, outcome.entered_by) == (
        "DN", result_date.isoformat(), "H26-04711", "Dr Admin (dradmin)")
    store.engine.dispose()


@pytest.mark.data  # the real SIIM-ISIC DICOMs, in a scratch Orthanc
def test_a_study_pulled_from_the_pacs_is_decided_and_its_result_sent_back(app_with_pacs, tmp_path, pacs):
    url, data = app_with_pacs
    _account(data, "drpacs", "Dr P. Acs")
    screenshot = Path(os.environ.get("SKINAPP_SCREENSHOT_DIR", tmp_path)) / "pacs.png"
    with sync_api.sync_playwright() as playwright:
        browser, page = _signed_in_page(playwright, url, "drpacs", height=1400)
        page.get_by_test_id("stSidebar").get_by_role("link", name="Import").click()
        page.get_by_text("From the clinic's PACS").click()
        page.get_by_label("Patient ID", exact=True).fill("ISIC_0095805")
        page.get_by_role("button", name="Search the PACS").click()
        page.get_by_text("1 study found: import these").wait_for()
        page.get_by_role("button", name="Import and analyse 1 study from the PACS").click()
        page.get_by_text("case(s) in the worklist from this import").wait_for()
        assert "1 case(s) in the worklist from this import (1 new, 1 analysed)" in page.content()
        assert "1 image(s) fetched from the PACS" in page.content()

        page.get_by_test_id("stSidebar").get_by_role("link", name="Case review").click()
        page.get_by_text("The result can be sent to the PACS once a decision is saved.").wait_for()
        page.get_by_text("Follow-up", exact=True).click()
        _ticked(page, "Follow-up")
        page.get_by_role("button", name="Save decision").click()
        page.get_by_text(re.compile(r"^Saved on .*: Follow-up")).wait_for()
        page.get_by_role("button", name="Send the result to the PACS").click()
        page.get_by_text("Sent: the PACS now holds the result").wait_for()
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    store = Store.open(f"sqlite:///{data / 'skinapp.db'}")
    [record] = store.case_records()
    [sent] = [e for e in store.audit_entries(record.case.id) if e.action == "result sent to PACS"]
    client = pacs.client()
    [report] = client.search_for_instances(search_filters={"SOPInstanceUID": sent.details["sr_sop_instance_uid"]},
                                           fields=["Modality"])
    assert report["00080060"]["Value"] == ["SR"]
