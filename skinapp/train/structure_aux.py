"""Structure supervision while a member trains (issue 28's "jointly trained" way): an auxiliary head that asks the
encoder's stride-16/32 features to tell the dermoscopic structures apart, and the lesion's global pattern.

The head has the shipped structure head's form (a linear logit per location, pooled over the lesion by σ(M)), so
what the member's features learn is read out by the same logistic head either way; the auxiliary head itself is
dropped after training. The lesion weights are taken without gradient: structures do not move the outline."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from skinapp.model.structures import lesion_weights, pooled, structure_features
from skinapp.train.structures import GLOBAL_PATTERNS
from skinapp.vocab import STRUCTURES


class StructureAux(nn.Module):
    positive_weight: torch.Tensor

    def __init__(self, channels: int, positive_weight: np.ndarray, with_pattern: bool):
        super().__init__()
        self.structures = nn.Conv2d(channels, len(STRUCTURES), 1)
        self.pattern = nn.Linear(channels, len(GLOBAL_PATTERNS)) if with_pattern else None
        self.register_buffer("positive_weight", torch.as_tensor(positive_weight, dtype=torch.float32))

    def loss(self, features: list[torch.Tensor], mask_logits: torch.Tensor, present: torch.Tensor,
             pattern: torch.Tensor | None) -> torch.Tensor:
        """Class-weighted BCE over the labelled (image, structure) pairs, plus the global pattern's cross-entropy
        where one is marked; zero (with a graph) for a batch without labels."""
        grid = structure_features(features)
        weights = lesion_weights(mask_logits.detach(), grid.shape[-2:])
        logits = pooled(self.structures(grid), weights)
        known = ~torch.isnan(present)
        total = logits.sum() * 0
        if known.any():
            target = torch.nan_to_num(present, nan=0.0)
            weight = torch.where(target > 0.5, self.positive_weight[None, :].expand(target.shape), torch.ones_like(target))
            bce = F.binary_cross_entropy_with_logits(logits, target, weight=weight, reduction="none")
            total = total + bce[known].sum() / known.sum()
        if self.pattern is not None and pattern is not None and (pattern >= 0).any():
            marked = pattern >= 0
            total = total + F.cross_entropy(self.pattern(pooled(grid, weights))[marked], pattern[marked])
        return total


def positive_weights(present: np.ndarray) -> np.ndarray:
    """Per structure, negatives / positives among the labelled images (few positives weigh more)."""
    known = ~np.isnan(present)
    positives = np.nansum(present, axis=0)
    negatives = known.sum(axis=0) - positives
    return (negatives / np.maximum(positives, 1)).astype(np.float32)
