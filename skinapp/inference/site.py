"""Site profiles: the ensemble adapted to one clinic's images without labels (AdaBN; Li et al. 2016, Schneider et
al. 2020). What depends on how a clinic's dermatoscope renders skin — every member's batch-norm statistics — is
re-estimated from at least `MIN_SITE_IMAGES` of the site's own images; the weights, calibration, rule, sets,
net, tiers and flags stay the model card's.

A profile is a safetensors file (never pickle) holding each member's batch-norm running means and variances, with
its metadata (name, the model identity it was made for, how many images) in the file's header. Its identity
hashes the statistics and the model's identity, so results made with a profile are told apart from the plain
model's and from another site's (`ProfiledModel.identity`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load, save
from torch import nn

from skinapp.inference.site_identity import MIN_SITE_IMAGES, SiteProfileError, site_profiled_identity
from skinapp.inference.views import views_for
from skinapp.model.batch import model_input
from skinapp.model.card import ModelCard
from skinapp.model.network import LesionNet
from skinapp.vocab import Metadata, encode_metadata

_STATS = ("running_mean", "running_var")
__all__ = ["MIN_SITE_IMAGES", "SiteBatch", "SiteProfile", "SiteProfileError", "apply_profile", "estimate_profile",
           "in_batches", "profiled_identity"]


@dataclass(frozen=True)
class SiteProfile:
    name: str
    model_identity: str                # the `ModelCard.identity` it was estimated for
    n_images: int
    created_at: str
    statistics: dict[str, torch.Tensor]  # "member{j}.{module}.running_mean|running_var"

    @cached_property  # every result names it: hashed once
    def identity(self) -> str:
        digest = hashlib.sha256(self.model_identity.encode())
        for key in sorted(self.statistics):
            digest.update(key.encode())
            digest.update(self.statistics[key].detach().cpu().float().numpy().tobytes())
        return digest.hexdigest()

    @property
    def label(self) -> str:
        """How results name it: "site profile Clinic A (a1b2c3d4e5f6, 212 images)"."""
        return f"site profile {self.name} ({self.identity[:12]}, {self.n_images} images)"

    def to_bytes(self) -> bytes:
        header = {"name": self.name, "model_identity": self.model_identity, "n_images": str(self.n_images),
                  "created_at": self.created_at}
        return save({k: v.contiguous() for k, v in self.statistics.items()}, metadata=header)

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "the data given") -> SiteProfile:
        try:
            statistics = load(data)
            length = int.from_bytes(data[:8], "little")
            header = json.loads(data[8:8 + length])["__metadata__"]
            return cls(header["name"], header["model_identity"], int(header["n_images"]), header["created_at"],
                       statistics)
        except (SafetensorError, KeyError, ValueError, TypeError) as exc:
            raise SiteProfileError(f"{where} is not a site profile: {exc}") from exc

    def save(self, path: Path) -> None:
        path.write_bytes(self.to_bytes())

    @classmethod
    def load(cls, path: Path) -> SiteProfile:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise SiteProfileError(f"{path} is not a site profile: {exc}") from exc
        return cls.from_bytes(data, str(path))


def _norm_layers(model: nn.Module) -> dict[str, nn.modules.batchnorm._BatchNorm]:
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}


SiteBatch = tuple[Sequence[np.ndarray], Sequence[Metadata | None]]  # images of the site and what is known of each


def in_batches(images: Sequence[np.ndarray], metadata: Sequence[Metadata | None] | None = None,
               batch_size: int = 32) -> Iterator[SiteBatch]:
    meta = list(metadata) if metadata is not None else [None] * len(images)
    for start in range(0, len(images), batch_size):
        yield images[start:start + batch_size], meta[start:start + batch_size]


@torch.no_grad()
def estimate_profile(models: Sequence[LesionNet], card: ModelCard, batches: Iterable[SiteBatch], name: str = "site",
                     views: int = 4, device: torch.device | str = "cpu", minimum: int = MIN_SITE_IMAGES) -> SiteProfile:
    """Each member's batch-norm statistics re-estimated on the site's images (every test-time view of each, so
    that the statistics match what the app feeds the members), read one batch at a time: memory holds a batch,
    whatever the number of images. The members given are changed (their statistics, and the batch-norm layers left
    in training mode): pass copies that nobody else uses. `minimum`: fewer images are refused (lowered only by the
    site-adaptation benchmark, to show what too few do)."""
    layers = [_norm_layers(member) for member in models]
    for found in layers:
        for layer in found.values():
            layer.reset_running_stats()
            layer.momentum = None  # a cumulative average over every batch
            layer.train()
    count = 0
    for images, metadata in batches:
        if not len(images):
            continue
        count += len(images)
        x = model_input(card.preprocessing, list(images)).to(device)
        codes = torch.tensor(np.asarray([encode_metadata(m or Metadata()) for m in metadata], np.float32)).to(device)
        for member in models:
            for view in views_for(views):
                member(view.forward(x).contiguous(memory_format=torch.channels_last), codes)
    if count < minimum:
        raise SiteProfileError(f"a site profile needs at least {minimum} of the site's images; {count} given")
    statistics = {f"member{j}.{n}.{stat}": getattr(layer, stat).detach().cpu().clone()
                  for j, found in enumerate(layers) for n, layer in found.items() for stat in _STATS}
    return SiteProfile(name, card.identity, count, dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), statistics)


def apply_profile(models: Sequence[LesionNet], card: ModelCard, profile: SiteProfile) -> None:
    """Load the profile's statistics into the members (in place)."""
    if profile.model_identity != card.identity:
        raise SiteProfileError(f"the site profile {profile.name!r} was made for another model "
                               f"({profile.model_identity[:12]}…, not {card.identity[:12]}…); make it again")
    for j, member in enumerate(models):
        for n, layer in _norm_layers(member).items():
            for stat in _STATS:
                key = f"member{j}.{n}.{stat}"
                if key not in profile.statistics:
                    raise SiteProfileError(f"the site profile {profile.name!r} does not fit this model ({key} missing)")
                getattr(layer, stat).copy_(profile.statistics[key].to(getattr(layer, stat).device))


def profiled_identity(card: ModelCard, profile: SiteProfile | None) -> str:
    """The identity stored with each result: the model's own, or one that also binds the site profile."""
    return card.identity if profile is None else site_profiled_identity(card.identity, profile.identity)
