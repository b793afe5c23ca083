"""The installed ensemble on a screening population it never trained on: the 2,471 SIIM-ISIC 2020 JPEGs (123
patients, mostly benign lesions judged without a biopsy, 36 melanomas), analysed as the app analyses a case
(calibrated, the card's test-time views, safety net and risk tiers; no metadata, as most uploads carry none).

    python bench/bench_screening.py --siim2020 ../shared/data/siim_isic_2020_jpeg [--weights weights] [--limit N]

Prints and writes to `<weights>/evaluation/screening.json` (the model card shows it): the share of benign lesions at
or above the safety net ("consider excision" or "cannot exclude"), how many melanomas are, the melanoma AUC of the
malignancy probability, and the tier counts. Members trained on SIIM-ISIC 2020 patients must not be measured
this way (every member would know every patient): the bench refuses their folder.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from sklearn.metrics import roc_auc_score

from skinapp.config import weights_dir
from skinapp.inference.predictor import Predictor
from skinapp.model.card import ModelCard
from skinapp.train.data import load_siim2020
from skinapp.vocab import CLASSES, Metadata

CHUNK = 32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--siim2020", type=Path, required=True)
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--limit", type=int)
    args = parser.parse_args()
    weights = args.weights or weights_dir()
    card = ModelCard.load(weights)
    if card.training.get("recipe", {}).get("with_siim2020"):
        raise SystemExit(f"{weights} was trained on SIIM-ISIC 2020 patients: measure it with evaluate's held-out "
                         "patients instead")
    data = load_siim2020(args.siim2020, limit=args.limit)
    predictor = Predictor.from_weights(weights, gradcam=False)
    predictions = []
    for start in range(0, len(data), CHUNK):
        predictions += predictor.predict(data.images[start:start + CHUNK], [Metadata()] * len(data.images[start:start + CHUNK]))
    melanoma = data.labels == CLASSES.index("MEL")
    risk = np.asarray([p.malignancy for p in predictions])
    suspicious = np.asarray([bool(p.suspicious) for p in predictions])
    tiers = [p.risk_tier or "none" for p in predictions]
    result = {
        "data": f"SIIM-ISIC 2020 JPEGs ({len(data)} images, {len(set(data.lesion_ids))} patients), never trained on",
        "model_version": predictor.model_version, "images": len(data), "melanomas": int(melanoma.sum()),
        "benign": int((~melanoma).sum()), "benign_above_net": float(suspicious[~melanoma].mean()),
        "melanomas_at_or_above_net": int(suspicious[melanoma].sum()),
        "melanoma_auc": float(roc_auc_score(melanoma, risk)) if 0 < melanoma.sum() < len(melanoma) else None,
        "tiers_benign": dict(Counter(t for t, m in zip(tiers, melanoma, strict=True) if not m)),
        "tiers_melanoma": dict(Counter(t for t, m in zip(tiers, melanoma, strict=True) if m)),
        "metadata": "none given", "tta_views": card.tta_views,
    }
    print(json.dumps(result, indent=2))
    out = weights / "evaluation" / "screening.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
