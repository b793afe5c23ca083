"""Pictures for people: heat maps and outlines drawn over the lesion image. Pure functions on arrays."""

from __future__ import annotations

import cv2
import numpy as np

from skinapp.inference.prediction import Prediction

OVERLAYS = ("Image only", "Lesion outline", "Where the model looked", "Where it found the diagnosis",
            "What drove the diagnosis", "Where it sees a structure", "What separates the top two diagnoses")
STRUCTURE_LAYER, CONTRAST_LAYER = OVERLAYS[5], OVERLAYS[6]
# What each layer means, in plain words (the methods are named in the model card), for legends and captions.
LAYER_LEGENDS = {
    OVERLAYS[0]: "The image as stored.",
    OVERLAYS[1]: "Green line: the lesion's edge as the model outlines it from where it looked. Yellow box: the "
                 "outline's extent.",
    OVERLAYS[2]: "Red and yellow: where the model looked hardest; blue: what it ignored.",
    OVERLAYS[3]: "Red and yellow: where the evidence for the top diagnosis lies; blue: little evidence.",
    OVERLAYS[4]: "Red and yellow: the parts of the image that pushed the model towards the chosen diagnosis most.",
    OVERLAYS[5]: "Red and yellow: where on the lesion the model sees the chosen dermoscopic structure; blue: where it "
                 "does not. A hint read from image-level labels, not an outline of the structure.",
    OVERLAYS[6]: "Red and yellow: the parts of the image that speak for the top diagnosis rather than the runner-up. "
                 "Where the plain map covers the whole lesion for "
                 "both, this one shows what tells them apart.",
}
# In the app's viewer the outline and its longest diameter are drawn as lines over the image, not burnt in.
VIEWER_LEGENDS = {**LAYER_LEGENDS, OVERLAYS[1]: "Green line: the lesion's edge as the model outlines it from where it "
                  "looked. Dotted yellow line: the outline's longest diameter."}


def heatmap_overlay(image: np.ndarray, heat: np.ndarray, opacity: float = 0.45) -> np.ndarray:
    """Blend a [0, 1] map (any size) over an RGB image with the JET colour map."""
    h, w = image.shape[:2]
    heat = cv2.resize(np.clip(heat, 0, 1).astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    coloured = cv2.cvtColor(cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(image, 1 - opacity, coloured, opacity, 0)


def outline_overlay(image: np.ndarray, contour: np.ndarray, bbox: tuple[int, int, int, int] | None,
                    colour: tuple[int, int, int] = (0, 255, 0)) -> np.ndarray:
    """Lesion contour (solid) and its bounding box (thin) over a copy of the image."""
    out = image.copy()
    thickness = max(1, round(max(image.shape[:2]) / 250))
    if len(contour):
        cv2.polylines(out, [contour.reshape(-1, 1, 2).astype(np.int32)], True, colour, thickness)
    if bbox is not None:
        x, y, w, h = bbox
        cv2.rectangle(out, (x, y), (x + w, y + h), (255, 255, 0), max(1, thickness // 2))
    return out


def normalise(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    return (values - low) / (high - low) if high > low else np.zeros_like(values, dtype=np.float32)




def overlay(image: np.ndarray, prediction: Prediction, kind: str, opacity: float = 0.45,
            gradcam: np.ndarray | None = None, structure: str | None = None) -> np.ndarray:
    """One of OVERLAYS drawn over the image. `gradcam` overrides the predicted class's map (another class or the
    difference of two); `structure`: the structure whose map the structure layer shows."""
    if kind == OVERLAYS[1]:
        return outline_overlay(image, prediction.outline.contour, prediction.outline.bbox)
    if kind == OVERLAYS[2]:
        return heatmap_overlay(image, prediction.attention_grid, opacity)
    if kind == OVERLAYS[3]:
        return heatmap_overlay(image, normalise(prediction.refined_grid), opacity)
    if kind == OVERLAYS[4]:
        cam = gradcam if gradcam is not None else prediction.gradcam()
        return image if cam is None else heatmap_overlay(image, cam, opacity)
    if kind == CONTRAST_LAYER:
        return image if gradcam is None else heatmap_overlay(image, gradcam, opacity)
    if kind == OVERLAYS[5] and structure is not None:
        seen = prediction.structure_map(structure)
        return image if seen is None else heatmap_overlay(image, seen, opacity)
    return image
