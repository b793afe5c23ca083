"""Ordinary image files (JPEG, PNG, BMP, TIFF) → RGB uint8, EXIF orientation applied, decoded once: an 8-bit
JPEG by libjpeg-turbo in strict mode (the decode is the damage check) at the smallest DCT scale that covers the
largest copy wanted, anything else by Pillow at full size."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from skinapp.io.capture_date import exif_taken_on
from skinapp.io.case import UnreadableImage
from skinapp.io.identity import jpeg_file_key, pixels_key
from skinapp.io.integrity import DamagedImageData, check_jpeg, decode_jpeg_strict, is_eight_bit_jpeg, jpeg_header
from skinapp.io.pixels import MAX_PIXELS, Decoded, fitted_size, zoom_side
from skinapp.io.sources import InputFile

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}


class NotAnImage(UnreadableImage):
    """Pillow does not recognise the file at all (it may still be a DICOM dataset, or something else)."""


def _eight_bit(image: Image.Image) -> Image.Image:
    """Greys deeper than 8 bits brought to 0–255 (Pillow would clip them, and most would show white): 16-bit
    values by their full range, as a viewer shows them; 32-bit integers and floats, which have no usual range,
    by the range the image uses."""
    if image.mode.startswith("I;16"):
        values = np.asarray(image).astype(np.float64) / 257
    elif image.mode in ("I", "F"):
        values = np.asarray(image).astype(np.float64)
        finite = values[np.isfinite(values)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        values = (np.nan_to_num(values, nan=low) - low) / max(high - low, 1e-12) * 255
    else:
        return image
    return Image.fromarray(np.clip(np.round(values), 0, 255).astype(np.uint8))


_ORIENTATIONS = {  # EXIF orientation → the turn that shows the image upright (as ImageOps.exif_transpose does)
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_TURNED = {5, 6, 7, 8}  # a quarter turn: width and height swap
_JPEG_COLOURS = {"YCbCr", "Gray", "RGB"}  # what libjpeg-turbo turns into RGB as Pillow does; CMYK/YCCK go to Pillow


def _jpeg_once(data: bytes, stored: tuple[int, int], largest_side: int | None) -> np.ndarray | None:
    """An 8-bit JPEG decoded once, strictly, at the smallest DCT scale at least fitted within largest_side; None
    where libjpeg-turbo's RGB output is not what Pillow would show (Pillow then decodes, after the check)."""
    if not is_eight_bit_jpeg(data):
        return None
    try:
        height, width, colours, _ = jpeg_header(data)
    except ValueError:
        return None
    if (width, height) != stored or colours not in _JPEG_COLOURS:
        return None
    return decode_jpeg_strict(data, None if largest_side is None else fitted_size(width, height, largest_side))


def decode_image(file: InputFile | Path | str, max_side: int | None = None, zoom_max_side: int | None = None) -> Decoded:
    """The file decoded once: large enough for its display image fitted within max_side (None: full size) and, where
    the image has more pixels than that, for a zoom copy fitted within zoom_max_side (`pixels.zoom_side`). Copies
    come from `Decoded.copy`; `Decoded.size` is (width, height) as shown, after the EXIF orientation."""
    file = file if isinstance(file, InputFile) else InputFile.from_path(Path(file))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with file.opener() as handle, Image.open(handle) as image:
                stored = image.size
                if image.width * image.height > MAX_PIXELS:
                    raise UnreadableImage(f"image is {image.width:,}×{image.height:,} pixels, too large to open safely "
                                          "(possible decompression bomb)")
                largest_side = zoom_side(stored, max_side, zoom_max_side) or max_side
                if image.format != "JPEG":
                    oriented = ImageOps.exif_transpose(image)
                    palette = oriented.getpalette() if oriented.mode in ("P", "PA") else None
                    key = pixels_key(np.asarray(oriented), oriented.mode, bytes(palette) if palette else None)
                    return Decoded(np.asarray(_eight_bit(oriented).convert("RGB")), oriented.size, key,
                                   exif_taken_on(image))
                handle.seek(0)
                data = handle.read()
                orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
                shown = stored[::-1] if orientation in _TURNED else stored
                key = jpeg_file_key(data, orientation)
                pixels = _jpeg_once(data, stored, largest_side)
                if pixels is None:  # Pillow decodes what libjpeg-turbo's RGB output would not show right
                    check_jpeg(data)
                    if largest_side is not None:
                        image.draft("RGB", fitted_size(*stored, largest_side))
                    pixels = np.asarray(_eight_bit(image).convert("RGB"))
                method = _ORIENTATIONS.get(orientation)
                if method is not None:
                    pixels = np.asarray(Image.fromarray(pixels).transpose(method))
                return Decoded(pixels, shown, key, exif_taken_on(image))
    except UnreadableImage:
        raise
    except DamagedImageData as exc:
        raise UnreadableImage(f"image data is damaged: {exc}. Not imported, as a damaged picture must not be "
                              "diagnosed; ask for the original file") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UnreadableImage("image is too large to open safely (possible decompression bomb)") from None
    except UnidentifiedImageError:
        raise NotAnImage("not an image or DICOM file") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UnreadableImage(f"image data is damaged or truncated ({exc})") from None


def read_image(file: InputFile | Path | str, max_side: int | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """(RGB uint8 image fitted within max_side, (width, height) as shown, after the EXIF orientation)."""
    decoded = decode_image(file, max_side)
    return decoded.copy(max_side), decoded.size
