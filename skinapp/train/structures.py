"""Fitting and measuring the structure heads (`skinapp.model.structures`) on the weak image-level labels of
`isic2017/structures_isic2016_weak.csv` (DermaKNet; 0 absent, 1 local, 2 the global pattern; present = 1 or 2).

1. Each member's attention-pooled structure features are read once per image and test-time view (frozen members).
2. Cross-validation (5 folds, several seeds of the split): in each fold every member's head is a class-balanced
   logistic regression on the training images' views; a held-out image's logit is the mean over views and members.
   No setting is chosen on the data (the regularisation is fixed beforehand), so the held-out AUC is not tuned.
3. The baseline: the same regression on each member's plain average of its top features (no lesion weighting, no
   finer grid), the "pooled features" a structure head has to beat.
4. Calibration: Platt scaling of the held-out ensemble logit, its effect measured cross-fitted.
5. The shipped heads are refitted on all labelled images.

The members were trained (for the diagnosis) on these ISIC 2017 `train` images, never on their structure labels: the
head is measured on images whose features the members know, which may flatter it against unseen clinics; the card
says so."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import KFold

from skinapp.inference.views import views_for
from skinapp.model.batch import model_input
from skinapp.model.card import ModelCard
from skinapp.model.network import LesionNet
from skinapp.model.structures import LinearStructureHead, lesion_weights, pooled, structure_features
from skinapp.vocab import STRUCTURES

LABELS_FILE = "structures_isic2016_weak.csv"
LABEL_COLUMNS = {"pigment_network": "reticular", "dots_globules": "globular", "streaks": "streaks",
                 "blue_white_veil": "blue_white_veil", "regression": "regression", "vascular": "vascular"}
REGULARISATION = 0.05   # inverse L2 strength on standardised features, fixed beforehand (never chosen on the labels)
MIN_AUC_SHOWN = 0.70    # a structure measured below this is not shown to clinicians
BOOTSTRAP = 2000


GLOBAL_PATTERNS = ("reticular", "globular", "homogeneous", "unspecific")  # the columns whose value 2 names it


@dataclass(frozen=True)
class StructureLabels:
    image_ids: list[str]
    present: np.ndarray     # (N, S) bool, in STRUCTURES order
    global_pattern: np.ndarray | None = None  # (N,) index into GLOBAL_PATTERNS; -1: none marked, or several

    @property
    def positives(self) -> dict[str, int]:
        return {s: int(self.present[:, k].sum()) for k, s in enumerate(STRUCTURES)}

    def held_out(self, seed: int, fold: int, folds: int = 5) -> np.ndarray:
        """Positions of the images in `fold` of a shuffled `folds`-fold split drawn with `seed`."""
        return list(KFold(folds, shuffle=True, random_state=seed).split(self.present))[fold][1]


def read_structure_labels(isic2017: Path) -> StructureLabels:
    path = Path(isic2017) / LABELS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the structure labels come with the shared ISIC 2017 data")
    table = pd.read_csv(path)
    missing = [c for c in ["image_id", *LABEL_COLUMNS.values()] if c not in table.columns]
    if missing:
        raise ValueError(f"{path} lacks the columns {missing}")
    present = np.stack([table[LABEL_COLUMNS[s]].to_numpy() >= 1 for s in STRUCTURES], axis=1)
    marked = np.stack([table[p].to_numpy() == 2 if p in table.columns else np.zeros(len(table), bool)
                       for p in GLOBAL_PATTERNS], axis=1)
    pattern = np.where(marked.sum(axis=1) == 1, marked.argmax(axis=1), -1).astype(np.int64)
    return StructureLabels(table["image_id"].astype(str).tolist(), present, pattern)


@dataclass(frozen=True)
class MemberFeatures:
    """Per member, image and view: the lesion-weighted structure features and the baseline's plain top average."""

    weighted: np.ndarray    # (M, N, V, C)
    plain: np.ndarray       # (M, N, V, C_top)


