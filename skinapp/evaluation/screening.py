"""The screening-population check: the SIIM-ISIC 2020 patients (mostly benign lesions judged without a biopsy, a few
melanomas, other dermatoscopes) analysed as the app analyses an upload: the chain's calibration, safety net and risk
tiers, no metadata. Members trained with these patients each score only their own held-out fold's patients; members
that never saw them score every image as one ensemble."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from skinapp.evaluation.held_out import by_own_member, member_predictors
from skinapp.inference.postprocess import PostProcessing
from skinapp.inference.prediction import Prediction
from skinapp.inference.predictor import Predictor
from skinapp.model.card import ModelCard
from skinapp.model.measured import SCORED_BY_ENSEMBLE, SCORED_HELD_OUT
from skinapp.train.data import FOLDS_FILE, LabelledImages, load_siim2020, read_folds
from skinapp.vocab import CLASSES

MEL = CLASSES.index("MEL")


def trained_on_siim2020(card: ModelCard) -> bool:
    return bool(card.training.get("recipe", {}).get("with_siim2020"))


def screening_figures(weights: Path, siim: Path, chain: PostProcessing, views: int, limit: int | None = None) -> dict:
    """The benign share at or above the safety net, the melanomas kept and the melanoma AUC of the malignancy
    probability, on the SIIM-ISIC 2020 images no member that scores them trained on."""
    card = ModelCard.load(weights)
    data = load_siim2020(siim, limit=limit)
    if trained_on_siim2020(card):
        rows, predictions = _held_out(weights, card, data, chain, views)
        scored_by = SCORED_HELD_OUT
    else:
        rows = np.arange(len(data))
        predictor = Predictor.from_weights(weights, tta=views > 1, views=views if views > 1 else None, gradcam=False,
                                           calibrate=False)
        predictions = [chain.finish(raw, card.version) for raw in predictor.infer(data.images)]
        scored_by = SCORED_BY_ENSEMBLE
    if not len(rows):
        raise ValueError(f"no SIIM-ISIC 2020 image of {siim} falls in a held-out fold of {weights}")
    return {**screening_summary(data.labels[rows], predictions, data.lesion_ids[rows], scored_by, views),
            "model_version": card.version}


def _held_out(weights: Path, card: ModelCard, data: LabelledImages, chain: PostProcessing,
              views: int) -> tuple[np.ndarray, list[Prediction]]:
    raws = by_own_member(member_predictors(weights, card, views), read_folds(weights / FOLDS_FILE, data.image_ids,
                                                                               missing=-1), data.images)
    rows = np.asarray([i for i, raw in enumerate(raws) if raw is not None], np.int64)
    return rows, [chain.finish(raws[i], card.version) for i in rows]


def screening_summary(labels: np.ndarray, predictions: list[Prediction], patients: np.ndarray, scored_by: str,
                      views: int) -> dict:
    melanoma = labels == MEL
    risk = np.asarray([p.malignancy for p in predictions])
    marked = np.asarray([bool(p.suspicious) for p in predictions])
    tiers = [p.risk_tier or "none" for p in predictions]
    return {
        "data": f"SIIM-ISIC 2020 JPEGs ({len(labels)} images, {len(set(patients.tolist()))} patients)",
        "scored_by": scored_by, "images": len(labels), "melanomas": int(melanoma.sum()),
        "benign": int((~melanoma).sum()),
        "benign_above_net": float(marked[~melanoma].mean()) if (~melanoma).any() else None,
        "melanomas_at_or_above_net": int(marked[melanoma].sum()),
        "melanoma_auc": float(roc_auc_score(melanoma, risk)) if 0 < melanoma.sum() < len(melanoma) else None,
        "tiers_benign": dict(Counter(t for t, m in zip(tiers, melanoma, strict=True) if not m)),
        "tiers_melanoma": dict(Counter(t for t, m in zip(tiers, melanoma, strict=True) if m)),
        "metadata": "none given", "tta_views": views,
    }
