"""What the app and the workflow need of a model, wherever it runs: `LesionModel`, met by the in-process
`Predictor` (torch) and by the model service's client (`distributed/model_client.py`, HTTP, no torch)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, Self

import numpy as np

from skinapp.inference.prediction import Prediction
from skinapp.model.card import ModelCard
from skinapp.vocab import Metadata


class ModelUnavailable(Exception):
    """The model could not be asked (its service is down, refuses this app, or runs another model); the message is
    one sentence a clinician can read."""


class LesionModel(Protocol):
    card: ModelCard
    folder: Path | None  # the installed model's folder: its flag policy and similar-case index are read from there

    @property
    def identity(self) -> str: ...

    @property
    def model_version(self) -> str: ...

    def predict(self, images: Sequence[np.ndarray], metadata: Sequence[Metadata | None] | None = None) -> list[Prediction]: ...

    def with_card(self, card: ModelCard) -> Self: ...

    def explain_class(self, image: np.ndarray, class_name: str, metadata: Metadata | None = None,
                      against: str | None = None) -> np.ndarray: ...
