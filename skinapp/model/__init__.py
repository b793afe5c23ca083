"""The lesion model: its card (`card.py`, the typed bundle metadata, torch-free), the architecture, the encoder
registry, the multi-task network and its weights on disk. The torch parts are imported on first use, so
`skinapp.model.card` can be read without loading torch."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from skinapp.model.architecture import ModelConfig
    from skinapp.model.encoder import ENCODERS, create_encoder, create_imagenet_classifier
    from skinapp.model.network import LesionNet, NetOutput, create_model
    from skinapp.model.preprocess import IMAGE_MEAN, IMAGE_STD

_WHERE = {
    "ENCODERS": "encoder", "IMAGE_MEAN": "preprocess", "IMAGE_STD": "preprocess", "create_encoder": "encoder",
    "create_imagenet_classifier": "encoder", "LesionNet": "network", "ModelConfig": "architecture",
    "NetOutput": "network", "create_model": "network",
}
__all__ = [
    "ENCODERS", "IMAGE_MEAN", "IMAGE_STD", "LesionNet", "ModelConfig", "NetOutput", "create_encoder",
    "create_imagenet_classifier", "create_model",
]


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"skinapp.model.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'skinapp.model' has no attribute {name!r}")
