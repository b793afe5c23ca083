"""Does a site profile help on a clinic the model never saw? Issue 26's new-clinic protocol.

    python bench/site_adaptation.py --data ../shared/data/ham10000 --isic2017 ../shared/data/isic2017 \
        --out runs/site_adaptation [--seeds 0 1 2] [--json weights/site_adaptation.json]

For each seed, the short-protocol recipe (as `bench/ablation.py`: HAM10000 folds ≠ 0, 128 px, 3 epochs of 100
steps) is trained *without* ISIC 2017, whose 2,150 images (train and val) then stand for the new clinic. The
member is scored (identity view, uncalibrated) on all of them as trained, and again after its batch-norm
statistics were re-estimated (AdaBN) on 10, 20, 50 and 200 of them drawn at random without their labels; each
adapted score leaves out the images it adapted on. Printed and kept: melanoma AUC, malignant AUC, and the
safety net's catch (its level fitted on the member's own held-out HAM10000 fold at 95 % of malignant lesions, as
shipped models fit theirs) for melanomas and for benign lesions. The shipped ensemble adapted on ISIC 2017 `val`'s
own images is `bench/bench_site.py`.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from sklearn.metrics import roc_auc_score

from skinapp.inference.predictor import Predictor
from skinapp.inference.site import apply_profile, estimate_profile, in_batches
from skinapp.metrics import is_malignant, malignancy
from skinapp.train.data import LabelledImages, load_ham10000, load_isic2017, read_folds
from skinapp.train.loop import FOLDS_FILE, TrainConfig, train
from skinapp.trust.safety_net import fit_safety_net
from skinapp.vocab import CLASSES

MEL = CLASSES.index("MEL")
SITE_SIZES = (10, 20, 50, 200)


def figures(probabilities: np.ndarray, labels: np.ndarray, level: float | None) -> dict:
    melanoma, malignant = labels == MEL, is_malignant(labels)
    risk = malignancy(probabilities)
    return {
        "melanoma_auc": float(roc_auc_score(melanoma, probabilities[:, MEL])),
        "malignant_auc": float(roc_auc_score(malignant, risk)),
        "melanomas_above_net": None if level is None else float((risk[melanoma] >= level).mean()),
        "benign_above_net": None if level is None else float((risk[~malignant] >= level).mean()),
        "images": len(labels),
    }


def scored(predictor: Predictor, images: list[np.ndarray], metadata: list) -> np.ndarray:
    return np.stack([p.probabilities for p in predictor.predict(images, metadata)])


def adapted(weights: Path, site: list[np.ndarray], site_metadata: list, **options) -> Predictor:
    predictor = Predictor.from_weights(weights, **options)
    copies = [copy.deepcopy(m) for m in predictor.models]
    profile = estimate_profile(copies, predictor.card, in_batches(site, site_metadata), "new clinic",
                               len(predictor.views), minimum=1)
    apply_profile(predictor.models, predictor.card, profile)
    return predictor


def one_seed(args: argparse.Namespace, seed: int, clinic: LabelledImages, ham: LabelledImages) -> dict:
    out = args.out / f"seed{seed}"
    train(TrainConfig(data=args.data, out=out, isic2017=None, image_size=args.image_size, epochs=args.epochs,
                      steps_per_epoch=args.steps_per_epoch, warmup_steps=60, folds=(0,), seed=seed))
    options = dict(tta=False, gradcam=False, calibrate=False)
    plain = Predictor.from_weights(out, **options)
    held_out = np.flatnonzero(read_folds(out / FOLDS_FILE, ham.image_ids) == 0)
    home = scored(plain, [ham.images[i] for i in held_out], [ham.metadata[i] for i in held_out])
    level = fit_safety_net(malignancy(home), is_malignant(ham.labels[held_out])).threshold
    before = figures(scored(plain, clinic.images, clinic.metadata), clinic.labels, level)
    print(f"seed {seed}: as trained  MEL AUC {before['melanoma_auc']:.3f}  malignant AUC {before['malignant_auc']:.3f}  "
          f"melanomas above net {before['melanomas_above_net']:.3f}  benign above {before['benign_above_net']:.3f}",
          flush=True)
    rows = {}
    rng = np.random.default_rng(seed)
    for size in SITE_SIZES:
        site = rng.choice(len(clinic.labels), size, replace=False)
        rest = np.setdiff1d(np.arange(len(clinic.labels)), site)
        predictor = adapted(out, [clinic.images[i] for i in site], [clinic.metadata[i] for i in site], **options)
        after = figures(scored(predictor, [clinic.images[i] for i in rest], [clinic.metadata[i] for i in rest]),
                        clinic.labels[rest], level)
        unadapted = figures(scored(plain, [clinic.images[i] for i in rest], [clinic.metadata[i] for i in rest]),
                            clinic.labels[rest], level)
        rows[str(size)] = {"adapted": after, "as_trained_same_images": unadapted}
        print(f"seed {seed}: {size:>3} site images  MEL AUC {unadapted['melanoma_auc']:.3f} → {after['melanoma_auc']:.3f}  "
              f"malignant AUC {unadapted['malignant_auc']:.3f} → {after['malignant_auc']:.3f}  melanomas above net "
              f"{unadapted['melanomas_above_net']:.3f} → {after['melanomas_above_net']:.3f}  benign above "
              f"{unadapted['benign_above_net']:.3f} → {after['benign_above_net']:.3f}", flush=True)
    return {"safety_net_level": level, "as_trained": before, "by_site_images": rows}


def summary(seeds: dict[int, dict]) -> dict:
    """Means over seeds of the change each size of site sample makes."""
    found = {}
    for size in map(str, SITE_SIZES):
        deltas = {k: [s["by_site_images"][size]["adapted"][k] - s["by_site_images"][size]["as_trained_same_images"][k]
                      for s in seeds.values()] for k in ("melanoma_auc", "malignant_auc", "benign_above_net")}
        found[size] = {f"mean_change_{k}": float(np.mean(v)) for k, v in deltas.items()} | {
            "mean_melanomas_above_net_adapted": float(np.mean(
                [s["by_site_images"][size]["adapted"]["melanomas_above_net"] for s in seeds.values()]))}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="HAM10000 folder")
    parser.add_argument("--isic2017", type=Path, required=True, help="ISIC 2017 folder: all its images are the new clinic")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps-per-epoch", type=int, default=100)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--limit", type=int, help="first N images of each ISIC 2017 split only (smoke runs)")
    args = parser.parse_args()
    ham = load_ham10000(args.data, with_masks=False)
    train_split = load_isic2017(args.isic2017, "train", limit=args.limit)
    val_split = load_isic2017(args.isic2017, "val", limit=args.limit)
    clinic = LabelledImages.concatenate([train_split, val_split])
    seeds = {seed: one_seed(args, seed, clinic, ham) for seed in args.seeds}
    result = {"protocol": {"trained_on": "HAM10000 folds ≠ 0 only (no ISIC 2017)", "new_clinic": "ISIC 2017 train + val",
                           "image_size": args.image_size, "epochs": args.epochs, "steps_per_epoch": args.steps_per_epoch,
                           "scored": "identity view, uncalibrated; adapted scores leave out the site images"},
              "seeds": {str(k): v for k, v in seeds.items()}, "summary": summary(seeds)}
    for size, row in result["summary"].items():
        print(f"mean over {len(seeds)} seeds, {size:>3} site images: MEL AUC {row['mean_change_melanoma_auc']:+.3f}  "
              f"malignant AUC {row['mean_change_malignant_auc']:+.3f}  benign above net "
              f"{row['mean_change_benign_above_net']:+.3f}  melanomas above net (adapted) "
              f"{row['mean_melanomas_above_net_adapted']:.3f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
