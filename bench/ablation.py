"""Short-protocol experiments on the same folds: does mask supervision help, and focal loss vs class-balanced sampling?

    python bench/ablation.py --data ../shared/data/ham10000 --out runs/ablation [--json weights/ablation.json]

Every variant trains from the same ImageNet start on folds ≠ 0 with the same seed and the same short schedule,
and is scored on fold 0 after its last epoch (no epoch selection, identity view). Figures are comparable with
each other, not with the shipped model's longer training.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skinapp.train.loop import TrainConfig, train  # noqa: E402

VARIANTS: dict[str, dict] = {
    "focal + sqrt-balanced sampling, mask supervised (shipped recipe)": dict(),
    "focal loss only (natural class mix)": dict(sampler_power=0.0),
    "class-balanced sampling only (cross-entropy)": dict(focal_gamma=0.0, sampler_power=1.0),
    "attention learns without mask supervision": dict(mask_weight=0.0),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--json", type=Path, help="also write the results table here")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps-per-epoch", type=int, default=120)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--only", nargs="*", help="run only variants whose name contains one of these words")
    args = parser.parse_args()
    results = {}
    for index, (name, overrides) in enumerate(VARIANTS.items()):
        if args.only and not any(word in name for word in args.only):
            continue
        out = args.out / f"variant{index}"
        cfg = TrainConfig(data=args.data, out=out, image_size=args.image_size, epochs=args.epochs,
                          steps_per_epoch=args.steps_per_epoch, patience=args.epochs, warmup_steps=60,
                          threads=args.threads, **overrides)
        train(cfg)
        last = json.loads((out / "history_fold0.jsonl").read_text().splitlines()[-1])
        results[name] = {"overrides": overrides, **{k: last[f"val_{k}"] for k in ("balanced_accuracy", "malignant_auc", "mask_jaccard")}}
        print(f"{name:66s} BA {last['val_balanced_accuracy']:.3f}  AUC {last['val_malignant_auc']:.3f}  "
              f"Jaccard {last['val_mask_jaccard']:.3f}", flush=True)
    protocol = {"image_size": args.image_size, "epochs": args.epochs, "steps_per_epoch": args.steps_per_epoch,
                "batch_size": TrainConfig.batch_size, "validation_fold": 0, "scored": "last epoch, EMA weights, identity view"}
    if args.json:
        args.json.write_text(json.dumps({"protocol": protocol, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
