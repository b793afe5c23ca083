"""Ordinary image files (JPEG, PNG, BMP, TIFF) → RGB uint8, EXIF orientation applied."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}
MAX_PIXELS = 100_000_000  # larger than any dermatoscope frame; beyond it a file is treated as a decompression bomb


class UnreadableImage(ValueError):
    """The file cannot be turned into an image; the message says why in plain words."""


def read_image(path: Path) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if image.width * image.height > MAX_PIXELS:
                    raise UnreadableImage(f"image is {image.width}×{image.height} pixels, larger than the {MAX_PIXELS:,} allowed")
                image = ImageOps.exif_transpose(image)
                return np.asarray(image.convert("RGB"))
    except UnreadableImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UnreadableImage("image is too large to open safely (possible decompression bomb)") from None
    except UnidentifiedImageError:
        raise UnreadableImage("not an image file Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UnreadableImage(f"image data is damaged or truncated ({exc})") from None
