"""Pixel decoding behind one function: `decode_dicom(ds, largest_side)` decodes each frame once, at least as large
as the largest copy wanted, and every copy (the display image, the zoom copy) is made from that one decode
(`Decoded.copy`). Where the codec can decode at reduced size (JPEG DCT scaling in libjpeg-turbo, JPEG 2000
resolution levels) the full-size array is never made; everything else goes through pydicom's own decoders (with
pylibjpeg / pyjpegls for what Pillow cannot do) and is resized after. Compressed frames are checked for damage
(`integrity.py`) on both paths: damaged data raises DamagedImageData.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import pydicom
import simplejpeg
from PIL import Image
from pydicom.encaps import generate_frames
from pydicom.uid import JPEG2000, JPEG2000Lossless, JPEGBaseline8Bit, JPEGExtended12Bit

from skinapp.io.identity import dicom_frame_keys
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


def encode_jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    """RGB uint8 → JPEG (4:2:0, as Pillow writes at this quality), by libjpeg-turbo straight from the array: no
    copy into a Pillow image, at under half of `jpeg_bytes`'s time for a zoom copy."""
    return simplejpeg.encode_jpeg(np.ascontiguousarray(image), quality=quality, colorspace="RGB", colorsubsampling="420")


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


def zoom_side(size: tuple[int, int], max_side: int | None, zoom_max_side: int | None) -> int | None:
    """The side of the zoom copy kept beside an image of `size` (width, height) shown fitted within max_side:
    None where the image has no more pixels than the display image, or no larger copy is asked for."""
    if max_side is None or zoom_max_side is None or zoom_max_side <= max_side or max(size) <= max_side:
        return None
    return zoom_max_side


def _as_rgb(pixels: np.ndarray) -> np.ndarray:
    if pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[-1] == 3:
        return pixels
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    return np.asarray(Image.fromarray(pixels).convert("RGB"))


def _fit(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Shrunk to size (width, height): area-averaged where it shrinks 1.5× or more, bilinear below that (the zoom
    copy from a zoom-size decode, about 1.1×: every pixel still counts, and on the real 6000×4000 DICOMs it is
    within 0.3/255 of area-averaging, at a fifth of its time)."""
    width, height = size
    have_height, have_width = pixels.shape[:2]
    if (have_width, have_height) == size:
        return pixels
    if width > have_width or height > have_height:
        raise ValueError(f"a {width}×{height} copy asked of a {have_width}×{have_height} decode")
    area = max(have_width / width, have_height / height) >= 1.5
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA if area else cv2.INTER_LINEAR)


@dataclass(frozen=True)
class Decoded:
    """One image decoded once, and every copy made from it."""

    pixels: np.ndarray          # RGB uint8 (H, W, 3): at least as large as any copy asked of it, or full size
    size: tuple[int, int]       # (width, height) of the image at full size, as shown
    content_key: str            # identity.py: from the stored data, whatever the decoding
    taken_on: str | None = None  # ISO date the file says the picture was taken (`capture_date.py`)

    @property
    def full_size(self) -> bool:
        return (self.pixels.shape[1], self.pixels.shape[0]) == self.size

    def copy(self, max_side: int | None) -> np.ndarray:
        """RGB uint8 fitted within max_side (aspect kept; never enlarged beyond the file), made from this decode.
        A full-size decode is resized as the importer always did (`shrink`: bicubic, reduced first where it shrinks
        more than 2×); a reduced-size decode, where the codec has already done the large step, by `_fit`."""
        if self.full_size:
            return shrink(Image.fromarray(self.pixels), max_side)
        return _fit(self.pixels, fitted_size(*self.size, max_side))

    def copies(self, max_side: int | None, zoom_side: int | None) -> tuple[np.ndarray, bytes | None]:
        """The display image fitted within max_side, and the zoom copy fitted within zoom_side as JPEG (None where
        zoom_side is None). From a reduced-size decode the display image is area-averaged from the zoom copy: on the
        real 6000×4000 DICOMs closer to an area average of the full-size image than the importer's display image
        was before, in 40 % less time than from the decode. From a full-size decode both are made from it, as
        they always were."""
        if zoom_side is None:
            return self.copy(max_side), None
        zoom = self.copy(zoom_side)
        display = self.copy(max_side) if self.full_size else _fit(zoom, fitted_size(*self.size, max_side))
        return display, encode_jpeg(zoom, quality=90)


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


def _reduced_decodes(ds: pydicom.Dataset, frames: int, largest_side: int) -> list[Decoded] | None:
    """Each frame decoded once at reduced size, at least fitted within largest_side. None where no reduced decoder
    applies or the codestream looks odd: the general path then decides. Damaged data raises DamagedImageData."""
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
        keys = dicom_frame_keys(ds, frames)
        for frame, key in zip(generate_frames(ds.PixelData, number_of_frames=frames), keys, strict=True):
            pixels = decode(frame, size, largest_side, photometric == "MONOCHROME2")
            if pixels is None:
                return None
            decoded = Decoded(_as_rgb(pixels), size, key)
            # several frames: each fitted as it comes, so memory holds one at decoded size (they get no zoom copy)
            result.append(decoded if frames == 1 else Decoded(decoded.copy(largest_side), size, key))
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


def _general_decodes(ds: pydicom.Dataset, frames: int, largest_side: int | None) -> list[Decoded]:
    """Each frame decoded at full size by pydicom. A single frame is kept at full size, for its copies to be made
    from; each of several frames is fitted within largest_side as it comes, so memory holds one at full size."""
    if ds["PixelData"].is_undefined_length:  # encapsulated: check each compressed frame before trusting a decode
        for frame in generate_frames(ds.PixelData, number_of_frames=frames):
            check_frame(frame)
    pixels = ds.pixel_array
    stack = pixels if frames > 1 else pixels[None]
    size = (int(ds.Columns), int(ds.Rows))
    keys = dicom_frame_keys(ds, frames)
    result = []
    for frame, key in zip(stack, keys, strict=True):
        rgb = _to_display_rgb(frame, ds)
        result.append(Decoded(rgb if frames == 1 else shrink(Image.fromarray(rgb), largest_side), size, key))
    return result


def frame_count(ds: pydicom.Dataset) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def decode_dicom(ds: pydicom.Dataset, largest_side: int | None = DISPLAY_MAX_SIDE) -> list[Decoded]:
    """Every frame decoded once, at least as large as fitted within largest_side (None: full size), for its copies
    to be made from (`Decoded.copy`). Raises on undecodable data; DamagedImageData on damaged data."""
    frames = frame_count(ds)
    reduced = _reduced_decodes(ds, frames, largest_side) if largest_side is not None else None
    return reduced if reduced is not None else _general_decodes(ds, frames, largest_side)


def dicom_frames(ds: pydicom.Dataset, max_side: int | None = DISPLAY_MAX_SIDE) -> list[np.ndarray]:
    """Every frame as RGB uint8 fitted within max_side (None: full size). Raises on undecodable data."""
    return [decoded.copy(max_side) for decoded in decode_dicom(ds, max_side)]
