"""The installed ensemble on a screening population: the 2,471 SIIM-ISIC 2020 JPEGs (123 patients, mostly benign
lesions judged without a biopsy, 36 melanomas), analysed as the app analyses a case (calibrated, the card's
test-time views, safety net and risk tiers; no metadata, as most uploads carry none).

    python bench/bench_screening.py --siim2020 ../shared/data/siim_isic_2020_jpeg [--weights weights] [--limit N]

Prints and writes to `<weights>/evaluation/screening.json` (the model card shows it when `evaluate` did not measure
it): the share of benign lesions at or above the safety net ("consider excision" or "cannot exclude"), how many
melanomas are, the melanoma AUC of the malignancy probability, and the tier counts. Members trained on SIIM-ISIC 2020
patients each score only their own held-out fold's patients (`skinapp/evaluation/screening.py`, as `evaluate
--siim2020` does); members that never saw them score every image as one ensemble.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skinapp.config import weights_dir
from skinapp.evaluation.screening import screening_figures
from skinapp.inference.postprocess import PostProcessing
from skinapp.model.card import ModelCard


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--siim2020", type=Path, required=True)
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--limit", type=int)
    args = parser.parse_args()
    weights = args.weights or weights_dir()
    card = ModelCard.load(weights)
    result = screening_figures(weights, args.siim2020, PostProcessing.from_card(card), card.tta_views, args.limit)
    print(json.dumps(result, indent=2))
    out = weights / "evaluation" / "screening.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
