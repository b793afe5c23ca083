"""`python -m skinapp train`: fine-tune the multi-task network, one ensemble member per held-out HAM10000 fold.

Each member trains on the HAM10000 images outside its fold plus, when given, the ISIC 2017 `train` split
(other centres and dermatoscopes) and the SIIM-ISIC 2020 patients outside its fold (a screening population; its
unbiopsied benign lesions carry the partial label "benign"). The ISIC 2017 `val` split is never read here: it is
the external check.
Training resumes: members already in the output folder are kept, and a member interrupted mid-way continues
from its last finished epoch.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from timm.utils import ModelEmaV3
from tqdm import tqdm

from skinapp import __version__
from skinapp.metrics import balanced_accuracy, is_malignant, jaccard, malignant_auc
from skinapp.model.architecture import ModelConfig
from skinapp.model.batch import model_input
from skinapp.model.card import CARD_FILE, Member, ModelCard
from skinapp.model.checkpoint import load_member, save_weights
from skinapp.model.network import LesionNet
from skinapp.model.preprocess import ANTIALIASED_RESIZE, BICUBIC_RESIZE, Preprocessing
from skinapp.train.augment import AugmentConfig
from skinapp.train.config import TrainConfig, jsonable, members_digest
from skinapp.train.data import (
    BENIGN_INDICES,
    BENIGN_UNSPECIFIED,
    FOLDS_FILE,
    HAM_SOURCE,
    LabelledImages,
    fully_labelled,
    load_ham10000,
    load_isic2017,
    load_siim2020,
    make_folds,
    read_folds,
)
from skinapp.train.losses import batch_hard_triplet_loss, mask_loss, partial_label_loss
from skinapp.train.sampling import batches, sample_epoch
from skinapp.train.structure_aux import StructureAux, positive_weights
from skinapp.train.structures import read_structure_labels

ALWAYS_TRAIN = -1  # fold of the extra (non-HAM) training images: every member trains on them

@torch.no_grad()
def validate(model: torch.nn.Module, data: LabelledImages, indices: np.ndarray, image_size: int, device: torch.device,
             resize: str = BICUBIC_RESIZE) -> dict:
    """Images in `data` are already colour-corrected (done once at loading)."""
    model.eval()
    plain = Preprocessing(image_size=image_size, resize=resize)
    probabilities, jaccards = [], []
    for start in range(0, len(indices), 64):
        chosen = indices[start:start + 64]
        images = model_input(plain, [data.images[i] for i in chosen]).to(device)
        metadata = torch.from_numpy(data.metadata_codes[chosen]).to(device)
        out = model(images, metadata)
        probabilities.append(out.logits.float().softmax(1).cpu().numpy())
        for logits, i in zip(out.mask_logits.float(), chosen, strict=True):
            truth = data.masks[i] if data.masks is not None else None
            if truth is not None:
                predicted = F.interpolate(logits[None], size=truth.shape, mode="bilinear", align_corners=False)[0, 0] > 0
                jaccards.append(jaccard(predicted.cpu().numpy(), truth))
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


def _resume_path(cfg: TrainConfig, fold: int) -> Path:
    return cfg.out / f"fold{fold}.resume.pt"


def train_fold(cfg: TrainConfig, data: LabelledImages, folds: np.ndarray, fold: int, device: torch.device) -> Member:
    rng = np.random.default_rng(cfg.seed + fold)
    torch.manual_seed(cfg.seed + fold)
    train_index = np.flatnonzero(folds != fold)
    val_index = np.flatnonzero((folds == fold) & (data.sources == HAM_SOURCE))  # the training log: HAM only
    model = (LesionNet(ModelConfig(encoder=cfg.encoder, image_size=cfg.image_size)) if cfg.init_from is None
             else starting_member(cfg.init_from, fold, cfg))
    model = model.to(device).to(memory_format=torch.channels_last)
    ema = ModelEmaV3(model, decay=cfg.ema_decay, use_warmup=True)
    aux = _structure_aux(cfg, model, data, train_index)
    parameters = [*model.parameters(), *(aux.parameters() if aux is not None else [])]
    optimizer = torch.optim.AdamW(parameters, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = cfg.steps_per_epoch or len(train_index) // cfg.batch_size
    total_steps = steps_per_epoch * cfg.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, total_steps, cfg.warmup_steps))
    aug = AugmentConfig(scale=cfg.scale, aspect=cfg.aspect, illuminant=cfg.illuminant, clahe_p=cfg.clahe,
                        antialias=cfg.resize == ANTIALIASED_RESIZE, degrade_p=cfg.degrade_p)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    weights_path = cfg.out / f"fold{fold}.safetensors"
    log_path = cfg.out / f"history_fold{fold}.jsonl"
    best, best_epoch, sha, step, first_epoch = -1.0, -1, "", 0, 0
    resume = _resume_path(cfg, fold)
    if resume.is_file():
        state = torch.load(resume, map_location=device, weights_only=True)  # tensors and plain values: no pickle
        if state["recipe"] == cfg.recipe():
            model.load_state_dict(state["model"])
            ema.module.load_state_dict(state["ema"])
            if aux is not None:
                aux.load_state_dict(state["aux"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            rng.bit_generator.state = state["rng"]
            torch.set_rng_state(state["torch_rng"])
            best, best_epoch, sha = state["best"], state["best_epoch"], state["sha"]
            step, first_epoch = state["step"], state["epoch"]
            print(f"fold {fold}: resuming after epoch {first_epoch}", flush=True)
        else:
            print(f"fold {fold}: {resume.name} is from another recipe; starting afresh", flush=True)
    if first_epoch == 0:
        log_path.unlink(missing_ok=True)
    for epoch in range(first_epoch, cfg.epochs):
        model.train()
        started = time.time()
        order = sample_epoch(data, train_index, rng, cfg, steps_per_epoch * cfg.batch_size)
        totals: dict[str, float] = {"loss": 0.0, "class": 0.0, "mask": 0.0, "triplet": 0.0}
        if aux is not None:
            totals["structures"] = 0.0
        bar = tqdm(batches(order, data, cfg, rng, aug), total=steps_per_epoch, desc=f"fold {fold} epoch {epoch + 1}/{cfg.epochs}",
                   leave=False, mininterval=30)
        for batch in bar:
            images, metadata, labels = batch.images.to(device), batch.metadata.to(device), batch.labels.to(device)
            with autocast:
                features = model.encode(images)
                out = model.head(features, metadata)
            parts = {"class": partial_label_loss(out.logits, labels, cfg.focal_gamma, BENIGN_UNSPECIFIED,
                                                 BENIGN_INDICES)}
            if cfg.mask_weight:
                parts["mask"] = cfg.mask_weight * mask_loss(out.mask_logits, batch.masks.to(device),
                                                            batch.valid.to(device))
            if aux is not None and batch.structures is not None:
                pattern = batch.global_pattern.to(device) if batch.global_pattern is not None else None
                parts["structures"] = cfg.structure_weight * aux.loss(features, out.mask_logits,
                                                                      batch.structures.to(device), pattern)
            if cfg.triplet_weight:
                named = fully_labelled(labels)  # a partial label says too little to pick positives
                parts["triplet"] = cfg.triplet_weight * batch_hard_triplet_loss(out.embedding[named], labels[named])
            loss = torch.stack(list(parts.values())).sum()
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
        metrics = validate(ema.module, data, val_index, cfg.image_size, device, cfg.resize)
        record = {
            "fold": fold, "epoch": epoch + 1, "seconds": round(time.time() - started, 1),
            "lr": scheduler.get_last_lr()[0], **{f"train_{k}": v / steps_per_epoch for k, v in totals.items()},
            **{f"val_{k}": v for k, v in metrics.items()},
        }
        with open(log_path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)
        stop = False
        if cfg.select == "last":
            if epoch + 1 == cfg.epochs:
                best_epoch, sha = epoch + 1, save_weights(ema.module, weights_path, half=cfg.half)
        elif metrics["balanced_accuracy"] > best:
            best, best_epoch = metrics["balanced_accuracy"], epoch + 1
            sha = save_weights(ema.module, weights_path, half=cfg.half)
        elif epoch + 1 - best_epoch >= cfg.patience:
            print(f"fold {fold}: no improvement for {cfg.patience} epochs, stopping early", flush=True)
            stop = True
        if stop or epoch + 1 == cfg.epochs:
            break
        torch.save({
            "recipe": cfg.recipe(), "model": model.state_dict(), "ema": ema.module.state_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(), "best": best, "best_epoch": best_epoch, "sha": sha, "step": step,
            "epoch": epoch + 1, **({"aux": aux.state_dict()} if aux is not None else {}),
        }, resume)
    resume.unlink(missing_ok=True)
    return Member(file=weights_path.name, sha256=sha, validation_fold=fold, best_epoch=best_epoch, history=log_path.name)


def starting_member(folder: Path, fold: int, cfg: TrainConfig) -> LesionNet:
    """The member of `folder`'s ensemble that held out `fold`: the start of a fine-tuned member (same architecture)."""
    card = check_start(folder, cfg, (fold,))
    (member,) = [m for m in card.members if m.validation_fold == fold]
    return load_member(folder, member, card.config).train().requires_grad_(True)


