"""The model service's message bodies: one npz archive (read without pickle) holding the arrays and one JSON
document. Images travel as their decoded pixels, so the service analyses exactly what the app decoded; predictions
travel whole, every field of `Prediction`, so a result made by the service is the result made in process.

numpy only: the app's side of the service never loads torch."""

from __future__ import annotations

import dataclasses
import io
import json
import typing
import zipfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from skinapp.inference.prediction import Prediction
from skinapp.vocab import Metadata, Site

CONTENT_TYPE = "application/x-skinapp-npz"
API_PREFIX = "/v1"
_DOCUMENT = "__document__"


class WireError(ValueError):
    """A body that is not a message of this API."""


def pack(document: dict, arrays: dict[str, np.ndarray] | None = None) -> bytes:
    buffer = io.BytesIO()
    contents: dict[str, Any] = {_DOCUMENT: np.frombuffer(json.dumps(document).encode(), np.uint8), **(arrays or {})}
    np.savez(buffer, **contents)
    return buffer.getvalue()


def unpack(body: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    try:
        with np.load(io.BytesIO(body), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        document = json.loads(arrays.pop(_DOCUMENT).tobytes())
    except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise WireError(f"not a message of this API: {exc}") from None
    if not isinstance(document, dict):
        raise WireError("not a message of this API: its document is not an object")
    return document, arrays


def metadata_document(meta: Metadata) -> dict:
    return {"age": meta.age, "sex": meta.sex, "site_region": meta.site.region, "site_fine": meta.site.fine}


def metadata_from(document: dict | None) -> Metadata:
    document = document or {}
    return Metadata(document.get("age"), document.get("sex"),
                    Site(document.get("site_region"), document.get("site_fine")))


def images_message(images: Sequence[np.ndarray], metadata: Sequence[Metadata | None], **document: Any) -> bytes:
    """A request about images (RGB uint8) with the metadata of each, and any options as JSON."""
    if len(images) != len(metadata):
        raise ValueError("one metadata entry per image")
    document["metadata"] = [metadata_document(m or Metadata()) for m in metadata]
    return pack(document, {f"image{i}": np.ascontiguousarray(image) for i, image in enumerate(images)})


def read_images_message(body: bytes) -> tuple[list[np.ndarray], list[Metadata], dict]:
    document, arrays = unpack(body)
    entries = document.pop("metadata", None)
    if not isinstance(entries, list) or len(entries) != len(arrays):
        raise WireError("the request names a different number of images and metadata entries")
    images = [arrays[f"image{i}"] for i in range(len(entries)) if f"image{i}" in arrays]
    if len(images) != len(entries):
        raise WireError("the request's images are not numbered image0, image1, …")
    for image in images:
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
            raise WireError(f"an image must be RGB uint8 (height, width, 3), not {image.dtype} {image.shape}")
    return images, [metadata_from(e) for e in entries], document


_TUPLES = ("image_size", "prediction_set")


def _holds_array(hint: Any) -> bool:
    """Whether a resolved annotation is an array, or a union / alias with an array in it."""
    return hint is np.ndarray or typing.get_origin(hint) is np.ndarray or any(_holds_array(a) for a in typing.get_args(hint))


_ARRAY_FIELDS = frozenset(name for name, hint in typing.get_type_hints(Prediction).items() if _holds_array(hint))


def _is_array_field(field: dataclasses.Field) -> bool:
    return field.name in _ARRAY_FIELDS


def predictions_message(predictions: Sequence[Prediction], **document: Any) -> bytes:
    """Every field of each prediction: arrays into the archive, the rest into the document."""
    arrays: dict[str, np.ndarray] = {}
    scalars = []
    for i, prediction in enumerate(predictions):
        fields: dict[str, Any] = {}
        for field in dataclasses.fields(prediction):
            value = getattr(prediction, field.name)
            if _is_array_field(field):
                if value is not None:
                    arrays[f"{i}.{field.name}"] = np.asarray(value)
            elif isinstance(value, Metadata):
                fields[field.name] = metadata_document(value)
            elif isinstance(value, tuple):
                fields[field.name] = list(value)
            else:
                fields[field.name] = value
        scalars.append(fields)
    document["predictions"] = scalars
    return pack(document, arrays)


def read_predictions_message(body: bytes) -> tuple[list[Prediction], dict]:
    document, arrays = unpack(body)
    predictions = []
    array_fields = [f.name for f in dataclasses.fields(Prediction) if _is_array_field(f)]
    try:
        for i, fields in enumerate(document.pop("predictions")):
            values = dict(fields)
            values["metadata_used"] = metadata_from(values.get("metadata_used"))
            for name in _TUPLES:
                if values.get(name) is not None:
                    values[name] = tuple(values[name])
            for name in array_fields:
                values[name] = arrays.get(f"{i}.{name}")
            predictions.append(Prediction(**values))
    except (KeyError, TypeError) as exc:
        raise WireError(f"the predictions in the answer are incomplete: {exc}") from None
    return predictions, document
