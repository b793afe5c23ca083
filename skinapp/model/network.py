"""The multi-task lesion network (Tymchenko et al. 2020, with a supervisable attention branch).

    image ──encoder──▶ f8, f16, f32
    metadata ──Linear+ReLU──▶ m                         (eqs. 1–2; broadcast and concatenated with f32)
    [f32; m] ──1×1──▶ H ──1×1──▶ C  per-location class logits (stride 32, upsampled to stride 8)
    f8, f16, f32 ──FPN decoder──▶ M  attention / lesion-mask logits (stride 8)
    logits = Σ σ(M)·C / Σ σ(M)                          (eqs. 3–6; σ(M)·C is the refined mask)
    embedding = normalise(W · Σ σ(M)·H / Σ σ(M))        for similar-case retrieval
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from skinapp.model.architecture import ModelConfig
from skinapp.model.encoder import create_encoder


@dataclass
class NetOutput:
    logits: torch.Tensor           # (B, K) attention-pooled class logits
    mask_logits: torch.Tensor      # (B, 1, h, w) M at stride 8
    location_logits: torch.Tensor  # (B, K, h, w) C upsampled to stride 8
    embedding: torch.Tensor        # (B, D), L2-normalised

    @property
    def refined_mask(self) -> torch.Tensor:
        """σ(M)·C: where the model found evidence for each class."""
        return torch.sigmoid(self.mask_logits) * self.location_logits


def _conv_bn_relu(cin: int, cout: int, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class MaskDecoder(nn.Module):
    """A small top-down decoder from strides 32/16/8 to one mask-logit map at stride 8."""

    def __init__(self, in_channels: list[int], channels: int):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.smooth = nn.ModuleList(_conv_bn_relu(channels, channels) for _ in in_channels[:-1])
        self.out = nn.Conv2d(channels, 1, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = self.lateral[-1](features[-1])
        for level in range(len(features) - 2, -1, -1):
            lateral = self.lateral[level](features[level])
            x = lateral + F.interpolate(x, size=lateral.shape[-2:], mode="bilinear", align_corners=False)
            x = self.smooth[level](x)
        return self.out(x)


def attention_pool(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Σ w·v / Σ w over space; weights (B,1,h,w) broadcast over the channels of values (B,C,h,w)."""
    return (values * weights).sum(dim=(2, 3)) / weights.sum(dim=(2, 3)).clamp_min(1e-6)


class LesionNet(nn.Module):
    def __init__(self, config: ModelConfig, pretrained_encoder: bool = True):
        super().__init__()
        self.config = config
        self.encoder = create_encoder(config.encoder, pretrained=pretrained_encoder)
        channels = cast(Any, self.encoder).feature_info.channels()  # timm's features_only models carry it
        self.metadata_encoder = nn.Sequential(nn.Linear(config.metadata_dim, config.metadata_channels), nn.ReLU(inplace=True))
        self.class_hidden = _conv_bn_relu(channels[-1] + config.metadata_channels, config.head_channels, kernel=1)
        self.class_dropout = nn.Dropout2d(config.dropout)
        self.class_logits = nn.Conv2d(config.head_channels, config.num_classes, 1)
        self.mask_decoder = MaskDecoder(channels, config.decoder_channels)
        self.embedding = nn.Linear(config.head_channels, config.embedding_dim)

    def encode(self, image: torch.Tensor) -> list[torch.Tensor]:
        return self.encoder(image)

    def head(self, features: list[torch.Tensor], metadata: torch.Tensor) -> NetOutput:
        top = features[-1]
        meta = self.metadata_encoder(metadata)[:, :, None, None].expand(-1, -1, *top.shape[-2:])
        hidden = self.class_hidden(torch.cat([top, meta], dim=1))
        mask_logits = self.mask_decoder(features)
        attention = torch.sigmoid(mask_logits)
        location_logits = F.interpolate(
            self.class_logits(self.class_dropout(hidden)), size=mask_logits.shape[-2:], mode="bilinear", align_corners=False
        )
        coarse_attention = F.adaptive_avg_pool2d(attention, hidden.shape[-2:])
        embedding = F.normalize(self.embedding(attention_pool(hidden, coarse_attention)), dim=1)
        return NetOutput(
            logits=attention_pool(location_logits, attention),
            mask_logits=mask_logits,
            location_logits=location_logits,
            embedding=embedding,
        )

    def forward(self, image: torch.Tensor, metadata: torch.Tensor) -> NetOutput:
        return self.head(self.encode(image), metadata)


def create_model(config: ModelConfig | None = None, pretrained_encoder: bool = True) -> LesionNet:
    return LesionNet(config or ModelConfig(), pretrained_encoder=pretrained_encoder)
