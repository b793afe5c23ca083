"""`Predictor`: the trained ensemble applied to images with (possibly missing) metadata.

Each image is analysed in four test-time views (identity, horizontal flip, vertical flip, transpose) run as
one batch; probabilities are averaged over views and ensemble members, maps are mapped back to the
identity view before averaging. Grad-CAM reuses the identity view's encoder features.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from skinapp.calibration import apply_temperature
from skinapp.explain import LesionOutline, gradcam_maps, lesion_outline, resize_map
from skinapp.model.checkpoint import ModelCard, load_ensemble
from skinapp.model.network import LesionNet
from skinapp.model.preprocess import resize_for_model, to_tensor
from skinapp.vocab import CLASSES, MALIGNANT_INDICES, Metadata, encode_metadata

View = Callable[[torch.Tensor], torch.Tensor]
VIEWS: dict[str, View] = {
    "identity": lambda x: x,
    "hflip": lambda x: x.flip(-1),
    "vflip": lambda x: x.flip(-2),
    "transpose": lambda x: x.transpose(-1, -2),
}  # each view is its own inverse


@dataclass
class Prediction:
    """Everything the model says about one image. Maps are kept on the model's grid and scaled on demand."""

    probabilities: np.ndarray          # (K,) in CLASSES order, averaged over views and members, calibrated
    view_probabilities: np.ndarray     # (members × views, K), each calibrated the same way
    embedding: np.ndarray              # (D,) L2-normalised
    attention_grid: np.ndarray         # (h, w) σ(M) in [0, 1]
    refined_grid: np.ndarray           # (h, w) σ(M)·C for the predicted class, in logit units
    gradcam_grid: np.ndarray | None    # (h', w') in [0, 1] for the predicted class
    outline: LesionOutline             # binary lesion mask, contour and bounding box at image resolution
    image_size: tuple[int, int]        # (height, width) of the analysed image
    model_version: str
    metadata_used: Metadata = field(default_factory=Metadata)
    temperature: float = 1.0           # the calibration applied (1.0: none)
    image_features: np.ndarray | None = None  # (C,) pooled top encoder features: what the out-of-distribution check reads

    @property
    def predicted_index(self) -> int:
        return int(np.argmax(self.probabilities))

    @property
    def predicted_class(self) -> str:
        return CLASSES[self.predicted_index]

    @property
    def malignancy(self) -> float:
        """P(MEL) + P(BCC) + P(AKIEC)."""
        return float(self.probabilities[list(MALIGNANT_INDICES)].sum())

    def class_probabilities(self) -> dict[str, float]:
        return {c: float(p) for c, p in zip(CLASSES, self.probabilities)}

    def attention_map(self) -> np.ndarray:
        return resize_map(self.attention_grid, *self.image_size)

    def refined_mask(self) -> np.ndarray:
        return resize_map(self.refined_grid, *self.image_size)

    def gradcam(self) -> np.ndarray | None:
        return None if self.gradcam_grid is None else resize_map(self.gradcam_grid, *self.image_size).clip(0, 1)