def check_start(folder: Path, cfg: TrainConfig, folds: tuple[int, ...]) -> ModelCard:
    """The card of the ensemble to fine-tune, after checking that its members fit `cfg` and hold out `folds`
    (`ValueError` naming what differs)."""
    card = ModelCard.load(folder)
    if not (folder / FOLDS_FILE).is_file():
        raise ValueError(f"{folder} has no {FOLDS_FILE}: its members' held-out folds are unknown")
    missing = sorted(set(folds) - {m.validation_fold for m in card.members})
    if missing:
        raise ValueError(f"{folder} has no member that held out fold {', '.join(map(str, missing))}")
    if card.config != ModelConfig(encoder=cfg.encoder, image_size=cfg.image_size):
        raise ValueError(f"{folder} holds {card.config.encoder} members at {card.config.image_size} px; fine-tune them "
                         f"with --encoder {card.config.encoder} --image-size {card.config.image_size}")
    if card.preprocessing.colour_constancy != cfg.colour_constancy:
        raise ValueError(f"{folder}'s members learnt with colour constancy {card.preprocessing.colour_constancy!r}; "
                         f"fine-tune them with --colour-constancy {card.preprocessing.colour_constancy}")
    return card


def _structure_aux(cfg: TrainConfig, model: LesionNet, data: LabelledImages,
                   train_index: np.ndarray) -> StructureAux | None:
    if not cfg.structure_weight or data.structures is None:
        return None
    channels = model.encoder.feature_info.channels()  # type: ignore[union-attr, operator]
    positive = positive_weights(data.structures[train_index])
    return StructureAux(channels[-2] + channels[-1], positive, cfg.structure_pattern).to(next(model.parameters()).device)


