"""The zoomable case image: a plotly figure (wheel to zoom, drag to pan) with the chosen overlay drawn in, the
model's outline and the measured lengths as named lines in the legend. Built here as data; the page draws it."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from PIL import Image

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


def jpeg_data_url(image: np.ndarray, quality: int = 90) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def viewer_figure(picture_url: str, width: int, height: int, lines: Sequence[Line] = (), view_width: int = 540) -> go.Figure:
    """picture_url: the image (with its overlay) as a data URL, `width` × `height` pixels; drawn about
    `view_width` pixels wide, so the figure is as tall as the image needs (no empty bands)."""
    view_height = int(min(max(view_width * height / max(width, 1), 280), 760))
    figure = go.Figure(go.Image(source=picture_url, x0=0, y0=0, dx=1, dy=1, hoverinfo="skip"))
    for line in lines:
        xs = [p[0] for p in line.points] + ([line.points[0][0]] if line.closed and len(line.points) else [])
        ys = [p[1] for p in line.points] + ([line.points[0][1]] if line.closed and len(line.points) else [])
        figure.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=line.name, hoverinfo="name",
                                    line=dict(color=line.colour, width=2, dash=line.dash)))
    figure.update_layout(
        height=view_height, margin=dict(l=0, r=0, t=0, b=0), dragmode="pan", uirevision="keep-zoom",
        legend=dict(orientation="h", yanchor="bottom", y=0.01, xanchor="left", x=0.01, bgcolor="rgba(255,255,255,0.8)"),
        xaxis=dict(visible=False, range=[0, width], constrain="domain"),
        yaxis=dict(visible=False, range=[height, 0], scaleanchor="x", constrain="domain"))
    return figure
