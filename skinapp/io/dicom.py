"""DICOM files → one RGB image per frame with the metadata the model uses. pydicom 3 decodes every
transfer syntax behind `pixel_array`, which already returns RGB for YBR JPEG data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from skinapp.io.images import MAX_PIXELS, UnreadableImage
from skinapp.vocab import Metadata


@dataclass
class DicomFrame:
    image: np.ndarray
    frame: int | None
    metadata: Metadata
    patient_id: str | None
    study_date: str | None
    is_dermoscopic: bool


def _text(ds: pydicom.Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None:
        return None
    text = str(value).strip().strip('"').strip()
    return text or None


def is_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def _to_rgb_uint8(pixels: np.ndarray, samples: int) -> np.ndarray:
    if pixels.dtype != np.uint8:
        low, high = float(pixels.min()), float(pixels.max())
        pixels = ((pixels.astype(np.float32) - low) / max(high - low, 1e-6) * 255).astype(np.uint8)
    if samples == 1:
        pixels = np.repeat(pixels[..., None], 3, axis=-1)
    return np.ascontiguousarray(pixels)


def read_dicom(path: Path) -> list[DicomFrame]:
    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError:
        raise UnreadableImage("not a DICOM file") from None
    except Exception as exc:  # pydicom raises many types on damaged files
        raise UnreadableImage(f"DICOM file is damaged or truncated ({type(exc).__name__}: {exc})") from None
    if "PixelData" not in ds:
        raise UnreadableImage("DICOM file holds no image (no pixel data)")
    rows, columns = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if rows * columns > MAX_PIXELS:
        raise UnreadableImage(f"image is {columns}×{rows} pixels, larger than the {MAX_PIXELS:,} allowed")
    try:
        pixels = ds.pixel_array
    except Exception as exc:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", syntax) or "unknown"
        raise UnreadableImage(f"image data could not be decoded (transfer syntax {name}: {exc})") from None
    samples = int(ds.get("SamplesPerPixel", 1))
    stack = pixels if frames > 1 else pixels[None]
    metadata = Metadata.parse(_text(ds, "PatientAge"), _text(ds, "PatientSex"), _text(ds, "BodyPartExamined"))
    return [
        DicomFrame(
            image=_to_rgb_uint8(frame, samples),
            frame=index if frames > 1 else None,
            metadata=metadata,
            patient_id=_text(ds, "PatientID"),
            study_date=_text(ds, "StudyDate"),
            is_dermoscopic=samples == 3,
        )
        for index, frame in enumerate(stack)
    ]
