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
from typing import Any

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
    closeness: float | None = None  # 1: the same point; 0: as far as the typical training image is from the query

    @property
    def closeness_text(self) -> str:
        return "" if self.closeness is None else f"closeness {max(0.0, self.closeness) * 100:.0f} / 100"


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
        # Cosine similarities in a trained embedding crowd near 1 (0.999 against 0.996 for a typical image), so
        # they are shown as the distance relative to the typical training image's distance from this query.
        typical = 1.0 - float(np.median(similarities[np.isfinite(similarities)]))
        return [Neighbour(str(self.image_ids[i]), CLASSES[int(self.labels[i])], float(similarities[i]),
                          str(self.lesion_ids[i]), 1.0 - (1.0 - float(similarities[i])) / max(typical, 1e-9))
                for i in top]

    def agreement(self, embedding: np.ndarray, class_name: str, exclude_lesion: str | None = None) -> float:
        """Share of the VOTE_K nearest labelled images that have `class_name`."""
        return float(np.mean([n.label == class_name for n in self.neighbours(embedding, VOTE_K, exclude_lesion)]))

    def vote(self, embedding: np.ndarray, exclude_lesion: str | None = None) -> tuple[str, float]:
        """The most common diagnosis among the VOTE_K nearest images, and its share of the votes. A tie goes to
        the diagnosis of the nearer image (the same answer on every run)."""
        labels = [n.label for n in self.neighbours(embedding, VOTE_K, exclude_lesion)]
        winner = max(labels, key=lambda label: (labels.count(label), -labels.index(label)))
        return winner, labels.count(winner) / len(labels)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"embeddings": self.embeddings.astype(np.float32), "labels": self.labels.astype(np.int8),
                "image_ids": self.image_ids.astype(str), "lesion_ids": self.lesion_ids.astype(str)}

    def member_view(self, member: int, n_members: int) -> EmbeddingIndex:
        """The index in one ensemble member's own embedding space (the ensemble's is the members' concatenated)."""
        if n_members == 1:
            return self
        width = self.embeddings.shape[1] // n_members
        part = self.embeddings[:, member * width:(member + 1) * width]
        return EmbeddingIndex(part / np.linalg.norm(part, axis=1, keepdims=True).clip(1e-12), self.labels,
                              self.image_ids, self.lesion_ids)

    @classmethod
    def from_arrays(cls, data) -> EmbeddingIndex:
        embeddings = data["embeddings"].astype(np.float32)
        embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True).clip(1e-12)
        return cls(embeddings, data["labels"].astype(int), data["image_ids"], data["lesion_ids"])


@dataclass
class TrainingDistribution:
    """One Gaussian per ensemble member over that member's pooled encoder features of its training images.

    An image's distance is the mean of its Mahalanobis distances under each member's Gaussian, so it is on the
    same scale whether one member or five look at it, and a held-out image can be measured by the one member
    that never trained on it."""

    mean: np.ndarray        # (M, C)
    precision: np.ndarray   # (M, C, C)

    def __post_init__(self) -> None:
        if self.mean.ndim == 1:  # index files from single-model releases
            self.mean, self.precision = self.mean[None], self.precision[None]

    @property
    def members(self) -> int:
        return int(self.mean.shape[0])

    @classmethod
    def fit(cls, features: np.ndarray) -> TrainingDistribution:
        return cls.fit_members([features])

    @classmethod
    def fit_members(cls, per_member: list[np.ndarray]) -> TrainingDistribution:
        """per_member[j]: (N_j, C) features by member j of the images it trained on."""
        estimates = [LedoitWolf().fit(f.astype(np.float64)) for f in per_member]
        return cls(np.stack([e.location_ for e in estimates]).astype(np.float32),
                   np.stack([e.precision_ for e in estimates]).astype(np.float32))

    def member(self, member: int) -> TrainingDistribution:
        """One member's Gaussian alone, for that member's own features."""
        return TrainingDistribution(self.mean[member:member + 1], self.precision[member:member + 1])

    def member_distance(self, member: int, features: np.ndarray) -> float:
        """Mahalanobis distance under one member's Gaussian: about √C for a typical training image."""
        centred = features.astype(np.float32) - self.mean[member]
        return float(np.sqrt(max(float(centred @ self.precision[member] @ centred), 0.0)))

    def distance(self, features: np.ndarray) -> float:
        """features: the ensemble's (M·C,), the members' pooled features side by side."""
        parts = np.split(np.asarray(features), self.members)
        return float(np.mean([self.member_distance(j, part) for j, part in enumerate(parts)]))


def save_index(path: Path, index: EmbeddingIndex, distribution: TrainingDistribution | None) -> None:
    arrays: dict[str, Any] = dict(index.arrays())
    if distribution is not None:
        arrays.update(feature_mean=distribution.mean, feature_precision=distribution.precision)
    np.savez_compressed(path, **arrays)


def load_index(path: Path) -> tuple[EmbeddingIndex, TrainingDistribution | None]:
    with np.load(path, allow_pickle=False) as data:
        distribution = (TrainingDistribution(data["feature_mean"], data["feature_precision"])
                        if "feature_mean" in data.files else None)
        return EmbeddingIndex.from_arrays(data), distribution
