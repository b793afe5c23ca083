"""Test-time views of the square network input: the dihedral group's rotations and reflections, each with the
transform that maps an output map back onto the identity view."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from skinapp.model.card import TTA_CHOICES

Transform = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class View:
    """A test-time view of the square input and the transform that maps its outputs back."""

    name: str
    forward: Transform
    inverse: Transform


def _rot(k: int) -> Transform:
    return lambda x: torch.rot90(x, k, dims=(-2, -1))


def _anti_transpose(x: torch.Tensor) -> torch.Tensor:
    return torch.rot90(x, 2, dims=(-2, -1)).transpose(-1, -2)


IDENTITY_VIEW = View("identity", lambda x: x, lambda x: x)
DIHEDRAL_VIEWS: tuple[View, ...] = (
    IDENTITY_VIEW,
    View("hflip", lambda x: x.flip(-1), lambda x: x.flip(-1)),
    View("vflip", lambda x: x.flip(-2), lambda x: x.flip(-2)),
    View("transpose", lambda x: x.transpose(-1, -2), lambda x: x.transpose(-1, -2)),
    View("rot90", _rot(1), _rot(-1)),
    View("rot180", _rot(2), _rot(2)),
    View("rot270", _rot(-1), _rot(1)),
    View("anti-transpose", _anti_transpose, _anti_transpose),
)


def views_for(count: int) -> tuple[View, ...]:
    """The first `count` dihedral views: 1 (none), 4 (flips and transpose) or 8 (the whole dihedral group)."""
    if count not in TTA_CHOICES:
        raise ValueError(f"test-time views must be one of {TTA_CHOICES}, not {count}")
    return DIHEDRAL_VIEWS[:count]


def undo_views(views: Sequence[View], stacked: torch.Tensor, n: int) -> torch.Tensor:
    """(views·n, C, h, w) → (views, n, C, h, w), each view mapped back onto the identity view."""
    parts = stacked.float().view(len(views), n, *stacked.shape[1:])
    return torch.stack([view.inverse(part) for view, part in zip(views, parts, strict=True)])
