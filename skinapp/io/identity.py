"""The content key: what names an image, so that the same image imported again is the same case
(`Case.content_key`, for the store to find it by).

It is a SHA-256 of what the file stores, not of what the importer makes of it, so no change to the decoding or
the resizing (library versions, DCT scaling, the resampler, the display size) ever changes it:

- compressed data (JPEG files; every compressed frame inside DICOM, lossy or not): the coded stream itself,
  without the metadata segments a camera or an anonymiser adds or removes (`codestream.strip_metadata`), so a
  de-identified copy keeps the key;
- uncompressed DICOM: the stored bytes of each frame; PNG, BMP and TIFF: their decoded values, which every
  decoder gives alike;
- with what decides how those become pixels (DICOM: size, bits, photometric interpretation, transfer syntax;
  image files: the EXIF orientation, the palette).

Keys of different kinds never meet: the kind and these details are hashed first, so a JPEG file and a DICOM file
that wraps the same stream are two cases, as are a PNG and a DICOM holding the same values.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import numpy as np
import pydicom
from pydicom.encaps import generate_frames

from skinapp.io.codestream import strip_metadata

_DOMAIN = b"skinapp content key v1\0"
_DICOM_DETAILS = ("Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "BitsStored", "PixelRepresentation",
                  "PhotometricInterpretation", "PlanarConfiguration")
_PALETTE_DATA = ("RedPaletteColorLookupTableData", "GreenPaletteColorLookupTableData",
                 "BluePaletteColorLookupTableData", "SegmentedRedPaletteColorLookupTableData")


def content_key(kind: str, payload: bytes | np.ndarray, details: Mapping[str, object] | None = None) -> str:
    """SHA-256 (hex, 64 characters) of `payload` under its kind and details. bytes: a coded stream, hashed without
    its metadata segments; an array: pixel values, hashed with their type and shape."""
    digest = hashlib.sha256(_DOMAIN)
    described = "\0".join(f"{name}={value}" for name, value in sorted((details or {}).items()))
    digest.update(f"{kind}\0{described}\0\0".encode())
    if isinstance(payload, np.ndarray):
        array = np.ascontiguousarray(payload)
        digest.update(f"{array.dtype.str}{array.shape}\0".encode())
        if array.size:
            digest.update(array.data.cast("B"))  # the values' bytes, not copied
    else:
        digest.update(strip_metadata(payload))
    return digest.hexdigest()


def display_pixels_key(image: np.ndarray) -> str:
    """The name the store gave a case before content keys: SHA-256 of the display image's pixels and shape. It
    changes whenever the decoding or resizing does (issue 25 moved large JPEG images by about 0.5/255), so it
    serves only to find cases stored under it."""
    return hashlib.sha256(np.ascontiguousarray(image).tobytes() + str(image.shape).encode()).hexdigest()


def jpeg_file_key(data: bytes, orientation: int = 1) -> str:
    """A JPEG file: its coded stream, and how the EXIF orientation turns it."""
    return content_key("jpeg file", data, {"orientation": orientation})


def pixels_key(pixels: np.ndarray, mode: str, palette: bytes | None = None) -> str:
    """An image file decoded exactly (PNG, BMP, TIFF): its stored values as they are shown (orientation applied)."""
    details: dict[str, object] = {"mode": mode}
    if palette:
        details["palette"] = hashlib.sha256(palette).hexdigest()
    return content_key("image pixels", pixels, details)


def _dicom_details(ds: pydicom.Dataset) -> dict[str, object]:
    details: dict[str, object] = {}
    for keyword in _DICOM_DETAILS:
        try:
            details[keyword] = str(ds.get(keyword, "")).strip().strip('"').strip()
        except Exception:  # a malformed value still names something: keep it out rather than fail the file
            details[keyword] = "?"
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    details["TransferSyntaxUID"] = str(syntax or "")
    if details["PhotometricInterpretation"] == "PALETTE COLOR":
        palette = hashlib.sha256()
        for keyword in _PALETTE_DATA:
            value = ds.get(keyword)
            palette.update(value if isinstance(value, bytes) else b"")
        details["palette"] = palette.hexdigest()
    return details


def dicom_frame_keys(ds: pydicom.Dataset, frames: int) -> list[str]:
    """One key per frame, from the dataset's pixel data as stored: each compressed frame's coded stream, or each
    uncompressed frame's bytes. Raises where the pixel data cannot be split into `frames` frames."""
    details = _dicom_details(ds)
    data = ds.PixelData
    if ds["PixelData"].is_undefined_length:
        coded = list(generate_frames(data, number_of_frames=frames))
        return [content_key("dicom frame", frame, details) for frame in coded]
    bits = int(ds.get("BitsAllocated", 8) or 8)
    if bits % 8 or frames == 1:  # packed bits cross frame boundaries: the whole data names each frame with its index
        whole = np.frombuffer(data, np.uint8)
        return [content_key("dicom pixels", whole, {**details, "frame": index}) for index in range(frames)]
    length = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1) or 1) * bits // 8
    if length * frames > len(data):
        raise ValueError(f"pixel data holds {len(data):,} bytes, {length * frames:,} expected")
    return [content_key("dicom pixels", np.frombuffer(data, np.uint8, length, index * length), details)
            for index in range(frames)]
