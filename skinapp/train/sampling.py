"""What one training epoch sees: images drawn balanced over classes and data sets, augmented, with metadata
hidden at random."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import torch

from skinapp.metrics import is_malignant
from skinapp.model.batch import to_tensor
from skinapp.train.augment import AugmentConfig, augment
from skinapp.train.config import TrainConfig
from skinapp.train.data import BENIGN_UNSPECIFIED, LabelledImages
from skinapp.vocab import CLASSES, Metadata, Site, encode_metadata


class Batch(NamedTuple):
    images: torch.Tensor      # (B, 3, S, S)
    masks: torch.Tensor       # (B, 1, S, S), zeros where the image has no mask
    valid: torch.Tensor       # (B,) bool: which images have a mask
    metadata: torch.Tensor    # (B, METADATA_DIM), fields hidden at random
    labels: torch.Tensor      # (B,) class index or the partial label
    structures: torch.Tensor | None = None      # (B, S) present 0/1, NaN where not labelled
    global_pattern: torch.Tensor | None = None  # (B,) pattern index, -1 where not labelled


def drop_metadata(meta: Metadata, rng: np.random.Generator, p: float) -> Metadata:
    """Hide fields at random so that predictions without metadata stay good (many uploads carry none)."""
    if rng.random() < p:
        return Metadata()
    age = None if rng.random() < p else meta.age
    sex = None if rng.random() < p else meta.sex
    site = meta.site
    if rng.random() < p:
        site = Site()
    elif rng.random() < p:  # SIIM-ISIC files name only the region
        site = Site(region=site.region)
    return Metadata(age, sex, site)


def batches(indices: np.ndarray, data: LabelledImages, cfg: TrainConfig, rng: np.random.Generator,
            aug: AugmentConfig) -> Iterator[Batch]:
    masks_of = data.masks or [None] * len(data)
    for start in range(0, len(indices) - cfg.batch_size + 1, cfg.batch_size):
        chosen = indices[start:start + cfg.batch_size]
        views = [augment(data.images[i], masks_of[i], cfg.image_size, rng, aug) for i in chosen]
        images = to_tensor(np.stack([v[0] for v in views]))
        empty = np.zeros((cfg.image_size, cfg.image_size), np.float32)
        masks = torch.from_numpy(np.stack([empty if v[1] is None else v[1] for v in views]))[:, None]
        valid = torch.tensor([v[1] is not None for v in views])
        shown = [drop_metadata(data.metadata[i], rng, cfg.metadata_dropout) for i in chosen]
        metadata = torch.tensor(np.asarray([encode_metadata(m) for m in shown], np.float32))
        yield Batch(images, masks, valid, metadata, torch.from_numpy(data.labels[chosen]),
                    None if data.structures is None else torch.from_numpy(data.structures[chosen]),
                    None if data.global_pattern is None else torch.from_numpy(data.global_pattern[chosen]))


def sampling_weights(labels: np.ndarray, sources: np.ndarray, class_power: float, source_power: float) -> np.ndarray:
    """Per-image sampling probability. Classes get shares ∝ count^(1-class_power); within a class, each data set
    gets a share ∝ its count^(1-source_power); images within a (class, data set) cell are equally likely."""
    weights = np.zeros(len(labels))
    classes = np.unique(labels)
    class_counts = np.array([(labels == c).sum() for c in classes], float)
    class_share = class_counts ** (1 - class_power)
    class_share /= class_share.sum()
    for c, share in zip(classes, class_share, strict=True):
        in_class = labels == c
        cell_sources, cell_counts = np.unique(sources[in_class], return_counts=True)
        source_share = cell_counts.astype(float) ** (1 - source_power)
        source_share /= source_share.sum()
        for s, s_share, n in zip(cell_sources, source_share, cell_counts, strict=True):
            weights[in_class & (sources == s)] = share * s_share / n
    return weights / weights.sum()


def with_share(p: np.ndarray, rows: np.ndarray, share: float) -> np.ndarray:
    """`p` rescaled so that `rows` hold `share` of the mass, each side keeping its own proportions."""
    if not 0 < share < 1:
        raise ValueError(f"a share must lie between 0 and 1, not {share}")
    if not rows.any() or rows.all():
        return p
    return np.where(rows, p * share / p[rows].sum(), p * (1 - share) / p[~rows].sum())


def with_malignant_share_in_partial_sources(p: np.ndarray, labels: np.ndarray, sources: np.ndarray,
                                            share: float) -> np.ndarray:
    """`p` with each data set that carries the partial label drawn as often as before, but with `share` of its draws
    on its malignant images. Without it a screening population's few melanomas are drowned by its benign lesions,
    and the model may learn the population's look as a sign of "benign"."""
    p = p.copy()
    for source in np.unique(sources[labels == BENIGN_UNSPECIFIED]):
        rows = sources == source
        malignant = is_malignant(labels[rows])
        if malignant.any():  # (never all: the data set carries the partial label)
            p[rows] = with_share(p[rows], malignant, share) * p[rows].sum()
    return p


def sample_epoch(data: LabelledImages, index: np.ndarray, rng: np.random.Generator, cfg: TrainConfig, n: int) -> np.ndarray:
    labels = data.labels[index]
    if cfg.partial_sampling == "with_nevi":  # drawn within the nevi's share, as a data set of its own
        labels = np.where(labels == BENIGN_UNSPECIFIED, CLASSES.index("NV"), labels)
        sources = np.where(data.labels[index] == BENIGN_UNSPECIFIED, "partial:" + data.sources[index], data.sources[index])
    elif cfg.partial_sampling == "own_class":
        sources = data.sources[index]
    else:
        raise ValueError(f"unknown partial_sampling {cfg.partial_sampling!r}")
    p = sampling_weights(labels, sources, cfg.sampler_power, cfg.source_power)
    if cfg.partial_share is not None:
        p = with_share(p, data.labels[index] == BENIGN_UNSPECIFIED, cfg.partial_share)
    if cfg.partial_source_malignant_share is not None:
        p = with_malignant_share_in_partial_sources(p, data.labels[index], data.sources[index],
                                                    cfg.partial_source_malignant_share)
    natural = cfg.sampler_power == 0 and cfg.source_power == 0
    return index[rng.choice(len(index), size=n, replace=not natural or n > len(index), p=p)]
