"""What the review screens and exports are made of, as pure functions over stored records (no Streamlit)."""

from __future__ import annotations

import base64
import csv
import html
import io
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image

from skinapp.explain import lesion_outline
from skinapp.inference import Prediction
from skinapp.overlay import heatmap_overlay, normalise, outline_overlay
from skinapp.store import Decision, StoredCase, StoredPrediction, WorklistRow
from skinapp.vocab import CLASS_NAMES, CLASSES

OVERLAYS = ("Image only", "Lesion outline and box", "Attention (σ(M))", "Refined mask (σ(M)·C)", "Grad-CAM")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+\-.!|~$:])")


def plain_markdown(text: object) -> str:
    """User text (names, notes, DICOM values) made inert inside st.markdown: every markup character escaped."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text))


def spreadsheet_safe(value: object) -> object:
    """A cell a spreadsheet will not run as a formula (CSV injection): text starting with = + - @ gets a quote."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def decision_rule_text(call: str, most_probable: str, most_probable_probability: float) -> str:
    """The balanced decision rule in a clinician's words, for the case page and the report."""
    text = ("The top diagnosis is chosen by a rule that gives rarer diagnoses, melanoma among them, a fair chance: "
            "it weighs each probability against how often the model says that diagnosis in general. The "
            "probabilities themselves are shown unchanged.")
    if call != most_probable:
        text += (f" Here the single most probable diagnosis is {CLASS_NAMES[most_probable]} "
                 f"({most_probable_probability:.0%}).")
    return text


def older_model_text(stored_version: str, installed_version: str) -> str:
    return (f"This result was made by an older model ({plain_markdown(stored_version)}), not the one now installed "
            f"({plain_markdown(installed_version)}). Import the case again to analyse it with the current model; "
            "this result and any decision on it are kept.")


def as_prediction(stored: StoredPrediction, image_shape: tuple[int, ...]) -> Prediction:
    """The stored numbers as an `inference.Prediction` for the image shown (the outline is recomputed from σ(M))."""
    height, width = image_shape[:2]
    return Prediction(
        probabilities=stored.probabilities, view_probabilities=stored.view_probabilities, embedding=stored.embedding,
        attention_grid=stored.attention_grid, refined_grid=stored.refined_grid, gradcam_grid=stored.gradcam_grid,
        outline=lesion_outline(stored.attention_grid, height, width), image_size=(height, width),
        model_version=stored.model_version, metadata_used=stored.metadata_used, temperature=stored.temperature,
        decision_scores=stored.decision_scores,
    )


def overlay(image: np.ndarray, prediction: Prediction, kind: str, opacity: float = 0.45,
            gradcam: np.ndarray | None = None) -> np.ndarray:
    """One of OVERLAYS drawn over the image. `gradcam` overrides the predicted class's map (another class)."""
    if kind == OVERLAYS[1]:
        return outline_overlay(image, prediction.outline.contour, prediction.outline.bbox)
    if kind == OVERLAYS[2]:
        return heatmap_overlay(image, prediction.attention_grid, opacity)
    if kind == OVERLAYS[3]:
        return heatmap_overlay(image, normalise(prediction.refined_grid), opacity)
    if kind == OVERLAYS[4]:
        cam = gradcam if gradcam is not None else prediction.gradcam()
        return image if cam is None else heatmap_overlay(image, cam, opacity)
    return image


@dataclass(frozen=True)
class Filters:
    status: str = "all"            # "all", "to review", "reviewed"
    flagged_only: bool = False
    diagnosis: str | None = None   # predicted class
    text: str = ""                 # matches case name or patient id


def apply_filters(rows: list[WorklistRow], filters: Filters) -> list[WorklistRow]:
    text = filters.text.strip().lower()
    kept = []
    for row in rows:
        if filters.status != "all" and row.status != filters.status:
            continue
        if filters.flagged_only and not (row.prediction is None or row.prediction.needs_manual_check):
            continue
        if filters.diagnosis and (row.prediction is None or row.prediction.predicted_class != filters.diagnosis):
            continue
        if text and text not in row.case.name.lower() and text not in (row.case.patient_id or "").lower():
            continue
        kept.append(row)
    return kept


def site_label(case: StoredCase) -> str:
    return case.metadata.site.label


def model_label(prediction: StoredPrediction | None, installed_weights_sha256: str | None) -> str:
    if prediction is None:
        return ""
    if installed_weights_sha256 is None or prediction.weights_sha256 == installed_weights_sha256:
        return "current"
    return f"older model ({prediction.model_version})"


