"""The lesion outline from the attention mask (Otsu threshold + morphological opening, largest region), and
scaling the model's maps to the image. numpy and OpenCV only: the app's pages use it without loading torch."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

_WORKING_SIDE = 512  # outlines are found at most at this size, then scaled to the image


@dataclass(frozen=True)
class LesionOutline:
    mask: np.ndarray                            # (H, W) bool, the image's resolution
    contour: np.ndarray                         # (N, 2) int x, y points of the outline, image pixels
    bbox: tuple[int, int, int, int] | None      # x, y, width, height in image pixels; None if no lesion found
    threshold: float                            # the Otsu threshold on the attention map, in [0, 1]

    @property
    def area_fraction(self) -> float:
        return float(self.mask.mean())


def resize_map(values: np.ndarray, height: int, width: int) -> np.ndarray:
    return cv2.resize(values.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)


def lesion_outline(attention: np.ndarray, height: int, width: int) -> LesionOutline:
    """Otsu threshold + morphological opening of σ(M), keeping the largest region (Tymchenko et al.)."""
    scale = min(1.0, _WORKING_SIDE / max(height, width))
    work_h, work_w = max(1, round(height * scale)), max(1, round(width * scale))
    grey = (resize_map(attention, work_h, work_w).clip(0, 1) * 255).astype(np.uint8)
    threshold, binary = cv2.threshold(grey, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    if grey.max() - grey.min() < 8:  # a flat map has no lesion to separate from skin
        binary[:] = 0
    side = max(3, round(0.03 * min(work_h, work_w)) | 1)
    binary = cv2.morphologyEx(binary, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side)))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if count <= 1:
        return LesionOutline(np.zeros((height, width), bool), np.zeros((0, 2), int), None, threshold / 255)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    work_mask = (labels == largest).astype(np.uint8)
    mask = cv2.resize(work_mask, (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    contour = max(contours, key=cv2.contourArea)[:, 0, :] if contours else np.zeros((0, 2), int)
    x, y, w, h = cv2.boundingRect(mask.astype(np.uint8))
    return LesionOutline(mask, contour, (int(x), int(y), int(w), int(h)), threshold / 255)
