"""Ordinary image files (JPEG, PNG, BMP, TIFF) → RGB uint8, EXIF orientation applied, decoded at reduced
size where JPEG allows it."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from skinapp.io.case import UnreadableImage
from skinapp.io.pixels import MAX_PIXELS, fitted_size, shrink
from skinapp.io.sources import InputFile

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}


class NotAnImage(UnreadableImage):
    """Pillow does not recognise the file at all (it may still be a DICOM dataset, or something else)."""


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
                if image.format == "JPEG" and max_side is not None:
                    image.draft("RGB", fitted_size(*image.size, max_side))
                oriented = ImageOps.exif_transpose(image)
                if oriented.size != image.size:  # a quarter turn: report the size as seen
                    original = original[::-1]
                return shrink(oriented, max_side), original
    except UnreadableImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UnreadableImage("image is too large to open safely (possible decompression bomb)") from None
    except UnidentifiedImageError:
        raise NotAnImage("not an image or DICOM file") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UnreadableImage(f"image data is damaged or truncated ({exc})") from None
