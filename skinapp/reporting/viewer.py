"""The zoomable case image: a plotly figure (wheel to zoom, drag to pan) with the chosen overlay drawn in, the
model's outline and the measured lengths as named lines in the legend. Built here as data; the page draws it."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from skinapp.io.pixels import jpeg_bytes

VIEWER_CONFIG = {"scrollZoom": True, "displaylogo": False, "responsive": True,
                 "modeBarButtonsToRemove": ["select2d", "lasso2d", "autoScale2d", "toImage"]}


@dataclass(frozen=True)
class Line:
    """A named line over the image, e.g. the outline or a measured diameter; points in image pixels."""

    name: str
    points: Sequence[tuple[float, float]]
    colour: str
    closed: bool = False
    dash: str = "solid"


def jpeg_data_url(image: np.ndarray | bytes, quality: int = 90) -> str:
    """image: pixels, or a JPEG already made."""
    data = image if isinstance(image, bytes) else jpeg_bytes(image, quality)
    return "data:image/jpeg;base64," + base64.b64encode(data).decode()


def viewer_figure(picture_url: str, width: int, height: int, lines: Sequence[Line] = (), view_width: int = 540,
                  picture_size: tuple[int, int] | None = None) -> go.Figure:
    """The case image is `width` × `height` pixels, and lines are in its pixels. picture_url: a data URL of it
    (with its overlay), or of a larger copy of `picture_size` (width, height; the zoom copy) drawn over the same
    extent. Drawn about `view_width` pixels wide, so the figure is as tall as the image needs (no empty bands)."""
    view_height = int(min(max(view_width * height / max(width, 1), 280), 760))
    dx, dy = (width / picture_size[0], height / picture_size[1]) if picture_size else (1.0, 1.0)
    # Pixel centres as plotly places them: the picture's edges fall on -0.5 and width - 0.5, whatever its size.
    figure = go.Figure(go.Image(source=picture_url, x0=dx / 2 - 0.5, y0=dy / 2 - 0.5, dx=dx, dy=dy, hoverinfo="skip"))
    for line in lines:
        xs = [p[0] for p in line.points] + ([line.points[0][0]] if line.closed and len(line.points) else [])
        ys = [p[1] for p in line.points] + ([line.points[0][1]] if line.closed and len(line.points) else [])
        figure.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=line.name, hoverinfo="name",
                                    line=dict(color=line.colour, width=2, dash=line.dash)))
    # The legend sits under the picture, never over the lesion: a band below it, as tall as the legend needs.
    legend_band = 28 * min(len(lines), 3) if lines else 0
    figure.update_layout(
        height=view_height + legend_band, margin=dict(l=0, r=0, t=0, b=legend_band), dragmode="pan",
        uirevision="keep-zoom",
        legend=dict(orientation="h", yanchor="top", y=-0.01, xanchor="left", x=0.0),
        xaxis=dict(visible=False, range=[0, width], constrain="domain"),
        yaxis=dict(visible=False, range=[height, 0], scaleanchor="x", constrain="domain"))
    return figure