def with_structure_labels(cfg: TrainConfig, data: LabelledImages) -> LabelledImages:
    """ISIC 2017 `train`'s weak structure labels attached for training, the held-out fold's withheld."""
    if cfg.isic2017 is None:
        raise ValueError("structure supervision needs --isic2017 (its structure labels and images)")
    labels = read_structure_labels(cfg.isic2017)
    keep = np.ones(len(labels.image_ids), bool)
    if cfg.structure_holdout_fold is not None:
        keep[labels.held_out(cfg.seed, cfg.structure_holdout_fold)] = False
    pattern = labels.global_pattern if labels.global_pattern is not None else np.full(len(keep), -1)
    return data.with_structure_labels([i for i, k in zip(labels.image_ids, keep, strict=True) if k],
                                      labels.present[keep].astype(np.float32), pattern[keep])


def load_training_data(cfg: TrainConfig) -> tuple[LabelledImages, np.ndarray]:
    """HAM10000 (+ ISIC 2017 train, + SIIM-ISIC 2020), colour-corrected once, and the fold of each image
    (ALWAYS_TRAIN for ISIC 2017). Class-balanced sampling treats the partial label 'benign' as a class of its own."""
    correct = cfg.preprocessing.correct_colour
    parts = [load_ham10000(cfg.data, limit=cfg.limit, transform=correct)]
    folds = [read_folds(cfg.out / FOLDS_FILE, parts[0].image_ids) if cfg.init_from is not None  # the start's, strictly
             else fold_assignment(cfg, parts[0], stratify_by=parts[0].labels)]
    if cfg.isic2017 is not None:
        parts.append(load_isic2017(cfg.isic2017, "train", limit=cfg.limit, transform=correct))
        folds.append(np.full(len(parts[-1]), ALWAYS_TRAIN))
    if cfg.siim2020 is not None:
        parts.append(load_siim2020(cfg.siim2020, limit=cfg.limit, transform=correct))
        folds.append(fold_assignment(cfg, parts[-1], stratify_by=is_malignant(parts[-1].labels)))
    data = LabelledImages.concatenate(parts)
    return (with_structure_labels(cfg, data) if cfg.structure_weight else data), np.concatenate(folds)


def fold_assignment(cfg: TrainConfig, data: LabelledImages, stratify_by: np.ndarray) -> np.ndarray:
    """The fold of each image, grouped by `data.lesion_ids`. Folds already in the output folder's `folds.csv` are
    kept (the existing members were trained with them); images it does not list get new folds, added to it."""
    path = cfg.out / FOLDS_FILE
    known = pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=["image_id", "lesion_id", "fold"])
    if set(data.image_ids) <= set(known["image_id"]):
        return read_folds(path, data.image_ids)
    folds = make_folds(stratify_by, data.lesion_ids, cfg.n_folds, cfg.seed)
    added = pd.DataFrame({"image_id": data.image_ids, "lesion_id": data.lesion_ids, "fold": folds})
    kept = known[~known["image_id"].isin(data.image_ids)]
    pd.concat([kept, added] if len(kept) else [added]).to_csv(path, index=False)
    return folds