def worklist_records(rows: list[WorklistRow], installed_weights_sha256: str | None = None) -> list[dict]:
    """One flat record per case: what the worklist shows and the CSV export writes. `model` says whether the
    prediction was made by the installed model or an older one."""
    records = []
    for row in rows:
        p, d = row.prediction, row.decision
        records.append({
            "case": row.case.name,
            "patient": row.case.patient_id or "",
            "site": site_label(row.case),
            "age": row.case.metadata.age,
            "sex": row.case.metadata.sex or "",
            "top_diagnosis": p.predicted_class if p else "not analysed",
            "top_probability": round(float(p.probabilities[CLASSES.index(p.predicted_class)]), 4) if p else None,
            "malignancy": round(p.malignancy, 4) if p else None,
            "malignancy_spread": round(p.malignancy_spread, 4) if p else None,
            "needs_manual_check": (p.needs_manual_check if p else True),
            "flags": "; ".join(f.reason for f in p.flags) if p else "not analysed",
            "ugly_duckling": round(row.context.ugly_duckling, 3) if row.context and row.context.ugly_duckling else None,
            "status": row.status,
            "decision": d.label if d else "",
            "reviewer": d.reviewer if d else "",
            "decided_at": d.created_at.isoformat(timespec="seconds") if d else "",
            "note": d.note if d else "",
            "model": model_label(p, installed_weights_sha256),
            "model_version": p.model_version if p else "",
            "weights_sha256": p.weights_sha256 if p else "",
            "source": row.case.source,
        })
    return records


def export_csv(rows: list[WorklistRow], installed_weights_sha256: str | None = None) -> bytes:
    records = worklist_records(rows, installed_weights_sha256)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(records[0]) if records else ["case"])
    writer.writeheader()
    for record in records:
        writer.writerow({k: spreadsheet_safe(v) for k, v in record.items()})
    return buffer.getvalue().encode("utf-8-sig")  # the BOM lets spreadsheet programs read the accents right


def _png_data_url(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def case_report_html(case: StoredCase, image: np.ndarray, stored: StoredPrediction | None,
                     history: list[Decision], generated_by: str) -> str:
    """A self-contained HTML page (images inline) for one case. Every user or file string is escaped."""
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>skinapp case report — {e(case.name)}</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}img{max-width:32%;margin:0.3%}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:0.2em 0.6em;text-align:left}</style>",
        "</head><body>",
        f"<h1>Case {e(case.name)}</h1>",
        "<p><b>Decision support only.</b> The model's output is not a diagnosis.</p>",
        "<table>",
        f"<tr><th>Patient</th><td>{e(case.patient_id or 'not given')}</td></tr>",
        f"<tr><th>Site</th><td>{e(site_label(case))}</td></tr>",
        f"<tr><th>Age / sex</th><td>{e(str(case.metadata.age or 'unknown'))} / {e(case.metadata.sex or 'unknown')}</td></tr>",
        f"<tr><th>Source</th><td>{e(case.source)}</td></tr>",
        "</table>",
    ]
    if stored is not None:
        prediction = as_prediction(stored, image.shape)
        pictures = [image, overlay(image, prediction, OVERLAYS[1]), overlay(image, prediction, OVERLAYS[2])]
        if stored.gradcam_grid is not None:
            pictures.append(overlay(image, prediction, OVERLAYS[4]))
        parts.append("<h2>Model output</h2><div>" + "".join(
            f"<img alt='{e(alt)}' src='{_png_data_url(p)}'>" for alt, p in zip(
                ("image", "lesion outline", "attention", "Grad-CAM"), pictures)) + "</div>")
        parts.append(f"<p>Model {e(stored.model_version)} (weights {e(stored.weights_sha256[:12])}), "
                     f"analysed {stored.created_at:%Y-%m-%d %H:%M} UTC.</p>")
        top = stored.predicted_class
        parts.append(f"<p>Top diagnosis: <b>{e(CLASS_NAMES[top])} ({top})</b>, "
                     f"{stored.probabilities[CLASSES.index(top)]:.0%}.</p>")
        if stored.follows_decision_rule:
            parts.append(f"<p>{e(decision_rule_text(top, stored.most_probable_class, float(stored.probabilities.max())))}</p>")
        parts.append(f"<p>Malignancy probability {stored.malignancy:.0%} (± {stored.malignancy_spread:.0%} across views).</p>")
        parts.append("<table><tr><th>Diagnosis</th><th>Probability</th></tr>" + "".join(
            f"<tr><td>{e(CLASS_NAMES[c])} ({c})</td><td>{p:.1%}</td></tr>"
            for c, p in prediction.class_probabilities().items()) + "</table>")
        if stored.flags:
            parts.append("<h2>Why to check this case</h2><ul>" + "".join(f"<li>{e(f.reason)}</li>" for f in stored.flags) + "</ul>")
    else:
        parts.append("<p>The model did not analyse this image.</p>")
    parts.append("<h2>Decisions</h2>")
    if history:
        parts.append("<table><tr><th>When (UTC)</th><th>Reviewer</th><th>Decision</th><th>Note</th></tr>" + "".join(
            f"<tr><td>{d.created_at:%Y-%m-%d %H:%M}</td><td>{e(d.reviewer)}</td><td>{e(d.label)}</td><td>{e(d.note)}</td></tr>"
            for d in history) + "</table>")
    else:
        parts.append("<p>No decision recorded yet.</p>")
    parts.append(f"<p><small>Report generated by {e(generated_by)}.</small></p></body></html>")
    return "\n".join(parts)
