"""Weights on disk: safetensors files (never pickle) described by the model card (`card.py`), each with its
sha256."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from skinapp.model.architecture import ModelConfig
from skinapp.model.card import Member, ModelCard, WeightsError, sha256_of
from skinapp.model.network import LesionNet
from skinapp.model.structures import LinearStructureHead, load_heads


def save_weights(model: LesionNet, path: Path, half: bool = False) -> str:
    """Write the state dict as safetensors with the config embedded; returns the file's sha256.

    `half` stores floating-point tensors as fp16 (half the size; loading casts them back to fp32)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    save_file(state, str(path), metadata={"config": model.config.to_json()})
    return sha256_of(path)


def verified_file(folder: Path, member: Member) -> Path:
    """The member's weight file, present and as its card's sha256 says; WeightsError otherwise."""
    path = Path(folder) / member.file
    if not path.is_file():
        raise WeightsError(f"weight file {path} named in the model card is missing")
    actual = sha256_of(path)
    if actual != member.sha256:
        raise WeightsError(
            f"weight file {path} does not match the model card (sha256 {actual[:12]}… instead of {member.sha256[:12]}…);"
            " it was changed or corrupted — restore it from the release"
        )
    return path


def load_member(folder: Path, member: Member, config: ModelConfig, device: str | torch.device = "cpu") -> LesionNet:
    path = verified_file(folder, member)
    model = LesionNet(config, pretrained_encoder=False)
    try:
        state = load_file(str(path))
    except SafetensorError as exc:
        raise WeightsError(f"weight file {path} is not a safetensors file ({exc}); it is never unpickled") from exc
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError) as exc:
        raise WeightsError(f"weight file {path} does not fit the architecture in the model card: {exc}") from exc
    return model.to(device).eval()


def load_ensemble(folder: Path, device: str | torch.device = "cpu") -> tuple[list[LesionNet], ModelCard]:
    card = ModelCard.load(folder)
    if not card.members:
        raise WeightsError(f"the model card in {folder} lists no weight files")
    return [load_member(folder, m, card.config, device) for m in card.members], card


def load_structure_heads(folder: Path, card: ModelCard) -> list[LinearStructureHead] | None:
    """The structure heads the card describes, checked against its sha256; None where the model has none."""
    section = card.structures
    if section is None:
        return None
    path = Path(folder) / section.file
    if not path.is_file() or sha256_of(path) != section.sha256:
        raise WeightsError(f"structure file {path} named in the model card is missing or does not match it")
    try:
        return load_heads(path, len(card.members))
    except (SafetensorError, ValueError) as exc:
        raise WeightsError(f"structure file {path} cannot be read: {exc}") from exc
