"""Image → network input. The same resize and normalisation serve training, validation and inference."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from skinapp.model.encoder import IMAGE_MEAN, IMAGE_STD


def resize_for_model(image: np.ndarray, size: int) -> np.ndarray:
    """RGB uint8 (H, W, 3) → (size, size, 3), stretched to the square input, bicubic (area when shrinking a lot)."""
    h, w = image.shape[:2]
    shrink = max(h, w) > 2 * size
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, S, S, 3) uint8 → (N, 3, S, S) float, normalised, channels_last."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)