def _keep_folds_of(start: Path, out: Path) -> None:
    """`out` gets the folds of the ensemble it fine-tunes; folds already there must agree with them."""
    theirs = pd.read_csv(start / FOLDS_FILE)
    if not (out / FOLDS_FILE).is_file():
        theirs.to_csv(out / FOLDS_FILE, index=False)
        return
    ours = pd.read_csv(out / FOLDS_FILE).set_index("image_id")["fold"]
    shared = theirs[theirs["image_id"].isin(ours.index)]
    if len(shared) < len(theirs) or (ours[shared["image_id"]].to_numpy() != shared["fold"].to_numpy()).any():
        raise ValueError(f"{out} holds other folds than {start}, whose members it would fine-tune; use a fresh --out "
                         "folder")


def _existing_card(cfg: TrainConfig) -> ModelCard | None:
    if not (cfg.out / CARD_FILE).is_file():
        return None
    card = ModelCard.load(cfg.out)
    if card.training.get("recipe") != cfg.recipe():
        raise ValueError(f"{cfg.out} holds members of another recipe ({card.version}); use a fresh --out folder "
                         "or the same options as before")
    return card


def _version(cfg: TrainConfig, n_members: int) -> str:
    extras = (("+isic2017" if cfg.with_isic2017 else "") + ("+siim2020" if cfg.with_siim2020 else "")
              + ("-sog" if cfg.colour_constancy == "shades_of_gray" else "") + ("-finetuned" if cfg.init_from else ""))
    return f"{__version__}+{cfg.encoder}-{cfg.image_size}px{extras}-{n_members}fold"


def train(cfg: TrainConfig) -> ModelCard:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg.out.mkdir(parents=True, exist_ok=True)
    if cfg.init_from is not None:  # each member holds out what its start held out
        check_start(cfg.init_from, cfg, cfg.folds)
        _keep_folds_of(cfg.init_from, cfg.out)
    card = _existing_card(cfg)
    done = {m.validation_fold: m for m in card.members} if card else {}
    todo = [f for f in cfg.folds if f not in done or not (cfg.out / done[f].file).is_file()]
    if not todo:
        print(f"every requested member is already in {cfg.out}", flush=True)
        assert card is not None
        return card
    print(f"loading {cfg.data}{' and ' + str(cfg.isic2017) if cfg.isic2017 else ''} …", flush=True)
    data, folds = load_training_data(cfg)
    for fold in todo:
        done[fold] = train_fold(cfg, data, folds, fold, device)
        card = _card(cfg, data, device, sorted(done.values(), key=lambda m: m.validation_fold))
        card.save(cfg.out)  # after each member, so a later interruption keeps it
    assert card is not None
    return card


def _card(cfg: TrainConfig, data: LabelledImages, device: torch.device, members: list[Member]) -> ModelCard:
    training = {k: jsonable(v) for k, v in dataclasses.asdict(cfg).items()}
    counts = {str(s): int((data.sources == s).sum()) for s in np.unique(data.sources)}
    datasets = ["HAM10000 (ISIC 2018 task 3 training set), CC BY-NC-SA 4.0"]
    if cfg.with_isic2017:
        datasets.append("ISIC 2017 challenge part 3, `train` split only (ISIC Archive terms, CC-0 / CC-BY-NC)")
    if cfg.with_siim2020:
        datasets.append("SIIM-ISIC 2020 challenge training images (JPEG), folds by patient; unbiopsied benign lesions "
                        "as the partial label 'benign' (CC BY-NC 4.0)")
    training.update(device=str(device), n_images=len(data), images_per_source=counts, datasets=datasets,
                    dataset="; ".join(datasets), recipe=cfg.recipe(),
                    **({"started_from": {"version": ModelCard.load(cfg.init_from).version,
                                         "members_digest": members_digest(cfg.init_from)}}
                       if cfg.init_from is not None else {}),
                    held_out=f"each member: its own {HAM_SOURCE} fold"
                             + (" and SIIM-ISIC 2020 patients" if cfg.with_siim2020 else "") + "; ISIC 2017 `val` never used")
    return ModelCard(
        version=_version(cfg, len(members)),
        config=ModelConfig(encoder=cfg.encoder, image_size=cfg.image_size),
        members=members,
        training=training,
        preprocessing=cfg.preprocessing,
    )
