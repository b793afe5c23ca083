"""Pixel decoding behind one function: `dicom_frames(ds, max_side)` gives RGB uint8 frames no larger than
asked, whatever the transfer syntax. Where the codec can decode at reduced size (JPEG DCT scaling in
libjpeg-turbo, JPEG 2000 resolution levels) the full-size array is never made; everything else goes through
pydicom's own decoders (with pylibjpeg / pyjpegls for what Pillow cannot do) and is resized after. Compressed
frames are checked for damage (`integrity.py`) on both paths: damaged data raises DamagedImageData."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pydicom
from PIL import Image
from pydicom.encaps import generate_frames
from pydicom.uid import JPEG2000, JPEG2000Lossless, JPEGBaseline8Bit, JPEGExtended12Bit

from skinapp.io.integrity import DamagedImageData, check_frame, check_j2k, decode_jpeg_strict, jpeg_header

DISPLAY_MAX_SIDE = 1024  # what the app shows and the model reads from; the model itself needs a few hundred pixels
ZOOM_MAX_SIDE = 2048  # the copy a reviewer zooms into, kept beside the display image where the file has more
MAX_PIXELS = 100_000_000  # per frame; larger than any dermatoscope frame, so larger means a decompression bomb
MAX_TOTAL_PIXELS = 1_000_000_000  # all frames of one file together
MAX_FRAMES = 64  # frames of one file: each becomes a case held in memory at display size


def jpeg_bytes(image: np.ndarray, quality: int = 90, max_side: int | None = None) -> bytes:
    """The image as JPEG, first fitted within max_side (None: as it is)."""
    picture = Image.fromarray(image)
    if max_side is not None:
        picture.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def fitted_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def shrink(image: Image.Image, max_side: int | None) -> np.ndarray:
    """RGB uint8 array fitted within max_side (aspect kept; never enlarged)."""
    image = image.convert("RGB")
    size = fitted_size(*image.size, max_side)
    if size != image.size:
        image = image.resize(size, Image.Resampling.BICUBIC, reducing_gap=2.0)
    return np.asarray(image)


# --- reduced-size decoders: each decodes one frame at least at the target size ----------------------------------

def _jpeg_scaled(frame: bytes, size: tuple[int, int], max_side: int, grey: bool) -> np.ndarray | None:
    # DCT scaling (1/8 … 8/8) in libjpeg-turbo, strict: a damaged stream raises instead of decoding to artefacts
    height, width, *_ = jpeg_header(frame)
    if (width, height) != size:
        return None
    decoded = decode_jpeg_strict(frame, fitted_size(*size, max_side), grey=grey)
    return decoded[..., 0] if decoded.ndim == 3 and decoded.shape[-1] == 1 else decoded


def _j2k_reduced(frame: bytes, size: tuple[int, int], max_side: int, grey: bool) -> np.ndarray | None:
    check_j2k(frame)
    image = Image.open(io.BytesIO(frame))
    if image.size != size:
        return None
    target, levels = max(fitted_size(*image.size, max_side)), 0
    while max(image.size) >> (levels + 1) >= target and levels < 5:
        levels += 1
    # Pillow's JPEG 2000 plugin decodes only the resolution levels needed when `reduce` is set to a level count
    image.reduce = levels  # type: ignore[method-assign,assignment]
    image.load()
    return np.asarray(image)


ReducedDecoder = Callable[[bytes, tuple[int, int], int, bool], "np.ndarray | None"]
_JPEG_PHOTOMETRICS = frozenset({"YBR_FULL_422", "YBR_FULL", "MONOCHROME2"})  # the decoder's output is then already RGB
_J2K_PHOTOMETRICS = frozenset({"RGB", "YBR_ICT", "YBR_RCT", "MONOCHROME2"})   # the codestream's own colour transform
_REDUCED_DECODERS: dict[str, tuple[ReducedDecoder, frozenset[str]]] = {
    JPEGBaseline8Bit: (_jpeg_scaled, _JPEG_PHOTOMETRICS),
    JPEGExtended12Bit: (_jpeg_scaled, _JPEG_PHOTOMETRICS),  # reached only with 8 bits stored
    JPEG2000Lossless: (_j2k_reduced, _J2K_PHOTOMETRICS),
    JPEG2000: (_j2k_reduced, _J2K_PHOTOMETRICS),
}


def _reduced_frames(ds: pydicom.Dataset, frames: int, max_side: int) -> list[np.ndarray] | None:
    """None where no reduced decoder applies or the codestream looks odd: the general path then decides.
    Damaged data raises DamagedImageData."""
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    decode, photometrics = _REDUCED_DECODERS.get(str(syntax), (None, frozenset()))
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if decode is None or photometric not in photometrics:
        return None
    if int(ds.get("BitsStored", 8)) != 8 or not ds["PixelData"].is_undefined_length:
        return None
    size = (int(ds.Columns), int(ds.Rows))
    result = []
    try:
        for frame in generate_frames(ds.PixelData, number_of_frames=frames):
            decoded = decode(frame, size, max_side, photometric == "MONOCHROME2")
            if decoded is None:
                return None
            result.append(shrink(Image.fromarray(decoded), max_side))
    except DamagedImageData:
        raise
    except Exception:
        return None
    return result


# --- the general path ------------------------------------------------------------------------------------------

def _to_display_rgb(frame: np.ndarray, ds: pydicom.Dataset) -> np.ndarray:
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    bits = int(ds.get("BitsStored", 8) or 8)
    if photometric == "PALETTE COLOR":
        frame = pydicom.pixels.apply_color_lut(frame, ds)
        bits = int(ds.RedPaletteColorLookupTableDescriptor[2])  # the palette's own entry size
    if frame.ndim == 2:  # monochrome: rescale and window as the file says, then stretch to 8 bits
        frame = pydicom.pixels.apply_voi_lut(pydicom.pixels.apply_modality_lut(frame, ds), ds).astype(np.float64)
        low, high = float(frame.min()), float(frame.max())
        frame = (frame - low) / max(high - low, 1e-9) * 255
        if photometric == "MONOCHROME1":
            frame = 255 - frame
        frame = np.repeat(frame[..., None], 3, axis=-1)
    elif frame.dtype != np.uint8 or bits > 8:  # colour deeper than 8 bits: scale by the range the file can hold
        frame = frame.astype(np.float64) * (255 / (2 ** bits - 1))
    if frame.shape[-1] != 3:
        raise ValueError(f"{frame.shape[-1]} samples per pixel")
    return np.clip(frame, 0, 255).astype(np.uint8)


def _general_frames(ds: pydicom.Dataset, frames: int, max_side: int | None) -> list[np.ndarray]:
    if ds["PixelData"].is_undefined_length:  # encapsulated: check each compressed frame before trusting a decode
        for frame in generate_frames(ds.PixelData, number_of_frames=frames):
            check_frame(frame)
    pixels = ds.pixel_array
    stack = pixels if frames > 1 else pixels[None]
    return [shrink(Image.fromarray(_to_display_rgb(frame, ds)), max_side) for frame in stack]


def frame_count(ds: pydicom.Dataset) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def dicom_frames(ds: pydicom.Dataset, max_side: int | None = DISPLAY_MAX_SIDE) -> list[np.ndarray]:
    """Every frame as RGB uint8 fitted within max_side (None: full size). Raises on undecodable data."""
    frames = frame_count(ds)
    reduced = _reduced_frames(ds, frames, max_side) if max_side is not None else None
    return reduced if reduced is not None else _general_frames(ds, frames, max_side)
