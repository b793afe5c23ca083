"""Preprocessed images → the network's input tensor (torch)."""

from __future__ import annotations

import numpy as np
import torch

from skinapp.model.preprocess import IMAGE_MEAN, IMAGE_STD, Preprocessing


def to_tensor(images: np.ndarray, mean: tuple[float, ...] = IMAGE_MEAN, std: tuple[float, ...] = IMAGE_STD) -> torch.Tensor:
    """(N, S, S, 3) uint8 → (N, 3, S, S) float, normalised, channels_last."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    mean_t = torch.tensor(mean).view(1, 3, 1, 1)
    std_t = torch.tensor(std).view(1, 3, 1, 1)
    return ((x - mean_t) / std_t).contiguous(memory_format=torch.channels_last)


def model_input(preprocessing: Preprocessing, images: list[np.ndarray] | np.ndarray) -> torch.Tensor:
    """Decoded RGB uint8 images of any size → the normalised (N, 3, S, S) batch the card's network expects."""
    return to_tensor(preprocessing.model_images(images), preprocessing.mean, preprocessing.std)
