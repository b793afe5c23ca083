"""`python -m skinapp structures`: fit the dermoscopic-structure heads on the installed members, measure them by
cross-validation against the baseline (`skinapp.train.structures`), write the heads beside the weights and their
figures into the model card, with a reliability figure."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from skinapp.evaluation.plots import finish
from skinapp.model.card import ModelCard, sha256_of
from skinapp.model.structure_card import StructureSection
from skinapp.model.structures import save_heads
from skinapp.reporting.model_card import write_model_card_markdown
from skinapp.train.structures import (
    StructureMeasure,
    features_for,
    fit_head,
    measure,
    section_of,
)
from skinapp.vocab import STRUCTURE_NAMES

HEADS_FILE = "structures.safetensors"
RELIABILITY_FILE = "structures_reliability.png"


def plot_reliability(measures: Sequence[StructureMeasure], path: Path) -> None:
    """Each structure's calibrated held-out probability against how often the structure was present."""
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.plot([0, 1], [0, 1], ":", color="grey", label="as stated")
    for m in measures:
        stated, observed, counts = (np.asarray(v) for v in zip(*m.reliability, strict=True))
        ax.plot(stated, observed, "o-", markersize=np.clip(np.sqrt(counts), 3, 9).mean(),
                label=f"{STRUCTURE_NAMES[m.structure]} (ECE {m.ece_after:.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    finish(fig, ax, path, xlabel="Probability the model stated (held out)", ylabel="Share with the structure present",
           title="Dermoscopic structures: reliability", legend="upper left", fontsize=7)


def fit_structures(weights: Path, isic2017: Path, seeds: Sequence[int] = (0, 1, 2), folds: int = 5,
                   cache: Path | None = None, figures: Path | None = None) -> StructureSection:
    """Measure, fit on all labelled images, ship: the heads file, the card's `structures` and MODEL_CARD.md."""
    weights = Path(weights)
    features, labels = features_for(weights, isic2017, cache)
    measures = measure(features, labels, seeds, folds)
    heads = [fit_head(member, labels.present) for member in features.weighted]
    save_heads(heads, weights / HEADS_FILE)
    section = section_of(measures, HEADS_FILE, sha256_of(weights / HEADS_FILE), len(labels.image_ids), folds, len(seeds))
    folder = figures or weights / "evaluation"
    folder.mkdir(parents=True, exist_ok=True)
    plot_reliability(measures, folder / RELIABILITY_FILE)
    card = ModelCard.load(weights)
    card.structures = section
    card.save(weights)
    write_model_card_markdown(weights)
    return section
