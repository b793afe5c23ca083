"""Training augmentations of Tymchenko et al. 2020, applied jointly to an image and its lesion mask.

All geometric steps are folded into one affine warp straight to the network's input size.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    shift: float = 0.1
    scale: tuple[float, float] = (0.85, 1.2)      # zoom; above 1 crops into the image
    aspect: tuple[float, float] = (1.0, 1.0)      # width/height stretch of the crop (log-uniform)
    rotate_degrees: float = 180.0
    brightness: float = 0.2
    contrast: float = 0.2
    gamma: tuple[float, float] = (0.8, 1.25)
    hue_degrees: float = 8.0
    saturation: float = 0.2
    illuminant: float = 0.0   # per-channel gain jitter (log-normal σ): a colour cast the constancy step missed
    microscope_p: float = 0.3
    cutout_p: float = 0.5
    cutout_max_patches: int = 4
    cutout_size: float = 0.1
    clahe_p: float = 0.0
    # Resolution robustness: the source is area-shrunk to the crop's scale before the warp (so no view aliases),
    # and with probability `degrade_p` resampled, blurred, sharpened or recompressed as clinics' files are.
    antialias: bool = False
    degrade_p: float = 0.0


def _affine(rng: np.random.Generator, h: int, w: int, size: int, cfg: AugmentConfig, angle: float,
            zoom: float) -> np.ndarray:
    aspect = np.exp(rng.uniform(*np.log(cfg.aspect)))
    centre = np.array([w / 2, h / 2])
    # stretch to the square input, as at inference, with the crop's aspect jitter
    to_output = np.diag([size / w * np.sqrt(aspect), size / h / np.sqrt(aspect)])
    rotation = cv2.getRotationMatrix2D((size / 2, size / 2), angle, zoom)
    shift = rng.uniform(-cfg.shift, cfg.shift, 2) * size
    matrix = rotation @ np.vstack([np.hstack([to_output, (-to_output @ centre + size / 2)[:, None]]), [0, 0, 1]])
    matrix[:, 2] += shift
    if rng.random() < 0.5:  # transpose: with rotations and the flip below, all eight dihedral views
        matrix = matrix[[1, 0]]
    if rng.random() < 0.5:
        matrix[0] = -matrix[0]
        matrix[0, 2] += size
    return matrix


def _colour(image: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    x = image.astype(np.float32) / 255.0
    if cfg.illuminant:
        x = x * np.exp(rng.normal(0.0, cfg.illuminant, 3)).astype(np.float32)
    x = x * (1 + rng.uniform(-cfg.contrast, cfg.contrast)) + rng.uniform(-cfg.brightness, cfg.brightness) * 0.5
    x = np.clip(x, 0, 1) ** rng.uniform(*cfg.gamma)
    hsv = cv2.cvtColor(x, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-cfg.hue_degrees, cfg.hue_degrees)) % 360
    hsv[..., 1] = np.clip(hsv[..., 1] * (1 + rng.uniform(-cfg.saturation, cfg.saturation)), 0, 1)
    return (cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255).clip(0, 255).astype(np.uint8)


def _microscope(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The black circular vignette of a contact dermatoscope."""
    size = image.shape[0]
    circle = np.zeros(image.shape[:2], np.uint8)
    centre = tuple(int(c) for c in size / 2 + rng.uniform(-0.05, 0.05, 2) * size)
    cv2.circle(circle, centre, int(size * rng.uniform(0.5, 0.7)), 1, -1)
    return image * circle[..., None]


def _cutout(image: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    size = image.shape[0]
    out = image.copy()
    side = max(2, int(size * cfg.cutout_size))
    for _ in range(rng.integers(1, cfg.cutout_max_patches + 1)):
        y, x = rng.integers(0, size - side, 2)
        out[y:y + side, x:x + side] = 0
    return out


_KERNELS = (cv2.INTER_NEAREST, cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_LANCZOS4, cv2.INTER_AREA)


def _resample_chain(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Down by 1.25–3× and back up, each with a random kernel: the soft or blocky copies clinics pass on."""
    h, w = image.shape[:2]
    factor = rng.uniform(1.25, 3.0)
    small = cv2.resize(image, (max(8, round(w / factor)), max(8, round(h / factor))),
                       interpolation=int(rng.choice(_KERNELS)))
    return cv2.resize(small, (w, h), interpolation=int(rng.choice(_KERNELS[:4])))


def _blur(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), rng.uniform(0.4, 1.5))


def _sharpen(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unsharp masking: the crisper picture an antialiased shrink of a large file gives."""
    soft = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.7, 1.5)).astype(np.float32)
    amount = rng.uniform(0.3, 1.2)
    return np.clip(image.astype(np.float32) * (1 + amount) - soft * amount, 0, 255).astype(np.uint8)


def _recompress(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 96))])
    decoded = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED) if ok else None
    return image if decoded is None else np.asarray(decoded, np.uint8)


_DEGRADATIONS = (_resample_chain, _blur, _sharpen, _recompress)


def degrade(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One or two of the degradations, in random order, on the source image (RGB uint8)."""
    for step in rng.permutation(len(_DEGRADATIONS))[:rng.integers(1, 3)]:
        image = _DEGRADATIONS[step](image, rng)
    return image


def _shrink_source(image: np.ndarray, mask: np.ndarray | None, target: float) -> tuple[np.ndarray, np.ndarray | None]:
    """Area-shrink each axis longer than `target` px to it (the warp then never minifies by much)."""
    h, w = image.shape[:2]
    new_w, new_h = min(w, max(1, round(target))), min(h, max(1, round(target)))
    if (new_w, new_h) == (w, h):
        return image, mask
    image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
    if mask is not None:
        mask = cv2.resize(mask.astype(np.float32), (new_w, new_h), interpolation=cv2.INTER_AREA)
    return image, mask


def augment(
    image: np.ndarray, mask: np.ndarray | None, size: int, rng: np.random.Generator, cfg: AugmentConfig = AugmentConfig()
) -> tuple[np.ndarray, np.ndarray | None]:
    """Random training view of (RGB uint8 image, {0,1} mask) at size×size; the mask comes back as float32."""
    angle = rng.uniform(-cfg.rotate_degrees, cfg.rotate_degrees)
    zoom = rng.uniform(*cfg.scale)
    if cfg.degrade_p and rng.random() < cfg.degrade_p:
        image = degrade(image, rng)
    if cfg.antialias:
        image, mask = _shrink_source(image, mask, size * zoom)
    h, w = image.shape[:2]
    matrix = _affine(rng, h, w, size, cfg, angle, zoom)
    out = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101)
    out_mask = None
    if mask is not None:
        out_mask = cv2.warpAffine(
            mask.astype(np.float32), matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
        )
    if cfg.clahe_p and rng.random() < cfg.clahe_p:
        lab = cv2.cvtColor(out, cv2.COLOR_RGB2LAB)
        lab[..., 0] = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 4)).apply(lab[..., 0])
        out = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
    out = _colour(out, rng, cfg)
    if rng.random() < cfg.microscope_p:
        out = _microscope(out, rng)
    if rng.random() < cfg.cutout_p:
        out = _cutout(out, rng, cfg)
    return out, out_mask
