"""PDF and HTML case reports: named with the case (or patient) id and the date, labelled pictures, the model
version, the decision and the reviewer; small enough to send."""

import datetime as dt
import io

import pypdf
import pytest

from conftest import synthetic_lesion
from skinapp.inference import Predictor
from skinapp.io import InputFile
from skinapp.reporting.overlay import OVERLAYS
from skinapp.store import Store
from skinapp.workflow.analysis import import_and_analyse
from skinapp.workflow.reports import report_file


def _imported(tmp_path, weights, count=2, patient="P<7>"):
    from PIL import Image

    store = Store.open(f"sqlite:///{tmp_path / 'db.sqlite'}")
    files = []
    for seed in range(count):
        buffer = io.BytesIO()
        Image.fromarray(synthetic_lesion(600, 800, seed=seed)[0]).save(buffer, "PNG")
        files.append(InputFile.from_bytes(f"lesion{seed}.png", buffer.getvalue()))
    metadata = io.BytesIO(("image_name,patient_id,age_approx,sex,anatom_site_general_challenge\n" + "".join(
        f"lesion{s},{patient},60,male,torso\n" for s in range(count))).encode())
    result = import_and_analyse(files, store, Predictor.from_weights(weights), "Dr Import", metadata_csv=metadata)
    return store, result.case_ids


def _pdf_text(data: bytes) -> tuple[int, str]:
    reader = pypdf.PdfReader(io.BytesIO(data))
    return len(reader.pages), "\n".join(page.extract_text() for page in reader.pages)


def test_a_case_pdf_is_named_by_case_and_date_and_says_who_decided_what_on_which_model(tmp_path, tiny_weights):
    store, (case_id, _) = _imported(tmp_path, tiny_weights)
    shown = store.latest_prediction(case_id)
    store.record_decision(case_id, "Dr Ω Reviewer", "biopsy", note="raised <b>edge</b>", seen_prediction_id=shown.id)
    store.add_measurement(case_id, "Dr Ω Reviewer", "scale", [[10, 10], [110, 10]], 5.0)
    store.add_measurement(case_id, "Dr Ω Reviewer", "diameter", [[100, 100], [160, 180]])
    today = f"{dt.datetime.now(dt.UTC):%Y-%m-%d}"
    report = report_file(store, [case_id], "Dr Ω Reviewer", "pdf")
    assert report.name == f"lesion0_{today}.pdf" and report.mime == "application/pdf"
    _, text = _pdf_text(report.data)
    for expected in ("Case lesion0", "Patient", "P<7>", f"Model {shown.model_version}", "Needs biopsy or excision",
                     "Dr Ω Reviewer", "raised <b>edge</b>", "Decision support only", OVERLAYS[1], OVERLAYS[2],
                     "Longest diameter measured by Dr Ω Reviewer: 5.0 mm", "Scale: calibrated on the ruler"):
        assert expected in text.replace("\n", " "), expected
    pictures = sum(len(page.images) for page in pypdf.PdfReader(io.BytesIO(report.data)).pages)
    assert pictures >= 3   # the image, the outline and where the model looked (Grad-CAM where stored)


@pytest.mark.slow  # a couple of seconds or more: the full run has it
def test_a_patient_pdf_holds_each_of_their_cases_and_the_html_report_is_small(tmp_path, tiny_weights):
    store, case_ids = _imported(tmp_path, tiny_weights, count=3)
    report = report_file(store, case_ids, "Dr A", "pdf", patient_id="P<7>")
    assert report.name.startswith("patient_P_7_") and report.name.endswith(".pdf")
    pages, text = _pdf_text(report.data)
    assert pages >= 3 and all(f"Case lesion{i}" in text for i in range(3))
    html = report_file(store, case_ids[:1], "Dr A", "html")
    assert html.name.endswith(".html") and len(html.data) < 400_000      # JPEG pictures, not 4 MB of PNG
    page = html.data.decode()
    assert "data:image/jpeg;base64," in page and "data:image/png" not in page
    assert "<figcaption><b>Lesion outline</b>" in page and "P&lt;7&gt;" in page and "<7>" not in page


def test_a_report_of_no_stored_case_is_refused(tmp_path):
    store = Store.open(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with pytest.raises(ValueError, match="none of these cases"):
        report_file(store, [41], "Dr A")
