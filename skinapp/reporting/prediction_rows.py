"""One CSV row per analysed case, as `predict` writes it: the ISIC 2018 challenge's table (the decision rule's scores)
or the full one (probabilities, call, set, safety net, tier, lesion measurements, structures, flags, the model).
Every engine (`cli.predict`'s local one, `distributed`'s Ray one) writes these same rows."""

from __future__ import annotations

from collections.abc import Sequence

from skinapp.inference.measurements import measure_lesion
from skinapp.inference.prediction import Prediction
from skinapp.io import Case
from skinapp.reporting.text import spreadsheet_safe
from skinapp.trust.flags import Flag, needs_manual_check
from skinapp.vocab import CLASSES, STRUCTURES

ISIC2018_COLUMNS = ["image", *CLASSES]
FULL_COLUMNS = [
    *ISIC2018_COLUMNS, "predicted_class", "highest_probability_class", "prediction_set", "malignancy", "suspicious", "risk_tier",
    "mask_area_fraction", "bbox_x", "bbox_y", "bbox_width", "bbox_height", "lesion_size_mm",
    "lesion_area_px", "lesion_area_mm2", "longest_diameter_px", "longest_diameter_mm", "shape_asymmetry_long_axis",
    "shape_asymmetry_short_axis", "shape_asymmetric_axes", "border_irregularity", "colour_count", "colours", "flag",
    "flag_reasons",
    *(f"structure_{s}" for s in STRUCTURES), "patient_id", "dermoscopic", "source", "model_version", "model_id",
]


def mask_file_name(case_name: str) -> str:
    return case_name.replace("#", "_frame") + "_mask.png"


def csv_row(case: Case, prediction: Prediction, output_format: str, flags: Sequence[Flag] = (),
            model_id: str = "") -> dict[str, object]:
    """isic2018: the decision rule's scores, so that a scorer's argmax is the model's balanced call; full: the
    calibrated probabilities, the call (`predicted_class`) and the class of highest probability beside it, the
    90 % conformal set (`prediction_set`, e.g. "MEL|NV", the call first) and the melanoma safety net
    (`suspicious`: 1 at or above it; both empty for a model without them), and the lesion measurements from the
    outline (`measure_lesion`; pixel columns in the file's own pixels, mm where the file gives a pixel size), the
    calibrated probability of each dermoscopic structure (`structure_…`, empty for a model without structure heads), and
    the model (`model_version`, with the site profile where one was used, and `model_id`, its identity)."""
    values = prediction.probabilities
    if output_format == "isic2018" and prediction.decision_scores is not None:
        values = prediction.decision_scores
    row: dict[str, object] = {"image": case.name, **{c: f"{p:.6f}" for c, p in zip(CLASSES, values, strict=True)}}
    if output_format == "full":
        scale = case.original_size[0] / case.image.shape[1] if case.original_size[0] else 1.0
        bbox = prediction.outline.bbox
        x, y, w, h = [round(v * scale) for v in bbox] if bbox else ("", "", "", "")  # in the file's own pixels
        size_mm = case.length_mm(max(bbox[2:])) if bbox else None
        row.update(
            predicted_class=prediction.predicted_class, highest_probability_class=prediction.most_probable_class,
            prediction_set="|".join(prediction.prediction_set or ()), malignancy=f"{prediction.malignancy:.6f}",
            suspicious="" if prediction.suspicious is None else int(prediction.suspicious),
            risk_tier=prediction.risk_tier or "",
            mask_area_fraction=f"{prediction.outline.area_fraction:.4f}", bbox_x=x, bbox_y=y, bbox_width=w, bbox_height=h,
            lesion_size_mm="" if size_mm is None else f"{size_mm:.1f}",
            flag=int(needs_manual_check(list(flags))), flag_reasons=" | ".join(f.reason for f in flags),
            **_measurement_columns(case, prediction, scale),
            **{f"structure_{s}": "" if p is None else f"{p:.4f}" for s, p in _structures(prediction).items()},
            patient_id=case.patient_id or "", dermoscopic=int(case.is_dermoscopic), source=str(case.source),
            model_version=prediction.model_version, model_id=model_id,
        )
    return row


def _structures(prediction: Prediction) -> dict[str, float | None]:
    """Each structure's calibrated probability (None: the model reads no structures)."""
    found = prediction.structure_probabilities()
    return {s: found.get(s) for s in STRUCTURES}


def _measurement_columns(case: Case, prediction: Prediction, scale: float) -> dict[str, object]:
    measured = measure_lesion(prediction.outline.mask, case.image, case.mm_per_pixel)
    if measured is None:
        return {}
    area_mm2, diameter_mm = measured.area_mm2, measured.longest_diameter_mm
    return dict(
        lesion_area_px=round(measured.area_px * scale ** 2), lesion_area_mm2="" if area_mm2 is None else f"{area_mm2:.2f}",
        longest_diameter_px=f"{measured.longest_diameter_px * scale:.1f}",
        longest_diameter_mm="" if diameter_mm is None else f"{diameter_mm:.2f}",
        shape_asymmetry_long_axis=f"{measured.asymmetry[0]:.3f}",
        shape_asymmetry_short_axis=f"{measured.asymmetry[1]:.3f}", shape_asymmetric_axes=measured.asymmetric_axes,
        border_irregularity=f"{measured.border_irregularity:.3f}",
        colour_count=len(measured.colours), colours="|".join(measured.colours))


def written_row(row: dict[str, object], output_format: str) -> dict[str, object]:
    """The full table is read in spreadsheets: a file or patient name cannot become a formula there. The ISIC
    format is read by the challenge's scorer, which matches image names as written."""
    return {k: spreadsheet_safe(v) for k, v in row.items()} if output_format == "full" else row


def columns_of(output_format: str) -> list[str]:
    return FULL_COLUMNS if output_format == "full" else ISIC2018_COLUMNS
