"""`python -m skinapp train`: fine-tune the multi-task network on HAM10000, one model per held-out fold."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from timm.utils import ModelEmaV3
from tqdm import tqdm

from skinapp import __version__
from skinapp.metrics import balanced_accuracy, jaccard, malignant_auc
from skinapp.model.checkpoint import Member, ModelCard, save_weights
from skinapp.model.network import LesionNet, ModelConfig
from skinapp.model.preprocess import resize_for_model, to_tensor
from skinapp.train.augment import AugmentConfig, augment
from skinapp.train.data import LabelledImages, load_ham10000, make_folds
from skinapp.train.losses import batch_hard_triplet_loss, focal_loss, mask_loss
from skinapp.vocab import Metadata, Site, encode_metadata


@dataclass
class TrainConfig:
    data: Path
    out: Path
    encoder: str = "lite0"
    image_size: int = 160
    epochs: int = 10
    batch_size: int = 32
    lr: float = 8e-4
    weight_decay: float = 1e-2
    warmup_steps: int = 200
    n_folds: int = 5
    folds: tuple[int, ...] = (0,)
    seed: int = 0
    focal_gamma: float = 2.0
    sampler_power: float = 0.5   # class sampling weight ∝ count^-power: 0 = natural, 1 = balanced
    mask_weight: float = 1.0     # 0 = the attention mask learns without supervision
    triplet_weight: float = 0.1
    metadata_dropout: float = 0.3
    ema_decay: float = 0.998
    patience: int = 3
    clahe: float = 0.0
    limit: int | None = None
    steps_per_epoch: int | None = None
    threads: int | None = None


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


def _batches(indices: np.ndarray, data: LabelledImages, cfg: TrainConfig, rng: np.random.Generator, aug: AugmentConfig):
    for start in range(0, len(indices) - cfg.batch_size + 1, cfg.batch_size):
        chosen = indices[start:start + cfg.batch_size]
        views = [augment(data.images[i], data.masks[i] if data.masks is not None else None, cfg.image_size, rng, aug) for i in chosen]
        images = to_tensor(np.stack([v[0] for v in views]))
        masks = torch.from_numpy(np.stack([v[1] for v in views]))[:, None] if data.masks is not None else None
        metadata = torch.tensor(np.asarray([encode_metadata(drop_metadata(data.metadata[i], rng, cfg.metadata_dropout)) for i in chosen], np.float32))
        yield images, masks, metadata, torch.from_numpy(data.labels[chosen])


def _sample_epoch(labels: np.ndarray, rng: np.random.Generator, power: float, n: int) -> np.ndarray:
    counts = np.bincount(labels, minlength=labels.max() + 1).astype(float)
    weights = counts[labels] ** -power
    return rng.choice(len(labels), size=n, replace=power > 0, p=weights / weights.sum())


@torch.no_grad()
def validate(model: torch.nn.Module, data: LabelledImages, indices: np.ndarray, image_size: int, device: torch.device) -> dict:
    model.eval()
    probabilities, jaccards = [], []
    for start in range(0, len(indices), 64):
        chosen = indices[start:start + 64]
        images = to_tensor(np.stack([resize_for_model(data.images[i], image_size) for i in chosen])).to(device)
        metadata = torch.from_numpy(data.metadata_codes[chosen]).to(device)
        out = model(images, metadata)
        probabilities.append(out.logits.float().softmax(1).cpu().numpy())
        if data.masks is not None:
            masks = F.interpolate(out.mask_logits.float(), size=data.masks.shape[1:], mode="bilinear", align_corners=False)
            for predicted, i in zip((masks[:, 0] > 0).cpu().numpy(), chosen):
                jaccards.append(jaccard(predicted, data.masks[i]))
    p = np.concatenate(probabilities)
    labels = data.labels[indices]
    return {
        "balanced_accuracy": balanced_accuracy(labels, p),
        "malignant_auc": malignant_auc(labels, p),
        "mask_jaccard": float(np.mean(jaccards)) if jaccards else float("nan"),
    }


def _lr_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def train_fold(cfg: TrainConfig, data: LabelledImages, folds: np.ndarray, fold: int, device: torch.device) -> Member:
    rng = np.random.default_rng(cfg.seed + fold)
    torch.manual_seed(cfg.seed + fold)
    train_index, val_index = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
    model = LesionNet(ModelConfig(encoder=cfg.encoder, image_size=cfg.image_size)).to(device).to(memory_format=torch.channels_last)
    ema = ModelEmaV3(model, decay=cfg.ema_decay, use_warmup=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = cfg.steps_per_epoch or len(train_index) // cfg.batch_size
    total_steps = steps_per_epoch * cfg.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, total_steps, cfg.warmup_steps))
    aug = AugmentConfig(clahe_p=cfg.clahe)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    weights_path = cfg.out / f"fold{fold}.safetensors"
    log_path = cfg.out / f"history_fold{fold}.jsonl"
    log_path.unlink(missing_ok=True)
    best, best_epoch, sha = -1.0, -1, ""
    step = 0
    for epoch in range(cfg.epochs):
        model.train()
        started = time.time()
        order = train_index[_sample_epoch(data.labels[train_index], rng, cfg.sampler_power, steps_per_epoch * cfg.batch_size)]
        totals: dict[str, float] = {"loss": 0.0, "class": 0.0, "mask": 0.0, "triplet": 0.0}
        bar = tqdm(_batches(order, data, cfg, rng, aug), total=steps_per_epoch, desc=f"fold {fold} epoch {epoch + 1}/{cfg.epochs}", leave=False)
        for images, masks, metadata, labels in bar:
            images, metadata, labels = images.to(device), metadata.to(device), labels.to(device)
            with autocast:
                out = model(images, metadata)
            parts = {"class": focal_loss(out.logits, labels, cfg.focal_gamma)}
            if cfg.mask_weight and masks is not None:
                parts["mask"] = cfg.mask_weight * mask_loss(out.mask_logits, masks.to(device))
            if cfg.triplet_weight:
                parts["triplet"] = cfg.triplet_weight * batch_hard_triplet_loss(out.embedding, labels)
            loss = sum(parts.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            ema.update(model, step=step)
            step += 1
            totals["loss"] += loss.item()
            for name, value in parts.items():
                totals[name] += value.item()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        metrics = validate(ema.module, data, val_index, cfg.image_size, device)
        record = {
            "fold": fold, "epoch": epoch + 1, "seconds": round(time.time() - started, 1),
            "lr": scheduler.get_last_lr()[0], **{f"train_{k}": v / steps_per_epoch for k, v in totals.items()},
            **{f"val_{k}": v for k, v in metrics.items()},
        }
        with open(log_path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)
        if metrics["balanced_accuracy"] > best:
            best, best_epoch = metrics["balanced_accuracy"], epoch + 1
            sha = save_weights(ema.module, weights_path)
        elif epoch + 1 - best_epoch >= cfg.patience:
            print(f"fold {fold}: no improvement for {cfg.patience} epochs, stopping early", flush=True)
            break
    return Member(file=weights_path.name, sha256=sha, validation_fold=fold, best_epoch=best_epoch)


def train(cfg: TrainConfig) -> ModelCard:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg.out.mkdir(parents=True, exist_ok=True)
    print(f"loading {cfg.data} …", flush=True)
    data = load_ham10000(cfg.data, limit=cfg.limit)
    folds = make_folds(data.labels, data.lesion_ids, cfg.n_folds, cfg.seed)
    pd.DataFrame({"image_id": data.image_ids, "lesion_id": data.lesion_ids, "fold": folds}).to_csv(cfg.out / "folds.csv", index=False)
    members = [train_fold(cfg, data, folds, fold, device) for fold in cfg.folds]
    training = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(cfg).items()}
    training.update(device=str(device), n_images=len(data), dataset="HAM10000 (ISIC 2018 task 3 training set), CC BY-NC-SA 4.0")
    card = ModelCard(
        version=f"{__version__}+{cfg.encoder}-{cfg.image_size}px-{len(members)}fold",
        config=dataclasses.asdict(ModelConfig(encoder=cfg.encoder, image_size=cfg.image_size)),
        members=members,
        training=training,
    )
    card.save(cfg.out)
    return card
