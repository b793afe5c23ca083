"""`ModelConfig`: the network's architecture as data (the model card's `config`). No torch here."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from skinapp.vocab import CLASSES, METADATA_DIM


@dataclass(frozen=True)
class ModelConfig:
    encoder: str = "lite0"
    image_size: int = 160
    num_classes: int = len(CLASSES)
    metadata_dim: int = METADATA_DIM
    metadata_channels: int = 64
    head_channels: int = 256
    decoder_channels: int = 64
    embedding_dim: int = 128
    dropout: float = 0.3

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        return cls(**json.loads(text))