def _undo_views(views: list[View], stacked: torch.Tensor, n: int) -> torch.Tensor:
    """(views·n, C, h, w) → (views, n, C, h, w), each view mapped back onto the identity view."""
    parts = stacked.float().view(len(views), n, *stacked.shape[1:])
    return torch.stack([view(part) for view, part in zip(views, parts)])


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Predictor:
    """Loads the weights once; call `predict` as often as needed."""

    def __init__(self, models: Sequence[LesionNet], card: ModelCard, device: torch.device | None = None,
                 tta: bool = True, gradcam: bool = True, batch_size: int = 16, calibrate: bool = True):
        self.device = device or default_device()
        self.models = [m.to(self.device, memory_format=torch.channels_last).eval().requires_grad_(False) for m in models]
        self.card = card
        self.image_size = card.model_config.image_size
        self.views = list(VIEWS.values()) if tta else [VIEWS["identity"]]
        self.gradcam = gradcam
        self.batch_size = batch_size
        self.temperature = card.temperature if calibrate else 1.0  # fitted on out-of-fold data by `evaluate`
        self.folder: Path | None = None  # the weights folder, where the flag policy's index lives

    @classmethod
    def from_weights(cls, folder: str | Path, **kwargs) -> "Predictor":
        device = kwargs.pop("device", None) or default_device()
        models, card = load_ensemble(Path(folder), device)
        predictor = cls(models, card, device=device, **kwargs)
        predictor.folder = Path(folder)
        return predictor

    @property
    def model_version(self) -> str:
        return self.card.version

    def predict(self, images: Sequence[np.ndarray], metadata: Sequence[Metadata | None] | None = None) -> list[Prediction]:
        """images: RGB uint8 arrays of any size; metadata: one entry per image, None where nothing is known."""
        metadata = list(metadata) if metadata is not None else [None] * len(images)
        if len(metadata) != len(images):
            raise ValueError(f"{len(images)} images but {len(metadata)} metadata entries")
        metadata = [m or Metadata() for m in metadata]
        results: list[Prediction] = []
        for start in range(0, len(images), self.batch_size):
            results += self._predict_chunk(images[start:start + self.batch_size], metadata[start:start + self.batch_size])
        return results

    def _predict_chunk(self, images: Sequence[np.ndarray], metadata: list[Metadata]) -> list[Prediction]:
        n, n_views = len(images), len(self.views)
        x = to_tensor(np.stack([resize_for_model(im, self.image_size) for im in images])).to(self.device)
        batch = torch.cat([view(x) for view in self.views]).contiguous(memory_format=torch.channels_last)
        codes = torch.tensor(np.asarray([encode_metadata(m) for m in metadata], np.float32), device=self.device)
        probabilities, attention, location, embeddings, identity_features, pooled = [], [], [], [], [], []
        with torch.no_grad():
            for net in self.models:
                features = net.encode(batch)
                out = net.head(features, codes.repeat(n_views, 1))
                probabilities.append(out.logits.float().softmax(1).view(n_views, n, -1))
                attention.append(_undo_views(self.views, torch.sigmoid(out.mask_logits), n)[:, :, 0])
                location.append(_undo_views(self.views, out.location_logits, n))
                embeddings.append(out.embedding.float().view(n_views, n, -1).mean(0))
                pooled.append(features[-1].float().mean(dim=(2, 3)).view(n_views, n, -1).mean(0))
                identity_features.append([f[:n] for f in features])
        per_view = torch.stack(probabilities)                       # (members, views, n, K)
        mean_probabilities = per_view.mean(dim=(0, 1))              # (n, K)
        predicted = mean_probabilities.argmax(1)                    # temperature scaling keeps the argmax
        calibrated = apply_temperature(mean_probabilities.cpu().numpy(), self.temperature)
        calibrated_views = apply_temperature(per_view.cpu().numpy(), self.temperature)
        attention_maps = torch.stack(attention)                     # (members, views, n, h, w)
        sigma = attention_maps.mean(dim=(0, 1))                     # (n, h, w)
        refined = (attention_maps[:, :, :, None] * torch.stack(location)).mean(dim=(0, 1))  # (n, K, h, w)
        embedding = torch.nn.functional.normalize(torch.cat(embeddings, dim=1), dim=1)
        image_features = torch.cat(pooled, dim=1).cpu().numpy()
        cams = None
        if self.gradcam:
            cams = np.mean([gradcam_maps(net, feats, codes, predicted.tolist()) for net, feats in zip(self.models, identity_features)], axis=0)
        results = []
        for i, image in enumerate(images):
            height, width = image.shape[:2]
            attention_grid = sigma[i].cpu().numpy()
            results.append(Prediction(
                probabilities=calibrated[i],
                view_probabilities=calibrated_views[:, :, i].reshape(-1, per_view.shape[-1]),
                embedding=embedding[i].cpu().numpy(),
                attention_grid=attention_grid,
                refined_grid=refined[i, predicted[i]].cpu().numpy(),
                gradcam_grid=None if cams is None else cams[i],
                outline=lesion_outline(attention_grid, height, width),
                image_size=(height, width),
                model_version=self.model_version,
                metadata_used=metadata[i],
                temperature=self.temperature,
                image_features=image_features[i],
            ))
        return results

    def explain_class(self, image: np.ndarray, class_name: str, metadata: Metadata | None = None) -> np.ndarray:
        """Grad-CAM for any class the clinician picks, at image resolution, averaged over members."""
        k = CLASSES.index(class_name)
        x = to_tensor(resize_for_model(image, self.image_size)[None]).to(self.device)
        codes = torch.tensor([encode_metadata(metadata or Metadata())], dtype=torch.float32, device=self.device)
        with torch.no_grad():
            features = [net.encode(x) for net in self.models]
        cam = np.mean([gradcam_maps(net, f, codes, [k])[0] for net, f in zip(self.models, features)], axis=0)
        return resize_map(cam, *image.shape[:2]).clip(0, 1)
