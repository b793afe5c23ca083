"""A deliberately shifted copy of held-out HAM10000 images: what another clinic's camera, light and software
do to a dermoscopy image, made by `evaluate` itself so that the flags, sets and safety net can be checked on
images the model finds unfamiliar without needing another data set.

Each image gets two of the shifts below, drawn with a fixed seed (the same copy every run):
colour cast (per-channel gain and gamma), contrast and brightness, blur, JPEG compression, and scale (a
zoomed-in crop, or a low-resolution camera).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

Shift = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def colour_cast(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    gains = rng.uniform(0.75, 1.25, size=3)
    gamma = rng.uniform(0.7, 1.4)
    scaled = np.power(image.astype(np.float32) / 255.0, gamma) * gains
    return (scaled.clip(0, 1) * 255).round().astype(np.uint8)


def contrast(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    factor, offset = rng.uniform(0.6, 1.4), rng.uniform(-30, 30)
    mean = image.reshape(-1, 3).mean(0)
    return ((image.astype(np.float32) - mean) * factor + mean + offset).clip(0, 255).round().astype(np.uint8)


def blur(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    sigma = rng.uniform(1.0, 2.5) * max(image.shape[:2]) / 300  # as strong on a 200 px image as on a 600 px one
    return cv2.GaussianBlur(image, (0, 0), sigma)


def jpeg(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    quality = int(rng.integers(15, 40))
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
    if decoded is None:
        raise RuntimeError("JPEG decoding failed")
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def scale(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    height, width = image.shape[:2]
    if rng.random() < 0.5:  # zoomed in: the lesion fills more of the frame
        keep = rng.uniform(0.65, 0.85)
        h, w = round(height * keep), round(width * keep)
        top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
        return cv2.resize(image[top:top + h, left:left + w], (width, height), interpolation=cv2.INTER_CUBIC)
    factor = rng.uniform(0.35, 0.6)  # a low-resolution camera, brought back to the same size
    small = cv2.resize(image, (max(8, round(width * factor)), max(8, round(height * factor))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


SHIFTS: dict[str, Shift] = {"colour cast": colour_cast, "contrast": contrast, "blur": blur, "jpeg": jpeg, "scale": scale}
SHIFT_ORDER = ("scale", "colour cast", "contrast", "blur", "jpeg")  # the order a camera pipeline applies them


def shift_image(image: np.ndarray, rng: np.random.Generator, count: int = 2) -> tuple[np.ndarray, tuple[str, ...]]:
    """The image with `count` different shifts applied, and their names."""
    chosen = set(rng.choice(len(SHIFTS), size=count, replace=False).tolist())
    names = tuple(name for name in SHIFT_ORDER if list(SHIFTS).index(name) in chosen)
    for name in names:
        image = SHIFTS[name](image, rng)
    return image, names


def shifted_copy(images: list[np.ndarray], seed: int = 2017) -> tuple[list[np.ndarray], list[tuple[str, ...]]]:
    rng = np.random.default_rng(seed)
    pairs = [shift_image(image, rng) for image in images]
    return [p[0] for p in pairs], [p[1] for p in pairs]
