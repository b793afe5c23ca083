"""Similar labelled cases, and how far an image lies from the training data.

`EmbeddingIndex` holds the embedding, diagnosis and image name of every labelled HAM10000 image, made by the
shipped model (`weights/embeddings.npz`, written by `python -m skinapp evaluate`). The nearest entries to a
new lesion are the "similar cases" shown to the clinician, and how many of them share the model's diagnosis
is a warning sign when few do. The triplet-trained embedding gathers each diagnosis tightly, so even a photo
of a cat lands near some class: it cannot tell what is not a lesion. `TrainingDistribution` does that from
the encoder's pooled features instead, with the Mahalanobis distance to their distribution over the
training images (Lee et al. 2018), a Gaussian with Ledoit-Wolf shrinkage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sklearn.covariance import LedoitWolf

from skinapp.vocab import CLASSES

INDEX_FILE = "embeddings.npz"
VOTE_K = 10       # neighbours voting on a diagnosis


@dataclass(frozen=True)
class Neighbour:
    image_id: str
    label: str          # diagnosis code, e.g. "MEL"
    similarity: float   # cosine similarity in [-1, 1]
    lesion_id: str = ""


@dataclass
class EmbeddingIndex:
    embeddings: np.ndarray   # (N, D) float32, L2-normalised rows
    labels: np.ndarray       # (N,) class indices
    image_ids: np.ndarray    # (N,) str
    lesion_ids: np.ndarray   # (N,) str: several images may show one lesion

    def _similarities(self, embedding: np.ndarray, exclude_lesion: str | None) -> np.ndarray:
        similarities = self.embeddings @ (embedding / max(float(np.linalg.norm(embedding)), 1e-12)).astype(np.float32)
        if exclude_lesion:
            similarities = np.where(self.lesion_ids == exclude_lesion, -np.inf, similarities)
        return similarities

    def neighbours(self, embedding: np.ndarray, k: int = 5, exclude_lesion: str | None = None) -> list[Neighbour]:
        similarities = self._similarities(embedding, exclude_lesion)
        top = np.argpartition(-similarities, min(k, len(similarities) - 1))[:k]
        top = top[np.argsort(-similarities[top])]
        return [Neighbour(str(self.image_ids[i]), CLASSES[int(self.labels[i])], float(similarities[i]),
                          str(self.lesion_ids[i])) for i in top]

    def agreement(self, embedding: np.ndarray, class_name: str, exclude_lesion: str | None = None) -> float:
        """Share of the VOTE_K nearest labelled images that have `class_name`."""
        return float(np.mean([n.label == class_name for n in self.neighbours(embedding, VOTE_K, exclude_lesion)]))

    def vote(self, embedding: np.ndarray, exclude_lesion: str | None = None) -> tuple[str, float]:
        """The most common diagnosis among the VOTE_K nearest images, and its share of the votes."""
        labels = [n.label for n in self.neighbours(embedding, VOTE_K, exclude_lesion)]
        winner = max(set(labels), key=labels.count)
        return winner, labels.count(winner) / len(labels)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"embeddings": self.embeddings.astype(np.float32), "labels": self.labels.astype(np.int8),
                "image_ids": self.image_ids.astype(str), "lesion_ids": self.lesion_ids.astype(str)}

    @classmethod
    def from_arrays(cls, data) -> "EmbeddingIndex":
        embeddings = data["embeddings"].astype(np.float32)
        embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True).clip(1e-12)
        return cls(embeddings, data["labels"].astype(int), data["image_ids"], data["lesion_ids"])


@dataclass
class TrainingDistribution:
    """A Gaussian over the encoder's pooled features of the training images."""

    mean: np.ndarray        # (C,)
    precision: np.ndarray   # (C, C)

    @classmethod
    def fit(cls, features: np.ndarray) -> "TrainingDistribution":
        estimate = LedoitWolf().fit(features.astype(np.float64))
        return cls(estimate.location_.astype(np.float32), estimate.precision_.astype(np.float32))

    def distance(self, features: np.ndarray) -> float:
        """Mahalanobis distance: about √C for a typical training image, far more for what is unlike them."""
        centred = features.astype(np.float32) - self.mean
        return float(np.sqrt(max(float(centred @ self.precision @ centred), 0.0)))


def save_index(path: Path, index: EmbeddingIndex, distribution: TrainingDistribution | None) -> None:
    extra = {} if distribution is None else {"feature_mean": distribution.mean, "feature_precision": distribution.precision}
    np.savez_compressed(path, **index.arrays(), **extra)


def load_index(path: Path) -> tuple[EmbeddingIndex, TrainingDistribution | None]:
    with np.load(path, allow_pickle=False) as data:
        distribution = (TrainingDistribution(data["feature_mean"], data["feature_precision"])
                        if "feature_mean" in data.files else None)
        return EmbeddingIndex.from_arrays(data), distribution
