"""The structure head two ways on the short protocol (issue 28): read from frozen members, or from members trained
with structure supervision (and the global pattern as a further target), and what each does to the diagnosis.

    python bench/structures_joint.py --data ../shared/data/ham10000 --isic2017 ../shared/data/isic2017 \
        --frozen runs/ablation_res --out runs/structures_joint [--seeds 0 1 2] [--json weights/structures_joint.json]

For each seed, one fold of the 746 structure-labelled ISIC 2017 `train` images (5 folds drawn with the seed) is held
out. The frozen way: the 0.2 recipe's short-protocol member of that seed (`bench/ablation.py`, under `--frozen`),
never shown a structure label. The joint way: the same recipe and seed trained with `structure_weight`, the
held-out fold's labels withheld. Both are then read out by the shipped head's method (`train/structures.py`: a
class-balanced logistic regression on lesion-pooled features, fitted on the other four folds) and scored on the
held-out fold. Diagnosis: held-out HAM10000 fold 0 and ISIC 2017 `val`, as in `bench/ablation.py`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from sklearn.metrics import roc_auc_score

from skinapp.evaluation.evaluate import external_figures, external_predictions
from skinapp.model.checkpoint import load_ensemble
from skinapp.model.preprocess import BICUBIC_RESIZE
from skinapp.train.loop import TrainConfig, train
from skinapp.train.structures import fit_head, labelled_images, read_features, read_structure_labels
from skinapp.trust.decision import DecisionRule
from skinapp.vocab import STRUCTURES

STRUCTURE_WEIGHT = 0.5


def structure_aucs(weights: Path, isic2017: Path, seed: int) -> dict[str, float]:
    """The member's features read out by the shipped head's method: fitted on four folds, AUC on the held-out one."""
    labels = read_structure_labels(isic2017)
    models, card = load_ensemble(weights)
    card = dataclasses.replace(card, tta_views=4)
    images, codes = labelled_images(isic2017, labels, card)
    features = read_features(models, card, images, codes).weighted[0]   # (N, V, C)
    held = labels.held_out(seed, 0)
    fitted = np.setdiff1d(np.arange(len(labels.image_ids)), held)
    head = fit_head(features[fitted], labels.present[fitted])
    logits = head.pooled_logits(features[held].mean(axis=1))
    return {s: float(roc_auc_score(labels.present[held, k], logits[:, k])) for k, s in enumerate(STRUCTURES)}


def diagnosis(weights: Path, isic2017: Path) -> dict[str, float]:
    last = json.loads((weights / "history_fold0.jsonl").read_text().splitlines()[-1])
    data, predictions = external_predictions(weights, isic2017, views=1)
    external = external_figures(data.labels, np.stack([p.probabilities for p in predictions]), DecisionRule(), 1)
    return {"balanced_accuracy": last["val_balanced_accuracy"], "malignant_auc": last["val_malignant_auc"],
            "external_melanoma_auc": external["melanoma_auc"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--isic2017", type=Path, required=True)
    parser.add_argument("--frozen", type=Path, required=True, help="bench/ablation.py's --out (its 0.2 recipe members)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--weight", type=float, default=STRUCTURE_WEIGHT)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    stored = json.loads(args.json.read_text()) if args.json and args.json.is_file() else {"runs": {}}
    if "seeds" in stored:  # one weight's results, as the first version wrote them
        stored = {"runs": {str(stored["protocol"]["structure_weight"]): stored}}
    key = f"{args.weight:g}"
    results = stored["runs"].get(key, {}).get("seeds", {})
    for seed in args.seeds:
        frozen = args.frozen / ("variant1" + (f"_seed{seed}" if seed else ""))
        joint = args.out / (f"seed{seed}" if args.weight == STRUCTURE_WEIGHT else f"weight{key}_seed{seed}")
        joint.mkdir(parents=True, exist_ok=True)
        train(TrainConfig(data=args.data, out=joint, isic2017=args.isic2017, image_size=128, epochs=3,
                          steps_per_epoch=100, warmup_steps=60, folds=(0,), seed=seed, resize=BICUBIC_RESIZE,
                          degrade_p=0.0, structure_weight=args.weight, structure_holdout_fold=0))
        results[str(seed)] = {
            "frozen": {"structures": structure_aucs(frozen, args.isic2017, seed), **diagnosis(frozen, args.isic2017)},
            "joint": {"structures": structure_aucs(joint, args.isic2017, seed), **diagnosis(joint, args.isic2017)},
        }
        for way in ("frozen", "joint"):
            r = results[str(seed)][way]
            print(f"seed {seed} {way:6s} " + " ".join(f"{s} {a:.3f}" for s, a in r["structures"].items())
                  + f" | HAM BA {r['balanced_accuracy']:.3f} AUC {r['malignant_auc']:.3f} | ISIC 2017 val MEL AUC "
                  f"{r['external_melanoma_auc']:.3f}", flush=True)
    if args.json:
        protocol = {"structure_weight": args.weight, "global_pattern": True, "held_out": "fold 0 of 5 of the 746 "
                    "labelled images, drawn with the seed", "readout": "class-balanced logistic regression on "
                    "lesion-pooled features, 4 views, fitted on the other folds", "diagnosis": "short protocol, "
                    "HAM10000 fold 0 and ISIC 2017 val, one view, highest probability"}
        stored["runs"][key] = {"protocol": protocol, "seeds": results}
        args.json.write_text(json.dumps(stored, indent=2) + "\n")


if __name__ == "__main__":
    main()
