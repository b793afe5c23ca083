"""The `predict` command: cases in, one CSV row per case out, optional binary lesion masks."""

from __future__ import annotations

import csv
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from skinapp.inference.assessment import Assessor
from skinapp.inference.measurements import measure_lesion
from skinapp.inference.prediction import Prediction
from skinapp.inference.predictor import Predictor
from skinapp.inference.site import SiteProfile, SiteProfileError
from skinapp.io import Case, load_cases
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


def site_images(cases: Sequence[Case]) -> list[Case]:
    """The inputs a site profile may learn from: dermoscopy images, each image once (a file given twice, or two
    copies of one image, would weigh double)."""
    seen: set[str] = set()
    kept = []
    for case in cases:
        key = case.content_key or str(id(case))
        if case.is_dermoscopic and key not in seen:
            seen.add(key)
            kept.append(case)
    return kept


def run_predict(paths: Sequence[Path], out: Path, weights: Path, output_format: str = "isic2018",
                masks_dir: Path | None = None, metadata_csv: Path | None = None, tta: bool = True, chunk: int = 16,
                site_profile: Path | None = None, site_adapt: bool = False, save_profile: Path | None = None) -> int:
    """Returns the exit code: 0 if any case was analysed, 1 if none could be, 2 if the site profile asked for
    cannot be used (nothing is written then). `site_profile`: a profile file to analyse with; `site_adapt`: estimate
    one on the inputs themselves (at least MIN_SITE_IMAGES), and with `save_profile` keep it for later runs."""
    cases, report = load_cases(paths, metadata_csv=metadata_csv, keep_duplicates=True)  # a row for every input
    for rejection in report.rejected:
        print(f"skipped {rejection.file}: {rejection.reason}", file=sys.stderr)
    if not cases:
        print("error: no input could be read; nothing was analysed", file=sys.stderr)
        return 1
    predictor = Predictor.from_weights(weights, tta=tta, gradcam=False)
    try:
        if site_profile is not None:
            predictor.adapt_to_site(SiteProfile.load(site_profile))
        elif site_adapt:
            site_cases = site_images(cases)
            profile = predictor.estimate_site_profile([c.image for c in site_cases], [c.metadata for c in site_cases],
                                                      name=(save_profile.stem if save_profile else "these inputs"))
            if save_profile is not None:
                profile.save(save_profile)
            predictor.adapt_to_site(profile)
    except SiteProfileError as exc:
        print(f"error: {exc}; nothing was analysed", file=sys.stderr)
        return 2
    assessor = Assessor.from_weights(weights, predictor.card)
    if masks_dir is not None:
        masks_dir.mkdir(parents=True, exist_ok=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    columns = FULL_COLUMNS if output_format == "full" else ISIC2018_COLUMNS
    with open(out, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for start in range(0, len(cases), chunk):
            batch = cases[start:start + chunk]
            predictions = predictor.predict([c.image for c in batch], [c.metadata for c in batch])
            for case, prediction in zip(batch, predictions, strict=True):
                flags = assessor.assess(prediction, case.image, case.is_dermoscopic) if output_format == "full" else []
                row = csv_row(case, prediction, output_format, flags, predictor.identity)
                # The full table is read in spreadsheets: a file or patient name cannot become a formula there. The
                # ISIC format is read by the challenge's scorer, which matches image names as written.
                writer.writerow({k: spreadsheet_safe(v) for k, v in row.items()} if output_format == "full" else row)
                if masks_dir is not None:
                    mask: np.ndarray = prediction.outline.mask.astype(np.uint8) * 255
                    if case.original_size[0] and tuple(case.original_size) != (mask.shape[1], mask.shape[0]):
                        mask = cv2.resize(mask, case.original_size, interpolation=cv2.INTER_NEAREST)
                    cv2.imwrite(str(masks_dir / mask_file_name(case.name)), mask)
    print(f"{len(cases)} case(s) analysed with model {predictor.model_version} → {out}; {len(report.rejected)} file(s) skipped")
    return 0
