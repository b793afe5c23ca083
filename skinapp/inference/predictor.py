"""`Predictor`: the trained ensemble applied to images with (possibly missing) metadata.

Each image is colour-corrected as the model card says, then analysed in several test-time views (4: identity,
horizontal flip, vertical flip, transpose; 8: all rotations and reflections of the square) run as one batch.
Probabilities are averaged over views and ensemble members (`infer`: the raw outputs); the card's post-processing
chain (`postprocess.py`: calibration, decision rule, conformal set, safety net) makes the `Prediction`. Maps are
mapped back onto the identity view before averaging. Grad-CAM reuses the identity view's encoder features.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from skinapp.inference.gradcam import MODEL_USE, gradcam_maps
from skinapp.inference.outline import resize_map
from skinapp.inference.postprocess import PostProcessing
from skinapp.inference.prediction import Prediction, RawOutputs
from skinapp.inference.site import (
    SiteBatch,
    SiteProfile,
    SiteProfileError,
    apply_profile,
    estimate_profile,
    in_batches,
    profiled_identity,
)
from skinapp.inference.views import IDENTITY_VIEW, undo_views, views_for
from skinapp.model.batch import model_input
from skinapp.model.card import ModelCard, WeightsError
from skinapp.model.checkpoint import load_ensemble, load_structure_heads
from skinapp.model.network import LesionNet
from skinapp.model.structures import LinearStructureHead, lesion_weights, structure_features
from skinapp.model.structures import pooled as pooled_over_lesion
from skinapp.vocab import CLASSES, SITE_PROFILE_MARK, Metadata, encode_metadata


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class _ChunkOutputs:
    """What the members said about a chunk of n images (torch), before post-processing."""

    per_view: torch.Tensor            # (members, views, n, K) probabilities
    attention: torch.Tensor           # (members, views, n, h, w) σ(M), on the identity view
    location: torch.Tensor            # (members, views, n, K, h, w) C, on the identity view
    embedding: torch.Tensor           # (n, members·D) L2-normalised
    image_features: np.ndarray        # (n, members·C)
    identity_features: list[list[torch.Tensor]]  # per member: the identity view's encoder features
    structure_logits: torch.Tensor | None = None  # (n, S) averaged over members and views
    structure_grids: torch.Tensor | None = None   # (n, S, h, w) on the identity view, averaged likewise

    def per_image(self, sizes: Sequence[tuple[int, int]], metadata: Sequence[Metadata]) -> list[RawOutputs]:
        members, views, n, k = self.per_view.shape
        per_view = self.per_view.permute(2, 0, 1, 3).reshape(n, members * views, k).cpu().numpy()
        attention = self.attention.mean(dim=(0, 1))
        refined = (self.attention[:, :, :, None] * self.location).mean(dim=(0, 1)).cpu().numpy()  # (n, K, h, w)
        return [RawOutputs(view_probabilities=per_view[i], attention_grid=attention[i].cpu().numpy(),
                           refined_grids=refined[i], embedding=self.embedding[i].cpu().numpy(),
                           image_features=self.image_features[i], image_size=sizes[i], metadata_used=metadata[i],
                           structure_logits=None if self.structure_logits is None else self.structure_logits[i].numpy(),
                           structure_grids=None if self.structure_grids is None else self.structure_grids[i].numpy())
                for i in range(n)]


class Predictor:
    """Loads the weights once; call `predict` as often as needed."""

    def __init__(self, models: Sequence[LesionNet], card: ModelCard, device: torch.device | str | None = None,
                 tta: bool = True, gradcam: bool = True, batch_size: int = 16, calibrate: bool = True,
                 views: int | None = None):
        self.device = torch.device(device) if device is not None else default_device()
        self.models = [m.to(self.device).to(memory_format=torch.channels_last).eval().requires_grad_(False) for m in models]
        self.card = card
        self.preprocessing = card.preprocessing
        self.image_size = self.preprocessing.image_size
        self.views = views_for(views or card.tta_views) if tta else (IDENTITY_VIEW,)
        self.gradcam = gradcam
        # Images per chunk: at most `batch_size`, and few enough that views × images stays near the forward batch
        # the device runs fastest (measured by bench/bench_predict.py: on a 2-core CPU a 1,280-view chunk took
        # twice as long per image as 32 views).
        forward_batch = 256 if self.device.type == "cuda" else 32
        self.batch_size = max(1, min(batch_size, forward_batch // len(self.views)))
        # Fitted on out-of-fold data by `evaluate`; without calibration none of it applies (the rule, the sets and
        # the net were fitted on calibrated probabilities).
        self.calibrate = calibrate
        self.postprocessing = PostProcessing.from_card(card) if calibrate else PostProcessing()
        self.folder: Path | None = None  # the weights folder, where the flag policy's index lives
        self.site_profile: SiteProfile | None = None
        self.structure_heads: list[LinearStructureHead] | None = None  # read where the card describes them

    @classmethod
    def from_weights(cls, folder: str | Path, **kwargs) -> Predictor:
        device = kwargs.pop("device", None) or default_device()
        models, card = load_ensemble(Path(folder), device)
        predictor = cls(models, card, device=device, **kwargs)
        predictor.folder = Path(folder)
        predictor.structure_heads = load_structure_heads(Path(folder), card)
        return predictor

    def with_card(self, card: ModelCard) -> Predictor:
        """The same loaded weights run under another card of the same model (one whose clinic risk levels differ,
        `skinapp.model.clinic_levels`): a shallow copy sharing the networks; the post-processing and the identity
        follow the new card. WeightsError for a card of other weights or preprocessing."""
        if ([m.sha256 for m in card.members] != [m.sha256 for m in self.card.members]
                or card.preprocessing != self.card.preprocessing or card.config != self.card.config):
            raise WeightsError("that model card describes other weights than the loaded ones")
        view = copy.copy(self)
        view.card = card
        view.postprocessing = PostProcessing.from_card(card) if self.calibrate else PostProcessing()
        return view

    @property
    def model_version(self) -> str:
        """The card's version, and the site profile where one is applied: every result names both."""
        if self.site_profile is None:
            return self.card.version
        profile = self.site_profile
        # the stored version holds at most 128 characters: a long profile name is cut, never its identity
        named = f" ({profile.identity[:12]}, {profile.n_images} images)"
        name = profile.name[:max(8, 128 - len(self.card.version) - len(SITE_PROFILE_MARK) - len(named))]
        return f"{self.card.version}{SITE_PROFILE_MARK}{name}{named}"

    @property
    def identity(self) -> str:
        """What each stored result is bound to: the card's identity, or one that also binds the site profile."""
        return profiled_identity(self.card, self.site_profile)

    def adapt_to_site(self, profile: SiteProfile) -> Predictor:
        """Use a site profile's batch-norm statistics from now on (in place; `SiteProfileError` if it was made for
        another model)."""
        apply_profile(self.models, self.card, profile)
        self.site_profile = profile
        return self

    def _private_members(self) -> list[LesionNet]:
        """Copies of the members that nobody else uses (taken while no other call runs the shared ones)."""
        with MODEL_USE:
            return [copy.deepcopy(m).eval().requires_grad_(False) for m in self.models]

    def with_site_profile(self, profile: SiteProfile) -> Predictor:
        """A copy whose members carry the profile's batch-norm statistics; this predictor, which other users of the
        app share, is left as it was. `SiteProfileError` if the profile was made for another model."""
        if self.site_profile is not None:
            raise SiteProfileError("a site profile is applied to the plain model, not to one already adapted")
        view = copy.copy(self)
        view.models = self._private_members()
        return view.adapt_to_site(profile)

    def estimate_site_profile(self, images: Sequence[np.ndarray], metadata: Sequence[Metadata | None] | None = None,
                              name: str = "site") -> SiteProfile:
        """A profile for these images (at least MIN_SITE_IMAGES of one site), estimated on the card's own members
        and views; the predictor itself is left as it was."""
        return self.estimate_site_profile_from(in_batches(images, metadata), name)

    def estimate_site_profile_from(self, batches: Iterable[SiteBatch], name: str = "site") -> SiteProfile:
        """The same, from batches read as they come (a large archive never held in memory at once)."""
        if self.site_profile is not None:
            raise SiteProfileError("estimate a site profile with the plain model, not one already adapted")
        # On copies: learning puts the batch-norm layers in training mode, and reading the batches (decoding every
        # file) takes minutes, during which the shared members keep serving other users.
        return estimate_profile(self._private_members(), self.card, batches, name, len(self.views),
                                device=self.device)

    @property
    def temperature(self) -> float:
        return self.postprocessing.temperature

    def predict(self, images: Sequence[np.ndarray], metadata: Sequence[Metadata | None] | None = None) -> list[Prediction]:
        """images: RGB uint8 arrays of any size; metadata: one entry per image, None where nothing is known."""
        known = self._known(images, metadata)
        results: list[Prediction] = []
        with MODEL_USE:
            for start in range(0, len(images), self.batch_size):
                results += self._predict_chunk(images[start:start + self.batch_size], known[start:start + self.batch_size])
        return results

    def infer(self, images: Sequence[np.ndarray], metadata: Sequence[Metadata | None] | None = None) -> list[RawOutputs]:
        """The members' raw outputs, for a caller that post-processes them itself (`evaluate`, with what it fits)."""
        known = self._known(images, metadata)
        results: list[RawOutputs] = []
        with MODEL_USE:
            for start in range(0, len(images), self.batch_size):
                chunk, meta = images[start:start + self.batch_size], known[start:start + self.batch_size]
                results += self._run_members(chunk, self._codes(meta)).per_image([im.shape[:2] for im in chunk], meta)
        return results

    @staticmethod
    def _known(images: Sequence[np.ndarray], metadata: Sequence[Metadata | None] | None) -> list[Metadata]:
        given = list(metadata) if metadata is not None else [None] * len(images)
        if len(given) != len(images):
            raise ValueError(f"{len(images)} images but {len(given)} metadata entries")
        return [m or Metadata() for m in given]

    def _codes(self, metadata: Sequence[Metadata]) -> torch.Tensor:
        return torch.tensor(np.asarray([encode_metadata(m) for m in metadata], np.float32), device=self.device)

    @torch.no_grad()
    def _run_members(self, images: Sequence[np.ndarray], codes: torch.Tensor) -> _ChunkOutputs:
        n, n_views = len(images), len(self.views)
        x = model_input(self.preprocessing, list(images)).to(self.device)
        batch = torch.cat([view.forward(x) for view in self.views]).contiguous(memory_format=torch.channels_last)
        probabilities, attention, location, embeddings, pooled, identity = [], [], [], [], [], []
        structure_logits, structure_grids = [], []
        for m, net in enumerate(self.models):
            features = net.encode(batch)
            out = net.head(features, codes.repeat(n_views, 1))
            if self.structure_heads is not None:
                logits, grids = self._structures(self.structure_heads[m], features, out.mask_logits, n)
                structure_logits.append(logits)
                structure_grids.append(grids)
            probabilities.append(out.logits.float().softmax(1).view(n_views, n, -1))
            attention.append(undo_views(self.views, torch.sigmoid(out.mask_logits), n)[:, :, 0])
            location.append(undo_views(self.views, out.location_logits, n))
            embeddings.append(out.embedding.float().view(n_views, n, -1).mean(0))
            pooled.append(features[-1].float().mean(dim=(2, 3)).view(n_views, n, -1).mean(0))
            identity.append([f[:n] for f in features])
        return _ChunkOutputs(
            per_view=torch.stack(probabilities), attention=torch.stack(attention), location=torch.stack(location),
            embedding=torch.nn.functional.normalize(torch.cat(embeddings, dim=1), dim=1),
            image_features=torch.cat(pooled, dim=1).cpu().numpy(), identity_features=identity,
            structure_logits=torch.stack(structure_logits).mean(0).cpu() if structure_logits else None,
            structure_grids=torch.stack(structure_grids).mean(0).cpu() if structure_grids else None,
        )

    def _structures(self, head: LinearStructureHead, features: list[torch.Tensor], mask_logits: torch.Tensor,
                    n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One member's structure logits (n, S), pooled over the lesion, and per location (n, S, h, w), both
        averaged over the views (the maps mapped back onto the identity view first)."""
        grid = structure_features(features)
        location = head.location_logits(grid)
        logits = pooled_over_lesion(location, lesion_weights(mask_logits, grid.shape[-2:])).view(len(self.views), n, -1).mean(0)
        return logits, undo_views(self.views, location, n).mean(0)

    def _predict_chunk(self, images: Sequence[np.ndarray], metadata: list[Metadata]) -> list[Prediction]:
        codes = self._codes(metadata)
        outputs = self._run_members(images, codes)
        raws = outputs.per_image([im.shape[:2] for im in images], metadata)
        cams: list[np.ndarray | None] = [None] * len(raws)
        if self.gradcam:
            calls = [self.postprocessing.call_of(raw) for raw in raws]
            cams = list(np.mean([gradcam_maps(net, feats, codes, calls)
                                 for net, feats in zip(self.models, outputs.identity_features, strict=True)], axis=0))
        return [self.postprocessing.finish(raw, self.model_version, cam) for raw, cam in zip(raws, cams, strict=True)]

    def explain_class(self, image: np.ndarray, class_name: str, metadata: Metadata | None = None,
                      against: str | None = None) -> np.ndarray:
        """Grad-CAM for any class the clinician picks, at image resolution, averaged over members; with `against`,
        what separates `class_name` from that other class (Grad-CAM of the difference of their logits)."""
        k = CLASSES.index(class_name)
        versus = None if against is None else [CLASSES.index(against)]
        x = model_input(self.preprocessing, [image]).to(self.device)
        codes = self._codes([metadata or Metadata()])
        with MODEL_USE:
            with torch.no_grad():
                features = [net.encode(x) for net in self.models]
            cam = np.mean([gradcam_maps(net, f, codes, [k], versus)[0]
                           for net, f in zip(self.models, features, strict=True)], axis=0)
        return resize_map(cam, *image.shape[:2]).clip(0, 1)
