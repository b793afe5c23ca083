"""How records become database rows and back: images as PNG and JPEG thumbnails, arrays as npz, metadata as
columns. Pure functions."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from skinapp.inference.prediction import Prediction
from skinapp.io.case import Acquisition
from skinapp.io.pixels import jpeg_bytes
from skinapp.store.records import Decision, Outcome, StoredCase, StoredPrediction
from skinapp.trust.flags import Flag
from skinapp.vocab import CLASSES, Metadata, Site

THUMBNAIL_SIDE = 160


def as_utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)  # SQLite forgets the zone


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG", compress_level=3)
    return buffer.getvalue()


def thumbnail_jpeg(image: np.ndarray) -> bytes:
    return jpeg_bytes(image, quality=85, max_side=THUMBNAIL_SIDE)


def pack_arrays(**arrays: np.ndarray | None) -> bytes:
    buffer = io.BytesIO()
    present: dict[str, Any] = {k: v for k, v in arrays.items() if v is not None}
    np.savez_compressed(buffer, **present)
    return buffer.getvalue()


def set_mask(prediction_set: tuple[str, ...] | None) -> np.ndarray | None:
    """A conformal set as a boolean per class (its order follows from the decision scores)."""
    return None if prediction_set is None else np.asarray([c in prediction_set for c in CLASSES])


def set_from_mask(mask: np.ndarray | None, scores: np.ndarray) -> tuple[str, ...] | None:
    """The stored set, the top call first then by decreasing score, as the Predictor made it."""
    if mask is None:
        return None
    return tuple(CLASSES[k] for k in np.argsort(-scores, kind="stable") if mask[k])


def unpack_arrays(blob: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(blob), allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def metadata_columns(meta: Metadata) -> dict:
    return {"age": meta.age, "sex": meta.sex, "site_region": meta.site.region, "site_fine": meta.site.fine}


def metadata_from(values: dict) -> Metadata:
    return Metadata(values.get("age"), values.get("sex"), Site(values.get("site_region"), values.get("site_fine")))


def case_from_row(row, edits: Sequence[dict] = (), ruler_mm_per_pixel: float | None = None) -> StoredCase:
    """edits: a reviewer's corrections in the order they were made, each {column: value}; the latest wins."""
    spacing = row["pixel_spacing_mm"]
    row = dict(row)
    edited: dict[str, None] = {}
    for changes in edits:
        row.update(changes)
        edited.update(dict.fromkeys(changes))
    return StoredCase(
        id=row["id"], name=row["name"], source=row["source"], frame=row["frame"], patient_id=row["patient_id"],
        lesion_id=row["lesion_id"], study_date=row["study_date"], metadata=metadata_from(row),
        is_dermoscopic=row["is_dermoscopic"], original_size=(row["original_width"] or 0, row["original_height"] or 0),
        pixel_spacing_mm=tuple(spacing) if spacing else None, acquisition=Acquisition(**(row["acquisition"] or {})),
        notes=list(row["notes"] or []), imported_at=as_utc(row["imported_at"]), imported_by=row["imported_by"],
        edited=tuple(edited), ruler_mm_per_pixel=ruler_mm_per_pixel, sop_instance_uid=row.get("sop_instance_uid"),
    )


PNG_HEADER_BYTES = 24  # signature, IHDR length and type, width, height


def png_size(header: bytes) -> tuple[int, int]:
    """(height, width) from the first PNG_HEADER_BYTES of a PNG file."""
    if len(header) < PNG_HEADER_BYTES or header[12:16] != b"IHDR":
        raise ValueError("not the start of a PNG file")
    return int.from_bytes(header[20:24], "big"), int.from_bytes(header[16:20], "big")


def prediction_arrays(prediction: Prediction) -> bytes:
    """Everything of a prediction that is not a column, as one npz blob. The encoder features are left out: the
    out-of-distribution check reads them once, when the flags are raised, and at members × 1,280 floats they would
    be most of the row (and of the decoded predictions each app process keeps)."""
    return pack_arrays(
        view_probabilities=prediction.view_probabilities, embedding=prediction.embedding,
        attention_grid=prediction.attention_grid, refined_grid=prediction.refined_grid,
        gradcam_grid=prediction.gradcam_grid, decision_scores=prediction.decision_scores,
        prediction_set=set_mask(prediction.prediction_set),
        suspicious=None if prediction.suspicious is None else np.asarray(prediction.suspicious),
        image_size=np.asarray(prediction.image_size),
        risk_tier=None if prediction.risk_tier is None else np.asarray(prediction.risk_tier),
        structures=prediction.structures, structure_grids=prediction.structure_grids,
    )


def prediction_from_row(row, image_header: bytes | None = None) -> StoredPrediction:
    """`image_header`: the start of the case's stored PNG, whose size is the analysed image's for predictions
    stored before they carried their own `image_size`."""
    arrays = unpack_arrays(row["arrays"])
    if "image_size" in arrays:
        height, width = (int(v) for v in arrays["image_size"])
    elif image_header is not None:
        height, width = png_size(image_header)
    else:
        raise ValueError(f"prediction {row['id']} does not say what size of image it was made on")
    return StoredPrediction(
        id=row["id"], case_id=row["case_id"], model_version=row["model_version"], weights_sha256=row["weights_sha256"],
        created_at=as_utc(row["created_at"]), probabilities=np.asarray([row["probabilities"][c] for c in CLASSES]),
        view_probabilities=arrays["view_probabilities"], embedding=arrays["embedding"],
        attention_grid=arrays["attention_grid"], refined_grid=arrays["refined_grid"],
        gradcam_grid=arrays.get("gradcam_grid"), image_size=(height, width), flags=[Flag(**f) for f in row["flags"]],
        metadata_used=metadata_from(row["metadata_used"]), temperature=row["temperature"],
        decision_scores=arrays.get("decision_scores"),
        prediction_set=set_from_mask(arrays.get("prediction_set"), _set_order(row, arrays)),
        suspicious=bool(arrays["suspicious"]) if "suspicious" in arrays else None,
        risk_tier=str(arrays["risk_tier"]) if "risk_tier" in arrays else None,
        structures=arrays.get("structures"), structure_grids=arrays.get("structure_grids"),
    )


def _set_order(row, arrays: dict[str, np.ndarray]) -> np.ndarray:
    scores = arrays.get("decision_scores")
    return scores if scores is not None else np.asarray([row["probabilities"][c] for c in CLASSES])


def decision_from_row(row) -> Decision:
    return Decision(row["id"], row["case_id"], row["reviewer"], as_utc(row["created_at"]), row["decision"],
                    row["diagnosis"], row["note"] or "", row["replaces_id"], row["prediction_id"], row["model_version"],
                    row["predicted_class"])


def outcome_from_row(row) -> Outcome:
    result_date = row["result_date"]
    if isinstance(result_date, str):  # SQLite through a plain query
        result_date = dt.date.fromisoformat(result_date)
    return Outcome(row["id"], row["case_id"], row["kind"], result_date, row["diagnosis"], row["breslow_mm"],
                   row["diagnosis_text"], row["lab_reference"], row["note"] or "", row["entered_by"],
                   as_utc(row["entered_at"]), row["replaces_id"])
