"""Charts a clinician reads on the case page: built here as data (plotly figures), drawn by the page."""

from __future__ import annotations

import plotly.graph_objects as go

from skinapp.reporting.text import percent_text
from skinapp.vocab import CLASS_NAMES, CLASSES

IN_SET_COLOUR = "#1f4e8c"
OTHER_COLOUR = "#a9b4c2"
# The chart's own toolbar would sit over the top bars (melanoma first): the page draws it without one.
CHART_CONFIG = {"displayModeBar": False, "responsive": True}


def probability_chart(probabilities: dict[str, float], highlighted: tuple[str, ...]) -> go.Figure:
    """One horizontal bar per diagnosis in the vocabulary's order (melanoma on top), its full name as the label,
    the value beside the bar as a clinician should read it ("< 1 %", "> 99 %"); `highlighted` (the prediction
    set, or the call where there is none) in a dark colour, the rest pale."""
    classes = [c for c in CLASSES if c in probabilities]
    values = [probabilities[c] for c in classes]
    figure = go.Figure(go.Bar(
        x=values, y=[f"{CLASS_NAMES[c]} ({c})" for c in classes], orientation="h",
        text=[percent_text(v) for v in values], textposition="outside", cliponaxis=False,
        marker_color=[IN_SET_COLOUR if c in highlighted else OTHER_COLOUR for c in classes],
        hovertemplate="%{y}: %{text}<extra></extra>"))
    figure.update_layout(
        height=40 + 34 * len(classes), margin=dict(l=0, r=48, t=4, b=28), showlegend=False, bargap=0.35,
        xaxis=dict(range=[0, 1], tickvals=[0, 0.25, 0.5, 0.75, 1], ticktext=["0", "25 %", "50 %", "75 %", "100 %"],
                   fixedrange=True, gridcolor="#e5e8ec"),
        yaxis=dict(autorange="reversed", fixedrange=True, automargin=True),
        font=dict(size=13), plot_bgcolor="white")
    return figure
