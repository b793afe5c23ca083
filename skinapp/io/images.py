"""Ordinary image files (JPEG, PNG, BMP, TIFF) → RGB uint8, EXIF orientation applied, decoded at reduced
size where JPEG allows it."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from skinapp.io.case import UnreadableImage
from skinapp.io.integrity import DamagedImageData, check_jpeg
from skinapp.io.pixels import MAX_PIXELS, fitted_size, shrink
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


def read_image(file: InputFile | Path | str, max_side: int | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """(RGB uint8 image fitted within max_side, (width, height) as stored in the file)."""
    file = file if isinstance(file, InputFile) else InputFile.from_path(Path(file))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with file.opener() as handle, Image.open(handle) as image:
                original = image.size
                if image.width * image.height > MAX_PIXELS:
                    raise UnreadableImage(f"image is {image.width:,}×{image.height:,} pixels, too large to open safely "
                                          "(possible decompression bomb)")
                if image.format == "JPEG":
                    handle.seek(0)
                    check_jpeg(handle.read())
                    if max_side is not None:
                        image.draft("RGB", fitted_size(*image.size, max_side))
                oriented = ImageOps.exif_transpose(image)
                if oriented.size != image.size:  # a quarter turn: report the size as seen
                    original = original[::-1]
                return shrink(_eight_bit(oriented), max_side), original
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
