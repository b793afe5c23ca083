"""The trained model applied to images: `Predictor` (torch) and what it returns, `Prediction` (numpy only).

    from skinapp.inference import Predictor
    predictor = Predictor.from_weights("weights")   # CUDA when present, else CPU; loaded once
    predictions = predictor.predict(images, metadata)

`Predictor` is imported on first use, so modules that only read stored predictions (the worklist, reports)
never load torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from skinapp.inference.outline import LesionOutline, lesion_outline, resize_map
from skinapp.inference.prediction import Prediction

if TYPE_CHECKING:
    from skinapp.inference.predictor import Predictor, default_device

__all__ = ["LesionOutline", "Prediction", "Predictor", "default_device", "lesion_outline", "resize_map"]


def __getattr__(name: str):
    if name in ("Predictor", "default_device"):
        from skinapp.inference import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module 'skinapp.inference' has no attribute {name!r}")
