"""Image → network input. The same steps serve training, validation and inference.

What a model expects is data, not code: `Preprocessing` travels in the model card, so a model trained with
colour constancy is always fed colour-corrected images and an older model without it never is. numpy and
OpenCV only; `model/batch.py` turns the result into the network's tensor.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

# Mean = std = 0.5 for the TF-ported EfficientNet-Lite ImageNet weights (inputs in [-1, 1]).
IMAGE_MEAN = (0.5, 0.5, 0.5)
IMAGE_STD = (0.5, 0.5, 0.5)

COLOUR_CONSTANCY_METHODS = ("none", "shades_of_gray")
# How an image of any size is brought to the square input. The card names the method in words; the words are the
# key, so a card stays bound to the resampling its model was trained and measured with.
BICUBIC_RESIZE = "stretch to square; bicubic, area when shrinking more than 2×"
ANTIALIASED_RESIZE = "stretch to square; each axis area-averaged when it shrinks, bicubic when it grows"
_ILLUMINANT_ESTIMATE_SIDE = 256  # the illuminant is estimated on a copy this size, whatever the image's size


def shades_of_gray_gains(image: np.ndarray, p: float = 6.0) -> np.ndarray:
    """Per-channel gains (3,) that make the image's Minkowski p-norm colour grey (Finlayson & Trezzi 2004).

    Estimated on a reduced copy, so a 200 px training image and a 1024 px upload of the same scene get the
    same correction.
    """
    h, w = image.shape[:2]
    scale = _ILLUMINANT_ESTIMATE_SIDE / max(h, w)
    small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA) \
        if scale < 1 else image
    x = small.reshape(-1, 3).astype(np.float64) / 255.0
    illuminant = np.power(np.mean(np.power(x, p), axis=0), 1.0 / p)
    norm = np.linalg.norm(illuminant)
    if norm < 1e-6 or (illuminant < 1e-6).any():  # a black or single-colour frame: leave it as it is
        return np.ones(3)
    return 1.0 / (illuminant / norm * np.sqrt(3.0))


def shades_of_gray(image: np.ndarray, p: float = 6.0) -> np.ndarray:
    """RGB uint8 → RGB uint8 under a grey illuminant (the colour constancy of the ISIC 2019 winners, p = 6)."""
    gains = shades_of_gray_gains(image, p).astype(np.float32)
    return np.clip(image.astype(np.float32) * gains, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Preprocessing:
    """How a decoded RGB image becomes the network's input."""

    image_size: int = 160
    colour_constancy: str = "none"   # one of COLOUR_CONSTANCY_METHODS
    minkowski_p: float = 6.0
    mean: tuple[float, float, float] = IMAGE_MEAN
    std: tuple[float, float, float] = IMAGE_STD
    resize: str = BICUBIC_RESIZE     # one of RESIZE_METHODS; models from 0.3 on use ANTIALIASED_RESIZE

    def __post_init__(self) -> None:
        if self.colour_constancy not in COLOUR_CONSTANCY_METHODS:
            raise ValueError(f"unknown colour constancy {self.colour_constancy!r}; known: {COLOUR_CONSTANCY_METHODS}")
        if self.resize not in RESIZE_METHODS:
            raise ValueError(f"unknown resize {self.resize!r}; known: {list(RESIZE_METHODS)}")

    @classmethod
    def from_dict(cls, raw: dict) -> Preprocessing:
        raw = dict(raw)
        for key in ("mean", "std"):
            if key in raw:
                raw[key] = tuple(raw[key])
        return cls(**raw)

    def to_dict(self) -> dict:
        return asdict(self)

    def correct_colour(self, image: np.ndarray) -> np.ndarray:
        """Applied once to each decoded image, before augmentation or resizing."""
        if self.colour_constancy == "shades_of_gray":
            return shades_of_gray(image, self.minkowski_p)
        return image

    def model_images(self, images: list[np.ndarray] | np.ndarray) -> np.ndarray:
        """Decoded RGB uint8 images of any size → (N, S, S, 3) uint8, colour-corrected and resized."""
        return np.stack([self.resized(self.correct_colour(im)) for im in images])

    def resized(self, image: np.ndarray) -> np.ndarray:
        """RGB uint8 (H, W, 3) → (S, S, 3) by the card's resize method."""
        return RESIZE_METHODS[self.resize](image, self.image_size)


def bicubic_resize(image: np.ndarray, size: int) -> np.ndarray:
    """Stretched to the square input, bicubic; area-averaged only when shrinking more than 2×. Between 1× and 2×
    the bicubic kernel does not filter enough, so a sharp 300 px image aliases: kept for the models trained with it."""
    h, w = image.shape[:2]
    shrink = max(h, w) > 2 * size
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


def antialiased_resize(image: np.ndarray, size: int) -> np.ndarray:
    """Stretched to the square input one axis at a time: an axis that shrinks is area-averaged (every source
    pixel counts once, so nothing aliases at any ratio), an axis that grows is bicubic. A 200×150 image and the
    same scene delivered at 1000×750 give nearly the same input."""
    h, w = image.shape[:2]
    if w != size:
        image = cv2.resize(image, (size, h), interpolation=cv2.INTER_AREA if w > size else cv2.INTER_CUBIC)
    if h != size:
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if h > size else cv2.INTER_CUBIC)
    return image


RESIZE_METHODS = {BICUBIC_RESIZE: bicubic_resize, ANTIALIASED_RESIZE: antialiased_resize}


def resize_for_model(image: np.ndarray, size: int, method: str = BICUBIC_RESIZE) -> np.ndarray:
    """RGB uint8 (H, W, 3) → (size, size, 3) by one of RESIZE_METHODS."""
    return RESIZE_METHODS[method](image, size)
