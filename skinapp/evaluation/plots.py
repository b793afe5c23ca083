"""The finishing steps every evaluation figure shares."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def finish(fig, ax, path: Path, *, xlabel: str, ylabel: str, title: str, legend: str | None = None,
           fontsize: int | None = None) -> None:
    """Label the axes, add the legend, write the PNG and free the figure."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if legend is not None:
        ax.legend(loc=legend, fontsize=fontsize)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
