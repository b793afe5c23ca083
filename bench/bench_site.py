"""Site adaptation on a clinic the model never trained on: the shipped ensemble on ISIC 2017 `val` as it is, and
adapted (a site profile estimated on `val`'s own images, no labels), through the app's chain.

    python bench/bench_site.py --isic2017 ../shared/data/isic2017 [--weights weights] [--sizes 50 100 150] [--seeds 3] \
        [--json weights/site_adaptation_shipped.json]

Prints, for the plain model and for profiles estimated on random subsets of each size: melanoma AUC, malignant
AUC, balanced accuracy of the call (over the classes present), the share of melanomas at or above the safety net
and of benign lesions above it, and the tiers' shares. Calibration, rule, net and tiers stay the card's (fitted
without adaptation): this is what a clinic would see. `--json` also writes them where the model card reads them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from sklearn.metrics import roc_auc_score

from skinapp.config import weights_dir
from skinapp.inference.predictor import Predictor
from skinapp.metrics import balanced_accuracy_of_calls, is_malignant
from skinapp.train.data import load_isic2017
from skinapp.vocab import CLASSES, MALIGNANT_INDICES

MEL = CLASSES.index("MEL")


def figures(labels: np.ndarray, predictions) -> dict[str, float]:
    probabilities = np.stack([p.probabilities for p in predictions])
    calls = np.asarray([p.predicted_index for p in predictions])
    suspicious = np.asarray([bool(p.suspicious) for p in predictions])
    tiers = np.asarray([p.risk_tier or "" for p in predictions])
    malignant, melanoma = is_malignant(labels), labels == MEL
    return {
        "melanoma AUC": float(roc_auc_score(melanoma, probabilities[:, MEL])),
        "malignant AUC": float(roc_auc_score(malignant, probabilities[:, list(MALIGNANT_INDICES)].sum(1))),
        "balanced accuracy": balanced_accuracy_of_calls(labels, calls),
        "melanomas at/above net": float(suspicious[melanoma].mean()),
        "benign above net": float(suspicious[~malignant].mean()),
        "benign in High": float((tiers[~malignant] == "high").mean()),
        "melanomas in High": float((tiers[melanoma] == "high").mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--isic2017", type=Path, required=True)
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 150])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the table here (the model card reads "
                                                  "weights/site_adaptation_shipped.json)")
    args = parser.parse_args()
    data = load_isic2017(args.isic2017, "val")
    predictor = Predictor.from_weights(args.weights or weights_dir(), gradcam=False)
    plain = figures(data.labels, predictor.predict(data.images, data.metadata))
    adapted_on: dict[str, dict] = {}
    for size in sorted({min(n, len(data)) for n in args.sizes}):
        runs = []
        for seed in range(args.seeds if size < len(data) else 1):
            chosen = np.random.default_rng(seed).choice(len(data), size=size, replace=False)
            profile = predictor.estimate_site_profile([data.images[i] for i in chosen], [data.metadata[i] for i in chosen])
            adapted = predictor.with_site_profile(profile)
            runs.append(figures(data.labels, adapted.predict(data.images, data.metadata)))
        adapted_on[str(size)] = {"seeds": len(runs), **{k: float(np.mean([r[k] for r in runs])) for k in plain}}
    names = list(plain)
    print(f"ISIC 2017 val ({len(data)} images; {int((data.labels == MEL).sum())} melanomas), model {predictor.card.version}")
    print(f"{'':36s}" + "".join(f"{n:>24s}" for n in names))
    rows = {"plain model": plain} | {f"adapted on {n} images ({row['seeds']} seed(s))": row for n, row in adapted_on.items()}
    for name, row in rows.items():
        print(f"{name:36s}" + "".join(f"{row[n]:>24.3f}" for n in names))
    if args.json:
        args.json.write_text(json.dumps({
            "data": f"ISIC 2017 val ({len(data)} images, {int((data.labels == MEL).sum())} melanomas)",
            "model": predictor.card.version, "model_identity": predictor.card.identity, "views": len(predictor.views),
            "as_shipped": plain, "adapted_on": adapted_on}, indent=2) + "\n")


if __name__ == "__main__":
    main()
