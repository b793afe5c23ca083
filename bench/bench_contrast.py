"""How alike the Grad-CAM maps of the top diagnosis and the runner-up are, and what the contrast map (Grad-CAM of
the difference of their logits) shows instead, on ISIC 2017 `val` (images the model never trained on).

    python bench/bench_contrast.py --isic2017 ../shared/data/isic2017 [--weights weights] [--limit 150]

For each image: the Pearson correlation of the top diagnosis's map with the runner-up's, and of the top diagnosis's
map with the contrast map. Prints the medians and the share of images whose two class maps look alike (correlation
≥ 0.8), and writes them to `<weights>/evaluation/contrast.json`, which the model card shows.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from skinapp.config import weights_dir
from skinapp.inference.predictor import Predictor
from skinapp.train.data import load_isic2017

ALIKE = 0.8  # correlation at or above which two maps count as alike


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    scale = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / scale) if scale > 0 else 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--isic2017", type=Path, required=True)
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--limit", type=int, default=150)
    args = parser.parse_args()
    weights = args.weights or weights_dir()
    data = load_isic2017(args.isic2017, "val", limit=args.limit)
    predictor = Predictor.from_weights(weights, gradcam=False)
    class_maps, with_contrast = [], []
    for image, metadata, prediction in zip(data.images, data.metadata, predictor.predict(data.images, data.metadata),
                                           strict=True):
        top, runner_up = prediction.predicted_class, prediction.runner_up_class
        top_map = predictor.explain_class(image, top, metadata)
        class_maps.append(correlation(top_map, predictor.explain_class(image, runner_up, metadata)))
        with_contrast.append(correlation(top_map, predictor.explain_class(image, top, metadata, against=runner_up)))
    class_maps_, contrast_ = np.asarray(class_maps), np.asarray(with_contrast)
    result = {
        "images": len(class_maps), "data": "ISIC 2017 val", "alike_at": ALIKE,
        "class_maps_median_correlation": float(np.median(class_maps_)),
        "class_maps_alike_share": float((class_maps_ >= ALIKE).mean()),
        "contrast_median_correlation": float(np.median(contrast_)),
        "contrast_alike_share": float((contrast_ >= ALIKE).mean()),
    }
    print(f"{result['images']} ISIC 2017 val images: the maps of the top diagnosis and the runner-up correlate "
          f"{result['class_maps_median_correlation']:.2f} (median); alike (r ≥ {ALIKE}) for "
          f"{result['class_maps_alike_share']:.0%}. The contrast map against the top diagnosis's: median "
          f"{result['contrast_median_correlation']:.2f}, alike for {result['contrast_alike_share']:.0%}.")
    out = Path(weights) / "evaluation" / "contrast.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