@torch.no_grad()
def read_features(models: Sequence[LesionNet], card: ModelCard, images: Sequence[np.ndarray], codes: np.ndarray,
                  batch_size: int = 16) -> MemberFeatures:
    views = views_for(card.tta_views)
    weighted: list[list[np.ndarray]] = [[] for _ in models]
    plain: list[list[np.ndarray]] = [[] for _ in models]
    for start in range(0, len(images), batch_size):
        chunk = list(images[start:start + batch_size])
        n = len(chunk)
        x = model_input(card.preprocessing, chunk)
        batch = torch.cat([view.forward(x) for view in views])
        meta = torch.as_tensor(codes[start:start + n], dtype=torch.float32).repeat(len(views), 1)
        for m, net in enumerate(models):
            features = net.encode(batch)
            out = net.head(features, meta)
            grid = structure_features(features)
            pooled_features = pooled(grid, lesion_weights(out.mask_logits, grid.shape[-2:]))
            weighted[m].append(pooled_features.view(len(views), n, -1).permute(1, 0, 2).numpy())
            plain[m].append(features[-1].float().mean(dim=(2, 3)).view(len(views), n, -1).permute(1, 0, 2).numpy())
    return MemberFeatures(np.stack([np.concatenate(w) for w in weighted]),
                          np.stack([np.concatenate(p) for p in plain]))


def fit_head(features: np.ndarray, present: np.ndarray) -> LinearStructureHead:
    """One member's head from (N, V, C) features and (N, S) labels: every view is a training sample."""
    n, v, c = features.shape
    x = features.reshape(n * v, c)
    mean, scale = x.mean(0), x.std(0) + 1e-6
    z = (x - mean) / scale
    weight, bias = np.zeros((len(STRUCTURES), c)), np.zeros(len(STRUCTURES))
    for k in range(len(STRUCTURES)):
        y = np.repeat(present[:, k], v)
        model = LogisticRegression(C=REGULARISATION, class_weight="balanced", max_iter=2000).fit(z, y)
        weight[k], bias[k] = model.coef_[0], model.intercept_[0]
    return LinearStructureHead(mean.astype(np.float32), scale.astype(np.float32), weight.astype(np.float32),
                               bias.astype(np.float32))


def ensemble_logits(heads: Sequence[LinearStructureHead], features: np.ndarray) -> np.ndarray:
    """(M, N, V, C) → (N, S): each member's head on its own features, averaged over views and members."""
    return np.mean([head.pooled_logits(f).mean(axis=1) for head, f in zip(heads, features, strict=True)], axis=0)


def cross_validated_logits(features: np.ndarray, present: np.ndarray, seed: int, folds: int = 5) -> np.ndarray:
    """(N, S) held-out ensemble logits: each image scored by heads fitted without it."""
    held_out = np.zeros(present.shape)
    for train, test in KFold(folds, shuffle=True, random_state=seed).split(present):
        heads = [fit_head(member[train], present[train]) for member in features]
        held_out[test] = ensemble_logits(heads, features[:, test])
    return held_out


def _auc(scores: np.ndarray, truth: np.ndarray) -> float:
    """The AUC as the Mann–Whitney statistic (ties count half): fast enough for thousands of resamples."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    positives = truth.sum()
    negatives = len(truth) - positives
    return float((ranks[truth].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def auc_interval(scores: np.ndarray, truth: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """A 95 % bootstrap interval of the AUC over images."""
    rng = np.random.default_rng(seed)
    truth = np.asarray(truth, bool)
    values = []
    for _ in range(BOOTSTRAP):
        pick = rng.integers(0, len(truth), len(truth))
        if truth[pick].any() and not truth[pick].all():
            values.append(_auc(scores[pick], truth[pick]))
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def fit_platt(logits: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(a, b): probability = σ(a · logit + b), fitted by maximum likelihood."""
    model = LogisticRegression(C=1e6, max_iter=2000).fit(logits[:, None], truth)
    return float(model.coef_[0, 0]), float(model.intercept_[0])


def platt(logits: np.ndarray, a: float, b: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(a * logits + b)))


