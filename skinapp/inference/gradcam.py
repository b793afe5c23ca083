"""Grad-CAM for any class, on the classification head alone.

The target layer is the head's hidden 1×1 block on the stride-32 features, run over encoder features already
computed for prediction: the map is the same as a whole-network Grad-CAM at that layer, but costs a head pass
instead of a second encoder pass. pytorch-grad-cam adds forward and backward hooks to the network for the
call, and those hooks would also record any other forward pass through the same network meanwhile; so
`MODEL_USE` is held for the whole call, and `Predictor` holds it around every use of its networks: two app
sessions sharing one cached model never see each other's activations.
"""

from __future__ import annotations

import threading

import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from skinapp.model.network import LesionNet

MODEL_USE = threading.RLock()


class _HeadOnTopFeatures(nn.Module):
    """The classification head as a function of the stride-32 features alone (what Grad-CAM differentiates)."""

    def __init__(self, net: LesionNet, lower_features: list[torch.Tensor], metadata: torch.Tensor):
        super().__init__()
        self.net = net
        self.lower_features = lower_features
        self.metadata = metadata

    def forward(self, top: torch.Tensor) -> torch.Tensor:
        return self.net.head([*self.lower_features, top], self.metadata).logits


class LogitDifference:
    """The target that separates two diagnoses: the logit of one minus the other's (a contrastive Grad-CAM shows
    what speaks for the first against the second, where a plain map covers the whole lesion for both)."""

    def __init__(self, towards: int, against: int):
        self.towards, self.against = towards, against

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        if output.ndim == 1:
            return output[self.towards] - output[self.against]
        return output[:, self.towards] - output[:, self.against]


def gradcam_maps(net: LesionNet, features: list[torch.Tensor], metadata: torch.Tensor, classes: list[int],
                 against: list[int] | None = None) -> np.ndarray:
    """Grad-CAM of `classes[i]` for image i, (B, h, w) in [0, 1] at the stride-32 grid; with `against`, of the
    difference between the logits of `classes[i]` and `against[i]`."""
    lower = [f.detach() for f in features[:-1]]
    top = features[-1].detach().requires_grad_(True)  # frozen weights: gradients flow to the activations only
    wrapper = _HeadOnTopFeatures(net, lower, metadata.detach())
    with MODEL_USE:
        cam = GradCAM(model=wrapper, target_layers=[net.class_hidden])
        try:
            with torch.enable_grad():
                targets = ([ClassifierOutputTarget(c) for c in classes] if against is None
                           else [LogitDifference(c, a) for c, a in zip(classes, against, strict=True)])
                return cam(input_tensor=top, targets=targets)
        finally:
            cam.activations_and_grads.release()
