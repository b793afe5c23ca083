"""The body map: a front and a back outline of the body with one spot per anatomic site the model knows, to pick a
lesion's site by pointing at it and to show where a patient's lesions are, each in its risk tier's colour. Built
here as data (plotly); the pages draw it and read the picked spot back with `site_of_selection`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import plotly.graph_objects as go

from skinapp.vocab import REGION_OF_SITE, Site

BACK_OFFSET = 3.0  # the back view is drawn beside the front one, this far to the right
# A risk tier as a colour (the worklist's chips): red, amber, grey; no result: black.
TIER_COLOURS = {"high": "#d62728", "suspicious": "#d62728", "cannot_exclude": "#ff9f1c", "low": "#9e9e9e",
                None: "#222222"}


@dataclass(frozen=True)
class BodySpot:
    label: str               # what the spot says on hover
    fine: str                # the fine site it stands for (`vocab.FINE_SITES`)
    x: float                 # on the front view; the back view is shifted by BACK_OFFSET
    y: float
    back: bool = False

    @property
    def site(self) -> Site:
        """A fine site named like its region ("upper extremity") is the region itself, as `parse_site` reads it."""
        region = REGION_OF_SITE[self.fine]
        return Site(region, None if self.fine == region else self.fine)

    @property
    def position(self) -> tuple[float, float]:
        return (self.x + BACK_OFFSET if self.back else self.x, self.y)


SPOTS: tuple[BodySpot, ...] = (
    BodySpot("Scalp", "scalp", 1.0, 9.55), BodySpot("Face", "face", 1.0, 9.05), BodySpot("Ear", "ear", 0.72, 9.15),
    BodySpot("Neck", "neck", 1.0, 8.45), BodySpot("Chest", "chest", 1.0, 7.45), BodySpot("Abdomen", "abdomen", 1.0, 6.2),
    BodySpot("Genital area", "genital", 1.0, 5.2), BodySpot("Arm", "upper extremity", 0.25, 6.9),
    BodySpot("Hand", "hand", 0.05, 4.95), BodySpot("Leg", "lower extremity", 0.75, 3.0),
    BodySpot("Foot", "foot", 0.7, 0.35),
    BodySpot("Scalp (back)", "scalp", 1.0, 9.4, back=True), BodySpot("Neck (back)", "neck", 1.0, 8.45, back=True),
    BodySpot("Back", "back", 1.0, 6.9, back=True), BodySpot("Arm (back)", "upper extremity", 1.75, 6.9, back=True),
    BodySpot("Hand (back)", "hand", 1.95, 4.95, back=True), BodySpot("Leg (back)", "lower extremity", 1.25, 3.0, back=True),
    BodySpot("Sole or palm", "acral", 1.3, 0.35, back=True),
)

# The outline: (x0, y0, x1, y1) boxes and one circle, the same for front and back.
_HEAD = (0.65, 8.7, 1.35, 9.9)
_BOXES = ((0.9, 8.2, 1.1, 8.7),            # neck
          (0.55, 4.9, 1.45, 8.2),          # trunk
          (0.15, 5.4, 0.5, 8.0), (1.5, 5.4, 1.85, 8.0),      # arms
          (-0.05, 4.6, 0.35, 5.35), (1.65, 4.6, 2.05, 5.35),  # hands
          (0.58, 0.6, 0.95, 4.85), (1.05, 0.6, 1.42, 4.85),   # legs
          (0.5, 0.1, 0.95, 0.6), (1.05, 0.1, 1.5, 0.6))       # feet


def _outline_shapes() -> list[dict]:
    shapes = []
    for offset in (0.0, BACK_OFFSET):
        x0, y0, x1, y1 = _HEAD
        shapes.append(dict(type="circle", x0=x0 + offset, y0=y0, x1=x1 + offset, y1=y1,
                           line=dict(color="#8d8d8d"), fillcolor="#f4ede8", layer="below"))
        shapes += [dict(type="rect", x0=a + offset, y0=b, x1=c + offset, y1=d, line=dict(color="#8d8d8d"),
                        fillcolor="#f4ede8", layer="below") for a, b, c, d in _BOXES]
    return shapes


def body_map_figure(picked: Site | None = None, lesions: Sequence[tuple[Site, str | None, str]] = (),
                    height: int = 420) -> go.Figure:
    """picked: the site to ring; lesions: (site, risk tier, name) of a patient's lesions, drawn as dots in the tier's
    colour at their site's spot (the first spot of a site; several lesions there side by side)."""
    figure = go.Figure()
    xs, ys = zip(*(s.position for s in SPOTS), strict=True)
    ringed = [picked is not None and s.site == picked for s in SPOTS]
    figure.add_trace(go.Scatter(
        x=xs, y=ys, mode="markers", name="sites", customdata=[s.fine for s in SPOTS],
        hovertext=[s.label for s in SPOTS], hoverinfo="text",
        marker=dict(size=[20 if r else 13 for r in ringed], color=["#1f77b4" if r else "rgba(31,119,180,0.25)"
                                                                    for r in ringed],
                    line=dict(width=2, color="#1f77b4"))))
    if lesions:
        placed: dict[str, int] = {}
        points = []
        for site, tier, name in lesions:
            spot = (next((s for s in SPOTS if s.site == site), None)
                    or next((s for s in SPOTS if s.site.region == site.region), None))
            if spot is None:
                continue
            k = placed[spot.fine] = placed.get(spot.fine, -1) + 1
            x, y = spot.position
            points.append((x + 0.22 * (k % 4 + 1), y - 0.3 * (k // 4), TIER_COLOURS.get(tier, TIER_COLOURS[None]), name))
        if points:
            figure.add_trace(go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points], mode="markers",
                                        name="lesions", hovertext=[p[3] for p in points], hoverinfo="text",
                                        marker=dict(size=12, color=[p[2] for p in points],
                                                    line=dict(width=1, color="white"))))
    figure.update_layout(shapes=_outline_shapes(), height=height, margin=dict(l=0, r=0, t=24, b=0),
                         showlegend=False, dragmode=False, clickmode="event+select",
                         annotations=[dict(x=1.0, y=10.3, text="front", showarrow=False),
                                      dict(x=1.0 + BACK_OFFSET, y=10.3, text="back", showarrow=False)])
    figure.update_xaxes(visible=False, range=[-0.3, 2.3 + BACK_OFFSET], fixedrange=True)
    figure.update_yaxes(visible=False, range=[-0.1, 10.6], fixedrange=True, scaleanchor="x")
    return figure


def site_of_selection(selection: Mapping | None) -> Site | None:
    """The site of the spot a reviewer clicked, from Streamlit's plotly selection state; None: no spot picked."""
    points = ((selection or {}).get("selection") or {}).get("points") or []
    for point in points:
        fine = point.get("customdata")
        if isinstance(fine, list):
            fine = fine[0] if fine else None
        spot = next((s for s in SPOTS if s.fine == fine), None)
        if spot is not None:
            return spot.site
    return None
