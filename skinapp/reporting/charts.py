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
    """One horizontal bar per diagnosis in the vocabulary's order (melanoma on top), its full name written above
    the bar (a narrow column has no room for names beside the bars), the value beside the bar as a clinician
    should read it ("< 1 %", "> 99 %"); `highlighted` (the prediction set, or the call where there is none) in a
    dark colour, the rest pale."""
    classes = [c for c in CLASSES if c in probabilities]
    values = [probabilities[c] for c in classes]
    figure = go.Figure(go.Bar(
        x=values, y=classes, orientation="h", width=0.45, text=[percent_text(v) for v in values],
        textposition="outside", cliponaxis=False,
        marker_color=[IN_SET_COLOUR if c in highlighted else OTHER_COLOUR for c in classes],
        customdata=[f"{CLASS_NAMES[c]} ({c})" for c in classes], hovertemplate="%{customdata}: %{text}<extra></extra>"))
    for c in classes:
        figure.add_annotation(x=0, y=c, yshift=15, xanchor="left", showarrow=False, text=f"{CLASS_NAMES[c]} ({c})",
                              font=dict(size=13, color="#1a1a1a" if c in highlighted else "#555"))
    figure.update_layout(
        height=30 + 46 * len(classes), margin=dict(l=4, r=52, t=18, b=24), showlegend=False,
        xaxis=dict(range=[0, 1], tickvals=[0, 0.5, 1], ticktext=["0", "50 %", "100 %"], fixedrange=True,
                   gridcolor="#e5e8ec"),
        yaxis=dict(autorange="reversed", fixedrange=True, showticklabels=False),
        font=dict(size=13), plot_bgcolor="white")
    return figure
