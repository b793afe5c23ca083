"""Each image analysed by the ensemble member that never trained on it: the members' predictors by validation fold,
and the raw outputs each gives the images of its own fold."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from skinapp.inference.prediction import RawOutputs
from skinapp.inference.predictor import Predictor, default_device
from skinapp.model.card import ModelCard
from skinapp.model.checkpoint import load_member
from skinapp.vocab import Metadata


def member_predictors(weights: Path, card: ModelCard, views: int) -> dict[int, Predictor]:
    """One uncalibrated predictor per member (no Grad-CAM), keyed by the fold it held out."""
    device = default_device()
    return {member.validation_fold: Predictor([load_member(weights, member, card.config, device)], card, device=device,
                                              tta=views > 1, views=views if views > 1 else None, gradcam=False,
                                              calibrate=False)
            for member in card.members}


def by_own_member(predictors: dict[int, Predictor], folds: np.ndarray, images: Sequence[np.ndarray],
                  metadata: Sequence[Metadata | None] | None = None) -> list[RawOutputs | None]:
    """The raw outputs of each image from the member whose held-out fold holds it (`folds`: one per image); None
    where no member held it out."""
    outputs: list[RawOutputs | None] = [None] * len(images)
    for fold, predictor in predictors.items():
        chosen = np.flatnonzero(np.asarray(folds) == fold).tolist()
        if not len(chosen):
            continue
        made = predictor.infer([images[k] for k in chosen], None if metadata is None else [metadata[k] for k in chosen])
        for k, raw in zip(chosen, made, strict=True):
            outputs[k] = raw
    return outputs
