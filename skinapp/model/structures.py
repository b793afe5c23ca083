"""Dermoscopic structures read from a member's own features: a linear head per location, pooled over the lesion.

The diagnosis head's recipe, applied to structures (Tymchenko et al.; Xue et al. for the attributes): each location of
the stride-16 grid gets one logit per structure from the encoder's stride-16 features and its stride-32 features
brought to the same grid; the image's logit is their average weighted by the lesion attention σ(M). Because
the pooling is linear, the head is fitted as a logistic regression on the attention-pooled features
(`skinapp.train.structures`), and the same weights, applied location by location, give the map of where each
structure is seen. The members stay frozen: the head cannot change the diagnosis.

One head per ensemble member (each reads its own member's features); the weights live in one safetensors file
beside the members, described by the card's `StructureSection`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from skinapp.vocab import STRUCTURES


def structure_features(features: list[torch.Tensor]) -> torch.Tensor:
    """(B, C16 + C32, h16, w16): the stride-16 features and the stride-32 ones upsampled onto their grid."""
    middle, top = features[-2], features[-1]
    return torch.cat([middle.float(), F.interpolate(top.float(), size=middle.shape[-2:], mode="bilinear",
                                                    align_corners=False)], dim=1)


def lesion_weights(mask_logits: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """(B, h, w): σ(M) averaged onto the structure grid, the weights the pooling uses."""
    height, width = size
    return F.adaptive_avg_pool2d(torch.sigmoid(mask_logits.float()), (int(height), int(width)))[:, 0]


def pooled(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w), (B, h, w) → (B, C): the lesion-weighted average of each channel."""
    w = weights[:, None]
    return (values * w).sum(dim=(2, 3)) / w.sum(dim=(2, 3)).clamp_min(1e-6)


@dataclass(frozen=True)
class LinearStructureHead:
    """One member's head: logit(x) = weight · (f(x) − mean) / scale + bias, for every structure."""

    mean: np.ndarray      # (C,)
    scale: np.ndarray     # (C,)
    weight: np.ndarray    # (S, C)
    bias: np.ndarray      # (S,)

    def location_logits(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) → (B, S, h, w)."""
        mean = torch.as_tensor(self.mean, dtype=features.dtype, device=features.device)[None, :, None, None]
        scale = torch.as_tensor(self.scale, dtype=features.dtype, device=features.device)[None, :, None, None]
        weight = torch.as_tensor(self.weight, dtype=features.dtype, device=features.device)
        bias = torch.as_tensor(self.bias, dtype=features.dtype, device=features.device)
        return torch.einsum("sc,bchw->bshw", weight, (features - mean) / scale) + bias[None, :, None, None]

    def pooled_logits(self, features: np.ndarray) -> np.ndarray:
        """(N, C) attention-pooled features → (N, S) image logits (the same as pooling the location logits)."""
        return ((features - self.mean) / self.scale) @ self.weight.T + self.bias


def save_heads(heads: list[LinearStructureHead], path: Path) -> None:
    tensors = {}
    for k, head in enumerate(heads):
        for name in ("mean", "scale", "weight", "bias"):
            tensors[f"member{k}.{name}"] = torch.as_tensor(np.asarray(getattr(head, name), np.float32)).contiguous()
    save_file(tensors, str(path), metadata={"structures": ",".join(STRUCTURES)})


def load_heads(path: Path, members: int) -> list[LinearStructureHead]:
    tensors = load_file(str(path))
    heads = []
    for k in range(members):
        try:
            parts = {name: tensors[f"member{k}.{name}"].numpy() for name in ("mean", "scale", "weight", "bias")}
        except KeyError as exc:
            raise ValueError(f"{path.name} has no structure head for member {k}") from exc
        if parts["weight"].shape[0] != len(STRUCTURES):
            raise ValueError(f"{path.name} reads {parts['weight'].shape[0]} structures, not {len(STRUCTURES)}")
        heads.append(LinearStructureHead(**parts))
    return heads
