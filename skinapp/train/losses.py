"""Losses: focal classification loss, BCE + soft-Jaccard mask loss (Chen et al.), batch-hard triplet (Xue et al.)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Cross-entropy scaled by (1 - p_t)^γ; γ = 0 is plain cross-entropy."""
    log_p = F.log_softmax(logits.float(), dim=1).gather(1, target[:, None]).squeeze(1)
    return (-(1 - log_p.exp()) ** gamma * log_p).mean()


def partial_label_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float, partial: int,
                       partial_classes: tuple[int, ...]) -> torch.Tensor:
    """`focal_loss` where a target equal to `partial` means "one of `partial_classes`": its loss is −log of their
    summed probability (the model may spread it over them as it likes)."""
    log_p = F.log_softmax(logits.float(), dim=1)
    is_partial = target == partial
    exact = log_p.gather(1, target.clamp(max=log_p.shape[1] - 1)[:, None]).squeeze(1)
    summed = torch.logsumexp(log_p[:, list(partial_classes)], dim=1)
    log_pt = torch.where(is_partial, summed, exact)
    return (-(1 - log_pt.exp()) ** gamma * log_pt).mean()


def mask_loss(mask_logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """target: (B, 1, H, W) in [0, 1] at any size; it is area-resized to the logits' grid.

    valid: (B,) bool, the samples that have a mask (others add nothing); all of them when None."""
    target = F.interpolate(target, size=mask_logits.shape[-2:], mode="area")
    logits = mask_logits.float()
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(dim=(1, 2, 3))
    prob = torch.sigmoid(logits)
    intersection = (prob * target).sum(dim=(1, 2, 3))
    union = (prob + target).sum(dim=(1, 2, 3)) - intersection
    jaccard = 1 - (intersection + 1) / (union + 1)
    per_sample = bce + jaccard
    if valid is None:
        return per_sample.mean()
    if not valid.any():
        return logits.sum() * 0
    return per_sample[valid].mean()


def batch_hard_triplet_loss(embedding: torch.Tensor, labels: torch.Tensor, margin: float = 0.2) -> torch.Tensor:
    """For each anchor, its farthest same-class and nearest other-class sample in the batch."""
    distance = torch.cdist(embedding.float(), embedding.float())
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    hardest_positive = (distance * (same & ~eye)).amax(dim=1)
    hardest_negative = distance.masked_fill(same, float("inf")).amin(dim=1)
    valid = (same & ~eye).any(dim=1) & (~same).any(dim=1)
    if not valid.any():
        return embedding.sum() * 0
    return F.relu(hardest_positive - hardest_negative + margin)[valid].mean()
