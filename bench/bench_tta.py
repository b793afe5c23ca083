"""Which test-time view count to ship: 1, 4 or 8 views, scored on held-out data.

    python bench/bench_tta.py [--weights weights] [--data ../shared/data] [--per-fold 300]

Held-out HAM10000: `--per-fold` images of each member's validation fold, each scored by the one member that never
trained on it (as `evaluate` does). ISIC 2017 `val` (never trained on): the whole ensemble. Calibrated with the
card's temperature; balanced accuracy from the highest probability, so the figures do not depend on the decision
rule fitted for the shipped view count. Latency per view count is printed by bench/bench_predict.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skinapp.evaluation.evaluate import external_figures, external_predictions
from skinapp.inference.predictor import Predictor, default_device
from skinapp.metrics import balanced_accuracy, is_malignant, malignancy
from skinapp.model.card import ModelCard
from skinapp.model.checkpoint import load_member
from skinapp.train.data import FOLDS_FILE, load_ham10000, read_folds
from skinapp.trust.calibration import apply_temperature
from skinapp.trust.decision import DecisionRule


def held_out_ham(weights: Path, data_root: Path, per_fold: int, views: int) -> tuple[np.ndarray, np.ndarray]:
    card = ModelCard.load(weights)
    data = load_ham10000(data_root / "ham10000", with_masks=False)
    folds = read_folds(weights / FOLDS_FILE, data.image_ids, missing=-1)
    labels, probabilities = [], []
    for member in card.members:
        rows = np.flatnonzero(folds == member.validation_fold)
        rows = np.sort(np.random.default_rng(member.validation_fold).choice(rows, min(per_fold, len(rows)), replace=False))
        predictor = Predictor([load_member(weights, member, card.config, default_device())], card, gradcam=False,
                              calibrate=False, tta=views > 1, views=views if views > 1 else None)
        made = predictor.predict([data.images[i] for i in rows], [data.metadata[i] for i in rows])
        labels.append(data.labels[rows])
        probabilities.append(np.stack([p.probabilities for p in made]))
    return np.concatenate(labels), apply_temperature(np.concatenate(probabilities), card.temperature)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=Path(__file__).resolve().parents[1] / "weights")
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--per-fold", type=int, default=300)
    args = parser.parse_args()
    from sklearn.metrics import roc_auc_score

    card = ModelCard.load(args.weights)
    print(f"{card.version}: {len(card.members)} members, the card ships {card.tta_views} views")
    print(f"{'views':>5s} | {'HAM held-out: BA':>16s} {'malignant AUC':>13s} | {'ISIC 2017 val: MEL AUC':>22s} "
          f"{'malignant AUC':>13s} {'BA':>6s}")
    for views in (1, 4, 8):
        labels, calibrated = held_out_ham(args.weights, args.data, args.per_fold, views)
        ham_ba = balanced_accuracy(labels, calibrated)
        ham_auc = roc_auc_score(is_malignant(labels), malignancy(calibrated))
        data, predictions = external_predictions(args.weights, args.data / "isic2017", views)
        external = external_figures(data.labels, apply_temperature(np.stack([p.probabilities for p in predictions]),
                                                                   card.temperature), DecisionRule(), views)
        print(f"{views:5d} | {ham_ba:16.3f} {ham_auc:13.3f} | {external['melanoma_auc']:22.3f} "
              f"{external['malignant_auc']:13.3f} {external['balanced_accuracy_argmax']:6.3f}  "
              f"(HAM n = {len(labels)}, ISIC n = {len(data.labels)})", flush=True)


if __name__ == "__main__":
    main()
