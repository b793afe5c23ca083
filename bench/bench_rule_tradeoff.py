"""What the balanced rule's strength τ costs the manual-check flag, and what it does for melanomas.

    python bench/bench_rule_tradeoff.py [--weights weights] [--taus 0 0.1 0.2 0.3 0.4 0.5]

The top call follows prior correction of strength τ, tuned for balanced accuracy (issue 9; `decision.choose_tau`).
Each extra melanoma call it makes on a nevus is an error the flag has to find, so the flag's share of errors caught
(issue 10) depends on τ. This bench reads what `evaluate` wrote (out-of-fold probabilities, flag signs, similar-case
index) and runs no network. For each τ, on the out-of-fold HAM10000 images: balanced accuracy (at that fixed τ; the
card's figure is cross-fitted, τ chosen without the image's fold), the melanoma calls and their recall; the flag
refitted to that rule's errors (`cross_fitted_flags`, by lesion, 20 % budget; always checked: the images beyond the
training data, while `evaluate` also counts the fixed checks, one image more in the shipped fit; the signs that depend
on the call, similar-case disagreement and set size, recomputed, the sets fitted on these images without the shifted
copies `evaluate` adds); and the melanomas and malignant lesions left with no warning at all: not called malignant,
not flagged, not marked suspicious by a safety net cross-fitted on these images.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skinapp.metrics import balanced_accuracy
from skinapp.model.card import ModelCard
from skinapp.trust.calibration import apply_temperature
from skinapp.trust.conformal import cross_fitted_masks
from skinapp.trust.decision import DecisionRule
from skinapp.trust.policy_fit import cross_fitted_flags
from skinapp.trust.safety_net import cross_fitted_suspicious
from skinapp.trust.similar import INDEX_FILE, VOTE_K, load_index
from skinapp.vocab import CLASSES, MALIGNANT_INDICES

MELANOMA = CLASSES.index("MEL")


def neighbour_labels(weights: Path, card: ModelCard, image_ids: np.ndarray, folds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The VOTE_K nearest labelled images' diagnoses for each held-out image, found as `evaluate` finds them: in the
    space of the member that never trained on it, other images of the same lesion left out; and each image's lesion."""
    index, _ = load_index(weights / INDEX_FILE)
    position = {str(image_id): i for i, image_id in enumerate(index.image_ids)}
    rows = np.asarray([position[str(i)] for i in image_ids])
    member_of_fold = {m.validation_fold: j for j, m in enumerate(card.members)}
    spaces = {fold: index.member_view(member, len(card.members)) for fold, member in member_of_fold.items()}
    labels = []
    for row, fold in zip(rows, folds, strict=True):
        found = spaces[fold].neighbours(spaces[fold].embeddings[row], VOTE_K, exclude_lesion=str(index.lesion_ids[row]))
        labels.append([CLASSES.index(n.label) for n in found])
    return np.asarray(labels), index.lesion_ids[rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=Path(__file__).resolve().parents[1] / "weights")
    parser.add_argument("--taus", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    args = parser.parse_args()
    card = ModelCard.load(args.weights)
    evaluation = args.weights / "evaluation"
    oof = pd.read_csv(evaluation / "oof_predictions.csv")
    signs = pd.read_csv(evaluation / "flag_features.csv")
    if not (signs["image_id"].to_numpy() == oof["image_id"].to_numpy()).all():
        sys.exit("flag_features.csv and oof_predictions.csv list different images: rerun `python -m skinapp evaluate`")
    labels = oof["label"].map(CLASSES.index).to_numpy()
    calibrated = apply_temperature(oof[list(CLASSES)].to_numpy(), card.temperature)
    neighbours, groups = neighbour_labels(args.weights, card, oof["image_id"].to_numpy(), oof["fold"].to_numpy())
    malignant = np.isin(labels, MALIGNANT_INDICES)
    suspicious = cross_fitted_suspicious(calibrated[:, list(MALIGNANT_INDICES)].sum(1), malignant, groups)
    shipped = card.decision_rule
    print(f"{card.version}: {len(labels)} out-of-fold HAM10000 images; shipped τ = {shipped.tau}; the card's flag "
          f"catches {card.metrics.flags.errors_caught if card.metrics.flags else float('nan'):.1%} of errors")
    print(f"{'τ':>4s} {'BA':>6s} {'accuracy':>8s} {'MEL calls':>9s} {'MEL recall':>10s} | {'flagged':>7s} "
          f"{'errors caught':>13s} | {'no warning: MEL':>15s} {'malignant':>9s}")
    for tau in args.taus:
        rule = DecisionRule(shipped.prior, tau)
        scores = rule.scores(calibrated)
        calls = scores.argmax(1)
        table = signs.drop(columns=["image_id", "correct"]).assign(
            knn_disagreement=1.0 - (neighbours == calls[:, None]).mean(1),
            prediction_set_size=cross_fitted_masks(scores, labels, groups).sum(1).astype(float))
        correct = calls == labels
        flagged = cross_fitted_flags(table, correct, groups).flagged
        silent = ~(flagged | suspicious | np.isin(calls, MALIGNANT_INDICES))
        melanomas = labels == MELANOMA
        print(f"{tau:4.2f} {balanced_accuracy(labels, scores):6.3f} {correct.mean():8.3f} "
              f"{int((calls == MELANOMA).sum()):9d} {(calls[melanomas] == MELANOMA).mean():10.3f} | "
              f"{flagged.mean():7.1%} {flagged[~correct].mean():13.1%} | "
              f"{int(silent[melanomas].sum()):15d} {int(silent[malignant].sum()):9d}", flush=True)


if __name__ == "__main__":
    main()
