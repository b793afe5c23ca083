"""The app's own browser components (a plain HTML/JS frontend in `frontend/`, no build step): the measuring line
drawn while dragging, and two images of a lesion zoomed and moved together. Layout helpers for the pages only:
`skinapp/` never imports this."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import streamlit.components.v1 as components

from skinapp.reporting.viewer import Line

_tools = components.declare_component("skinapp_image_tools", path=str(Path(__file__).parent / "frontend"))


def _lines(lines: Sequence[Line]) -> list[dict[str, Any]]:
    return [{"points": [list(map(float, p)) for p in line.points], "colour": line.colour, "closed": line.closed,
             "dash": line.dash != "solid"} for line in lines]


def measure_line(src: str, width: int, height: int, lines: Sequence[Line], mm_per_pixel: float | None,
                 key: str) -> dict[str, Any] | None:
    """The image (a data URL; `width`×`height` are the stored image's pixels, in which `lines` are given and the
    drag comes back) with a line drawn as the mouse drags and its length beside it. Returns the last drag:
    {x1, y1, x2, y2, width, height}, or None before the first."""
    return _tools(tool="measure", src=src, image_width=width, image_height=height, lines=_lines(lines),
                  mm_per_pixel=mm_per_pixel, key=key, default=None)


def compare_pair(images: Sequence[tuple[str, str, int, int, Sequence[Line]]], key: str) -> None:
    """Two images side by side, zoomed and moved together: each (title, data URL, width, height, lines)."""
    _tools(tool="compare", images=[{"title": t, "src": s, "width": w, "height": h, "lines": _lines(lines)}
                                   for t, s, w, h, lines in images], key=key, default=None)
