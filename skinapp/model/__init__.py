"""The lesion model: encoder registry, the multi-task network, and its weights on disk."""

from skinapp.model.encoder import ENCODERS, IMAGE_MEAN, IMAGE_STD, create_encoder, create_imagenet_classifier
from skinapp.model.network import LesionNet, ModelConfig, NetOutput, create_model

__all__ = [
    "ENCODERS", "IMAGE_MEAN", "IMAGE_STD", "LesionNet", "ModelConfig", "NetOutput",
    "create_encoder", "create_imagenet_classifier", "create_model",
]
