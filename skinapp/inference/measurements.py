"""Lesion measurements from the outline, the way a dermatologist reads the ABCD rule: area, longest diameter,
the outline's shape asymmetry about the two principal axes, border irregularity and the dermoscopic colours inside
the lesion. The asymmetry is of the shape only: Stolz's ABCD rule also counts asymmetry of colours and structures,
which this measure does not, so it is named "shape asymmetry" wherever a clinician reads it.

numpy and OpenCV only (the app's pages and the reports use it without torch). Lengths are in image pixels, and in
millimetres where a pixel's size is known (from the DICOM file or a ruler calibration). They describe the model's
outline, not a histological margin: a poor outline gives poor measurements, and the case page says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from skinapp.inference.outline import LesionOutline
from skinapp.inference.prediction import Prediction

# The six colours of the ABCD rule of dermoscopy (Stolz et al.) as typical sRGB values seen in dermoscopy images.
# Each lesion pixel goes to the nearest one in CIELAB, unless none is within `_COLOUR_RADIUS` or the patient's own
# skin (the median colour outside the outline) is nearer: an outline that takes in a rim of skin must not count it
# as "white" or "light brown". A colour counts when it covers at least `_COLOUR_SHARE` of the lesion. An
# approximation of a visual judgement, named as such wherever it is shown.
DERMOSCOPIC_COLOURS: dict[str, tuple[int, int, int]] = {
    "white": (232, 228, 226),
    "red": (196, 62, 62),
    "light brown": (184, 128, 84),
    "dark brown": (104, 62, 40),
    "blue-grey": (112, 124, 146),
    "black": (34, 28, 28),
}
_COLOUR_RADIUS = 30.0   # ΔE*ab
_COLOUR_SHARE = 0.05
ASYMMETRY_THRESHOLD = 0.10  # an axis counts as asymmetric when this share of the lesion has no mirror image
CUT_OFF_SHARE = 0.05  # an outline with this share of its edge on the image border: the lesion may go on beyond it


@dataclass(frozen=True)
class LesionMeasurements:
    area_px: int
    longest_diameter_px: float
    diameter_ends: tuple[tuple[float, float], tuple[float, float]]  # (x, y) of the two farthest outline points
    asymmetry: tuple[float, float]   # share of the lesion without a mirror image about the major, minor axis
    border_irregularity: float       # perimeter² / (4π area): 1.0 for a circle, 1.27 for a square, more if ragged
    colours: tuple[str, ...]         # dermoscopic colours present, most extensive first
    mm_per_pixel: float | None = None
    on_border: float = 0.0           # share of the outline's edge that lies on the image border

    @property
    def cut_off(self) -> bool:
        """The outline runs along the image border: the lesion may fill or leave the frame, so its size and shape
        are those of the picture, not of the lesion."""
        return self.on_border >= CUT_OFF_SHARE

    @property
    def area_mm2(self) -> float | None:
        return None if self.mm_per_pixel is None or self.cut_off else self.area_px * self.mm_per_pixel ** 2

    @property
    def longest_diameter_mm(self) -> float | None:
        return None if self.mm_per_pixel is None or self.cut_off else self.longest_diameter_px * self.mm_per_pixel

    @property
    def asymmetric_axes(self) -> int:
        """0, 1 or 2: the A of the ABCD rule."""
        return sum(a > ASYMMETRY_THRESHOLD for a in self.asymmetry)

    def describe(self) -> list[str]:
        """One plain line per measurement, for the case page and the reports."""
        colours = f"Colours: {len(self.colours)}" + (f" ({', '.join(self.colours)})" if self.colours else "")
        if self.cut_off:
            return [f"Size, shape and border not measured: {self.on_border:.0%} of the outline runs along the image "
                    "border, so the lesion may be larger than the picture", colours]
        if self.mm_per_pixel is None:
            size = [f"Area {self.area_px:,} pixels; longest diameter {self.longest_diameter_px:.0f} pixels "
                    "(no size in mm: the image has no scale; calibrate it on a ruler)"]
        else:
            size = [f"Area {self.area_mm2:.1f} mm²", f"Longest diameter {self.longest_diameter_mm:.1f} mm"]
        major, minor = self.asymmetry
        return [*size,
                f"Shape asymmetry (outline only, not colours or structures): {self.asymmetric_axes} of 2 axes "
                f"({major:.0%} of the lesion unmatched about the long axis, {minor:.0%} about the short axis)",
                f"Border irregularity {self.border_irregularity:.2f} (1.00 is a circle)", colours]


def _longest_diameter(contour: np.ndarray) -> tuple[float, tuple[tuple[float, float], tuple[float, float]]]:
    hull = cv2.convexHull(contour.reshape(-1, 1, 2).astype(np.float32))[:, 0, :]
    gaps = np.linalg.norm(hull[:, None, :] - hull[None, :, :], axis=-1)
    i, j = np.unravel_index(int(np.argmax(gaps)), gaps.shape)
    ends = ((float(hull[i, 0]), float(hull[i, 1])), (float(hull[j, 0]), float(hull[j, 1])))
    return float(gaps[i, j]) + 1.0, ends  # +1: pixel centres to pixel edges


def _asymmetry(mask: np.ndarray) -> tuple[float, float]:
    """Mirror the lesion about each principal axis through its centroid; the share of the lesion that the mirror
    image does not cover. The major axis first."""
    ys, xs = np.nonzero(mask)
    centre = np.array([xs.mean(), ys.mean()])
    points = np.stack([xs, ys], axis=1) - centre
    _, vectors = np.linalg.eigh(np.cov(points.T))
    height, width = mask.shape
    shares = []
    for axis in (vectors[:, 1], vectors[:, 0]):  # eigh sorts ascending: the last vector is the major axis
        # Reflection about the line through `centre` along `axis`: p → 2 (p·a) a − p
        mirrored = 2 * (points @ axis)[:, None] * axis[None, :] - points + centre
        mx, my = np.rint(mirrored[:, 0]).astype(int), np.rint(mirrored[:, 1]).astype(int)
        inside = (mx >= 0) & (mx < width) & (my >= 0) & (my < height)
        matched = np.zeros(len(xs), bool)
        matched[inside] = mask[my[inside], mx[inside]]
        shares.append(float(1.0 - matched.mean()))
    return shares[0], shares[1]


def _lab(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb.reshape(-1, 1, 3).astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab).reshape(-1, 3)


def _colours(image: np.ndarray, mask: np.ndarray) -> tuple[str, ...]:
    lab = _lab(image[mask])
    names = list(DERMOSCOPIC_COLOURS)
    references = _lab(np.array(list(DERMOSCOPIC_COLOURS.values())))
    distances = np.linalg.norm(lab[:, None, :] - references[None, :, :], axis=-1)
    nearest, nearest_distance = distances.argmin(axis=1), distances.min(axis=1)
    counted = nearest_distance <= _COLOUR_RADIUS
    outside = ~mask
    if outside.any():
        # The skin's median colour from a regular grid of about 50,000 of its pixels: as good as all of them, and
        # a tenth of the work on a 1024-px image (this runs each time a case opens).
        step = max(1, int(np.sqrt(outside.sum() / 50_000)))
        sample = image[::step, ::step][outside[::step, ::step]]
        skin = np.median(_lab(sample if len(sample) else image[outside]), axis=0)
        counted &= np.linalg.norm(lab - skin, axis=1) > nearest_distance
    shares = np.bincount(nearest[counted], minlength=len(names)) / max(1, len(lab))
    present = [i for i in np.argsort(-shares, kind="stable") if shares[i] >= _COLOUR_SHARE]
    return tuple(names[i] for i in present)


def measured_outline(prediction: Prediction, image: np.ndarray,
                     mm_per_pixel: float | None = None) -> tuple[LesionOutline, LesionMeasurements | None]:
    """A prediction's lesion outline on this image (from its attention map, at the image's size) and the
    measurements on it: the one recipe the case page, the follow-up view and the reports use."""
    outline = prediction.shown_at(image.shape).outline
    return outline, measure_lesion(outline.mask, image, mm_per_pixel)


def measure_lesion(mask: np.ndarray, image: np.ndarray, mm_per_pixel: float | None = None) -> LesionMeasurements | None:
    """Measurements of the lesion `mask` (H, W bool) on `image` (H, W, 3 uint8 RGB); None when there is no lesion."""
    mask = np.asarray(mask, bool)
    area = int(mask.sum())
    if area < 3:
        return None
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    contour = max(contours, key=cv2.contourArea)[:, 0, :]
    diameter, ends = _longest_diameter(contour)
    # The perimeter along the outline's pixel edges overstates a smooth border (steps); half-pixel smoothing
    # (a closed polygon through the boundary pixels' centres, slightly simplified) reads a circle as ~1.0.
    perimeter = cv2.arcLength(cv2.approxPolyDP(contour.reshape(-1, 1, 2), 0.5, True), True)
    irregularity = float(perimeter ** 2 / (4 * np.pi * area))
    height, width = mask.shape
    on_border = float(np.mean((contour[:, 0] == 0) | (contour[:, 0] == width - 1) | (contour[:, 1] == 0)
                              | (contour[:, 1] == height - 1)))
    return LesionMeasurements(area_px=area, longest_diameter_px=diameter, diameter_ends=ends,
                              asymmetry=_asymmetry(mask), border_irregularity=irregularity,
                              colours=_colours(image, mask), mm_per_pixel=mm_per_pixel, on_border=on_border)