def calibration_error(probabilities: np.ndarray, truth: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error of a yes/no probability over equal-width bins."""
    edges = np.linspace(0, 1, bins + 1)
    index = np.clip(np.digitize(probabilities, edges[1:-1]), 0, bins - 1)
    return float(sum(abs(probabilities[index == b].mean() - truth[index == b].mean()) * (index == b).mean()
                     for b in range(bins) if (index == b).any()))


def cross_fitted_platt(logits: np.ndarray, truth: np.ndarray, seed: int = 0) -> np.ndarray:
    """Probabilities from Platt fits that never saw the image (the calibration's own held-out effect)."""
    out = np.zeros(len(truth))
    for train, test in KFold(5, shuffle=True, random_state=seed).split(logits):
        out[test] = platt(logits[test], *fit_platt(logits[train], truth[train]))
    return out


@dataclass(frozen=True)
class StructureMeasure:
    structure: str
    positives: int
    auc: float                  # held-out, mean over seeds
    auc_low: float              # 95 % bootstrap interval (seed-averaged logits)
    auc_high: float
    auc_by_seed: tuple[float, ...]
    baseline_auc: float         # the plain pooled-feature baseline, mean over seeds
    baseline_low: float
    baseline_high: float
    calibration: tuple[float, float]   # Platt (a, b) on the seed-averaged held-out logits
    ece_before: float           # σ(logit) of the class-balanced head: not a probability yet
    ece_after: float            # cross-fitted Platt
    reliability: tuple[tuple[float, float, int], ...]  # (mean probability, observed share, images) per bin

    @property
    def shown(self) -> bool:
        return self.auc >= MIN_AUC_SHOWN


def _reliability(probabilities: np.ndarray, truth: np.ndarray, bins: int = 10) -> tuple[tuple[float, float, int], ...]:
    edges = np.linspace(0, 1, bins + 1)
    index = np.clip(np.digitize(probabilities, edges[1:-1]), 0, bins - 1)
    return tuple((float(probabilities[index == b].mean()), float(truth[index == b].mean()), int((index == b).sum()))
                 for b in range(bins) if (index == b).any())


def measure(features: MemberFeatures, labels: StructureLabels, seeds: Sequence[int], folds: int = 5) -> list[StructureMeasure]:
    head = np.stack([cross_validated_logits(features.weighted, labels.present, s, folds) for s in seeds])
    base = np.stack([cross_validated_logits(features.plain, labels.present, s, folds) for s in seeds])
    measures = []
    for k, name in enumerate(STRUCTURES):
        truth = labels.present[:, k]
        logits, baseline = head[:, :, k].mean(0), base[:, :, k].mean(0)
        a, b = fit_platt(logits, truth)
        after = cross_fitted_platt(logits, truth)
        measures.append(StructureMeasure(
            name, int(truth.sum()), float(np.mean([roc_auc_score(truth, h[:, k]) for h in head])),
            *auc_interval(logits, truth), tuple(float(roc_auc_score(truth, h[:, k])) for h in head),
            float(np.mean([roc_auc_score(truth, h[:, k]) for h in base])), *auc_interval(baseline, truth),
            (a, b), calibration_error(platt(logits, 1.0, 0.0), truth), calibration_error(after, truth),
            _reliability(after, truth)))
    return measures


def labelled_images(isic2017: Path, labels: StructureLabels, card: ModelCard):
    """The labelled ISIC 2017 `train` images, in the labels' order, decoded as the members read them."""
    from skinapp.train.data import load_isic2017

    data = load_isic2017(isic2017, "train")
    position = {image_id: k for k, image_id in enumerate(data.image_ids)}
    absent = [i for i in labels.image_ids if i not in position]
    if absent:
        raise ValueError(f"{len(absent)} labelled images are not ISIC 2017 `train` images (first: {absent[0]})")
    order = [position[i] for i in labels.image_ids]
    return [data.images[k] for k in order], data.metadata_codes[order]


def features_for(weights: Path, isic2017: Path, cache: Path | None = None) -> tuple[MemberFeatures, StructureLabels]:
    """Every member's features of every labelled image (read once; `cache`: an .npz to reuse between runs)."""
    from skinapp.model.checkpoint import load_ensemble

    labels = read_structure_labels(isic2017)
    if cache is not None and cache.is_file():
        stored = np.load(cache)
        return MemberFeatures(stored["weighted"], stored["plain"]), labels
    models, card = load_ensemble(Path(weights))
    images, codes = labelled_images(isic2017, labels, card)
    features = read_features(models, card, images, codes)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, weighted=features.weighted, plain=features.plain)
    return features, labels


def section_of(measures: Sequence[StructureMeasure], file: str, sha256: str, images: int, folds: int, seeds: int):
    from skinapp.model.structure_card import StructureFigures, StructureSection

    figures = tuple(StructureFigures(m.structure, m.calibration, m.auc, m.auc_low, m.auc_high, m.baseline_auc,
                                     m.positives, m.ece_after, m.shown) for m in measures)
    extra = {"baseline_interval": {m.structure: [m.baseline_low, m.baseline_high] for m in measures},
             "auc_by_seed": {m.structure: list(m.auc_by_seed) for m in measures},
             "ece_before_platt": {m.structure: m.ece_before for m in measures},
             "reliability": {m.structure: [list(r) for r in m.reliability] for m in measures},
             "regularisation": REGULARISATION}
    return StructureSection(file, sha256, figures, images, folds, seeds, MIN_AUC_SHOWN,
                            "ISIC 2017 `train`, weak image-level labels of DermaKNet (González-Díaz 2019, BSD-2-Clause)",
                            extra)
