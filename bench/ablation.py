"""Short-protocol experiments on the same folds: what each part of the training recipe does, on held-out
HAM10000 and on the external check (ISIC 2017 `val`: other centres and dermatoscopes, never trained on).

    python bench/ablation.py --data ../shared/data/ham10000 --isic2017 ../shared/data/isic2017 \
        --out runs/ablation [--json weights/ablation.json]

Every variant trains from the same ImageNet start on HAM10000 folds ≠ 0 with the same seed and the same short
schedule, and is scored after its last epoch (no epoch selection, identity view, no calibration, highest
probability) on HAM10000 fold 0 and on ISIC 2017 `val`. The recipe is the current one; each other variant
removes one ingredient. Figures are comparable with each other, not with the shipped model's longer training.
Each variant also gets the resolution check (`evaluation/resolution.py`): fold 0 delivered at 1×–5× its size,
through the import's decoder, with the safety net's level fitted at 1× (95 % of malignant lesions). With
`--siim2020`, every variant is also scored on the SIIM-ISIC 2020 patients of fold 0 (a screening population: the
benign share at or above that safety net, and the melanomas kept); variants trained with SIIM-ISIC 2020 never saw
them, and `--rescore-siim` adds these figures to variants already in `--json` without training again. `--json`
merges into the file, so variants and seeds can be run apart (`--only`, `--seed`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from sklearn.metrics import roc_auc_score

from skinapp.evaluation.evaluate import external_figures, external_predictions
from skinapp.evaluation.resolution import resolution_check, spread
from skinapp.inference.predictor import Predictor
from skinapp.metrics import is_malignant, malignancy
from skinapp.model.card import ModelCard
from skinapp.model.preprocess import BICUBIC_RESIZE
from skinapp.reporting.card_sections import BASELINE_VARIANT, FINE_TUNE_MARK, ROBUST_VARIANT, SHIPPED_SIZE_VARIANT
from skinapp.train.data import SIIM2020_METADATA, load_ham10000, load_siim2020, make_folds, read_folds
from skinapp.train.loop import FOLDS_FILE, TrainConfig, train
from skinapp.trust.decision import DecisionRule
from skinapp.trust.safety_net import fit_safety_net
from skinapp.vocab import CLASSES

RECIPE = ROBUST_VARIANT  # the card's name for it
WITHOUT_NEW_AUGMENTATION = dict(scale=(0.85, 1.2), aspect=(1.0, 1.0), illuminant=0.0)
VARIANTS: dict[str, dict] = {
    RECIPE: dict(),
    BASELINE_VARIANT: dict(resize=BICUBIC_RESIZE, degrade_p=0.0),
    "antialiased resize, no resolution degradations": dict(degrade_p=0.0),
    "without ISIC 2017 train data (HAM10000 only)": dict(isic2017=None),
    "without colour constancy": dict(colour_constancy="none"),
    "without crop/aspect and illuminant jitter": WITHOUT_NEW_AUGMENTATION,
    "focal loss + sqrt-balanced sampling instead of balanced CE": dict(focal_gamma=2.0, sampler_power=0.5),
    "attention learns without mask supervision": dict(mask_weight=0.0),
    "0.2 recipe + SIIM-ISIC 2020 patients (unbiopsied lesions as the partial label 'benign')":
        dict(resize=BICUBIC_RESIZE, degrade_p=0.0, siim2020="SIIM"),
    "0.2 recipe + SIIM-ISIC 2020 patients, the partial label drawn within the nevi's share":
        dict(resize=BICUBIC_RESIZE, degrade_p=0.0, siim2020="SIIM", partial_sampling="with_nevi"),
    "0.2 recipe + SIIM-ISIC 2020 patients, the partial label at 7 % of the draws":
        dict(resize=BICUBIC_RESIZE, degrade_p=0.0, siim2020="SIIM", partial_share=0.07),
    "stronger: the recipe with Lite0 at 192 px": dict(image_size=192),
    "stronger: the recipe with Lite0 at 224 px": dict(image_size=224),
    "stronger: the recipe with Lite1 (128 px)": dict(encoder="lite1"),
    "stronger: the recipe with Lite2 (128 px)": dict(encoder="lite2"),
    SHIPPED_SIZE_VARIANT: dict(resize=BICUBIC_RESIZE, degrade_p=0.0, image_size=160),
    "stronger: the 0.2 recipe with Lite0 at 192 px": dict(resize=BICUBIC_RESIZE, degrade_p=0.0, image_size=192),
    "stronger: the 0.2 recipe with Lite1 at 160 px":
        dict(resize=BICUBIC_RESIZE, degrade_p=0.0, encoder="lite1", image_size=160),
    # issue 26's ensemble: the resolution-robust recipe with the screening population, at the shipped input size
    "recipe at 160 px + SIIM-ISIC 2020 patients, the partial label drawn within the nevi's share":
        dict(image_size=160, siim2020="SIIM", partial_sampling="with_nevi"),
    # the population's melanomas given weight against its benign lesions, so that its look is no sign of "benign"
    "0.2 recipe at 160 px + SIIM-ISIC 2020 patients, their melanomas at 30 % of the population's draws":
        dict(resize=BICUBIC_RESIZE, degrade_p=0.0, image_size=160, siim2020="SIIM", partial_source_malignant_share=0.3),
    "resolution-robust recipe at 160 px + SIIM-ISIC 2020 patients, their melanomas at 30 % of the population's draws":
        dict(image_size=160, siim2020="SIIM", partial_source_malignant_share=0.3),
    "recipe at 160 px, resolution-robust (HAM10000 and ISIC 2017 train only)": dict(image_size=160),
}


FULL_LENGTH = dict(epochs=10, steps_per_epoch=None, warmup_steps=200)  # the shipped members' schedule
FULL_LENGTH_MARK = " [full length]"
# --fine-tune: the shipped members trained further with a recipe (two passes at a tenth of the learning rate)
FINE_TUNE = dict(epochs=2, steps_per_epoch=None, warmup_steps=50, lr=8e-5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="HAM10000 folder")
    parser.add_argument("--isic2017", type=Path, required=True, help="ISIC 2017 folder (train: training data; val: scored)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--siim2020", type=Path, help="SIIM-ISIC 2020 JPEG folder: a training source for the variants "
                                                      "that name it, and scored on fold 0's patients for every variant")
    parser.add_argument("--rescore-siim", action="store_true", help="only add the SIIM-ISIC 2020 figures to variants "
                                                                    "already trained and in --json")
    parser.add_argument("--json", type=Path, help="also write the results table here")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps-per-epoch", type=int, default=100)
    parser.add_argument("--full-length", action="store_true",
                        help="train with the shipped members' schedule (10 full epochs) instead of the short protocol; "
                             "results are named with '[full length]' (about an hour a variant on the 2-core CPU)")
    parser.add_argument("--score-member", type=Path, metavar="WEIGHTS",
                        help="no training: score the first member (fold 0) of this ensemble as a variant is scored, "
                             "under the name 'shipped member (fold 0)' — the baseline of --full-length runs")
    parser.add_argument("--fine-tune", type=Path, metavar="WEIGHTS",
                        help="start from this ensemble's fold-0 member instead of ImageNet and train it further with "
                             "the variant's recipe (two full passes, learning rate 8e-5); names get "
                             f"'{FINE_TUNE_MARK.strip()}'")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--limit", type=int, help="first N images of each data set only (smoke runs)")
    parser.add_argument("--only", nargs="*", help="run only variants whose name contains one of these words")
    parser.add_argument("--seed", type=int, default=0, help="training seed; results of a seed other than 0 are kept "
                                                              "under the variant's name with the seed")
    args = parser.parse_args()
    if args.fine_tune and args.seed:
        parser.error("--fine-tune is compared with the shipped member on its seed's patients: seed 0 only")
    if args.fine_tune:  # the start's input size
        args.image_size = ModelCard.load(args.fine_tune).config.image_size
    earlier = json.loads(args.json.read_text())["results"] if args.json and args.json.is_file() else {}
    results = {}
    if args.score_member is not None:
        out = member_folder(args.score_member, args.out / "shipped_fold0")
        results["shipped member (fold 0)" + FULL_LENGTH_MARK] = {**scored(out, {}, args),
                                                                  "model": ModelCard.load(args.score_member).version}
    for index, (name, overrides) in enumerate(VARIANTS.items()):
        if args.score_member is not None or (args.only and not any(word in name for word in args.only)):
            continue
        out = args.out / (f"variant{index}" + ("_full" if args.full_length else "") + ("_ft" if args.fine_tune else "")
                          + (f"_seed{args.seed}" if args.seed else ""))
        name = (name + (FULL_LENGTH_MARK if args.full_length else "") + (FINE_TUNE_MARK if args.fine_tune else "")
                + (f" [seed {args.seed}]" if args.seed else ""))
        if args.fine_tune and overrides.get("image_size", args.image_size) != args.image_size:
            print(f"skipped (not at the fine-tuned members' {args.image_size} px): {name}", flush=True)
            continue
        if "siim2020" in overrides:
            if args.siim2020 is None:
                print(f"skipped (needs --siim2020): {name}", flush=True)
                continue
            overrides = {**overrides, "siim2020": args.siim2020}
        if args.rescore_siim:
            if name in earlier and (out / FOLDS_FILE).is_file() and args.siim2020:
                level = earlier[name]["resolution"]["safety_net_level"]
                results[name] = {**earlier[name], "siim2020": held_out_siim(out, args.siim2020, level, args.seed, args.limit)}
                print(f"{name:80s} SIIM-ISIC 2020 {results[name]['siim2020']}", flush=True)
            continue
        schedule = (dict(FINE_TUNE, init_from=args.fine_tune) if args.fine_tune else FULL_LENGTH if args.full_length else
                    dict(epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, warmup_steps=60))
        settings = dict(isic2017=args.isic2017, image_size=args.image_size, threads=args.threads, folds=(0,),
                        limit=args.limit, seed=args.seed, **schedule)
        train(TrainConfig(data=args.data, out=out, **{**settings, **overrides}))
        results[name] = scored(out, overrides, args)
        print(f"{name:80s} HAM BA {results[name]['balanced_accuracy']:.3f}  AUC {results[name]['malignant_auc']:.3f}  "
              f"Jaccard {results[name]['mask_jaccard']:.3f} | ISIC 2017 val MEL AUC "
              f"{results[name]['external_melanoma_auc']:.3f}  BA {results[name]['external_balanced_accuracy']:.3f}",
              flush=True)
    protocol = {"image_size": args.image_size, "epochs": args.epochs, "steps_per_epoch": args.steps_per_epoch,
                "batch_size": TrainConfig.batch_size, "validation_fold": 0,
                "scored": "last epoch, EMA weights, identity view, highest probability",
                "external": "ISIC 2017 val (150 images: melanoma, nevus, seborrheic keratosis)"}
    if args.full_length or args.score_member is not None:
        protocol.update(epochs=FULL_LENGTH["epochs"], steps_per_epoch="a full pass over the training folds")
    if args.fine_tune:
        protocol.update(epochs=FINE_TUNE["epochs"], steps_per_epoch="a full pass over the training folds",
                        fine_tuned_from=str(args.fine_tune), fine_tuned_from_model=ModelCard.load(args.fine_tune).version,
                        lr=FINE_TUNE["lr"])
    if args.json:  # read again: another run may have written its variants since this one started
        latest = json.loads(args.json.read_text())["results"] if args.json.is_file() else {}
        args.json.write_text(json.dumps({"protocol": protocol, "results": {**latest, **results}}, indent=2) + "\n")


def scored(out: Path, overrides: dict, args: argparse.Namespace) -> dict:
    """A trained member (fold 0) in `out` on held-out HAM10000 (its last epoch, as training logged it), on ISIC 2017
    `val`, delivered at 1×–5×, and with --siim2020 on the SIIM-ISIC 2020 patients of fold 0."""
    last = json.loads((out / "history_fold0.jsonl").read_text().splitlines()[-1])
    data, predictions = external_predictions(out, args.isic2017, views=1)
    external = external_figures(data.labels, np.stack([p.probabilities for p in predictions]), DecisionRule(), 1)
    resolution = held_out_resolution(out, args.data, args.limit)
    result = {
        "overrides": {k: (str(v) if isinstance(v, Path) else v) for k, v in overrides.items()},
        **{k: last[f"val_{k}"] for k in ("balanced_accuracy", "malignant_auc", "mask_jaccard")},
        "external_melanoma_auc": external["melanoma_auc"],
        "external_balanced_accuracy": external["balanced_accuracy_argmax"],
        "resolution": resolution,
    }
    if args.siim2020:
        result["siim2020"] = held_out_siim(out, args.siim2020, resolution["safety_net_level"], args.seed, args.limit)
        print(f"    SIIM-ISIC 2020 held-out patients: {result['siim2020']}", flush=True)
    rows = resolution["rows"]
    print("    resolution (×: BA / AUC / benign above net): " + "  ".join(
        f"{r['factor']:g}×: {r['balanced_accuracy']:.3f} / {r['malignant_auc'] or float('nan'):.3f} / "
        f"{r['benign_above_net'] or float('nan'):.2f}"
        for r in rows), flush=True)
    return result


def member_folder(weights: Path, out: Path) -> Path:
    """`out` holding the ensemble's fold-0 member alone, with its card, folds and training log: scored like a
    variant trained here."""
    card = ModelCard.load(weights)
    (member,) = [m for m in card.members if m.validation_fold == 0]
    out.mkdir(parents=True, exist_ok=True)
    for name in (member.file, FOLDS_FILE, "history_fold0.jsonl"):
        shutil.copyfile(weights / name, out / name)
    dataclasses.replace(card, members=[member], structures=None).save(out)  # the diagnosis alone
    return out


def held_out_resolution(weights: Path, ham: Path, limit: int | None) -> dict:
    """The variant's member on its held-out fold, delivered at 1×–5× (one view, uncalibrated, highest probability)."""
    data = load_ham10000(ham, limit=limit, with_masks=False)
    held_out = np.flatnonzero(read_folds(weights / FOLDS_FILE, data.image_ids) == 0)
    predictor = Predictor.from_weights(weights, tta=False, gradcam=False, calibrate=False)
    labels = data.labels[held_out]
    metadata = [data.metadata[i] for i in held_out]

    def score(images: list[np.ndarray], positions) -> tuple[np.ndarray, np.ndarray]:
        probabilities = np.stack([p.probabilities for p in predictor.predict(images, [metadata[i] for i in positions])])
        return probabilities, probabilities.argmax(1)

    at_size = score([data.images[i] for i in held_out], range(len(held_out)))[0]
    malignant = is_malignant(labels)
    level = fit_safety_net(malignancy(at_size), malignant).threshold if malignant.any() else None
    rows = resolution_check([data.images[i] for i in held_out], labels, score, level)
    return {"rows": [r.to_dict() for r in rows], **spread(rows), "safety_net_level": level}


def held_out_siim(weights: Path, siim: Path, net_level: float | None, seed: int, limit: int | None) -> dict:
    """The variant's member on the SIIM-ISIC 2020 patients of fold 0 (one view, uncalibrated): the benign share at
    or above the safety net fitted on HAM10000 fold 0, and how many melanomas it keeps. The folds are the training
    run's where it used SIIM-ISIC 2020, else drawn the same way (by patient, stratified by melanoma, same seed)."""
    data = load_siim2020(siim, limit=limit)
    melanoma = data.labels == CLASSES.index("MEL")
    known = read_folds(weights / FOLDS_FILE, data.image_ids, missing=-2)
    folds = known if (known != -2).all() else make_folds(is_malignant(data.labels), data.lesion_ids, 5, seed)
    held_out = np.flatnonzero(folds == 0)
    predictor = Predictor.from_weights(weights, tta=False, gradcam=False, calibrate=False)
    risk = malignancy(np.stack([p.probabilities for p in predictor.predict(
        [data.images[i] for i in held_out], [data.metadata[i] for i in held_out])]))
    benign, kept = ~melanoma[held_out], melanoma[held_out]
    figures = {"source": f"{siim / SIIM2020_METADATA}", "patients": len(set(data.lesion_ids[held_out])),
               "images": len(held_out), "melanomas": int(kept.sum()), "benign_above_net": None,
               "melanomas_at_or_above_net": None,
               "melanoma_auc": float(roc_auc_score(kept, risk)) if 0 < kept.sum() < len(kept) else None}
    if net_level is not None:
        figures.update(benign_above_net=float((risk[benign] >= net_level).mean()),
                       melanomas_at_or_above_net=int((risk[kept] >= net_level).sum()))
    return figures


if __name__ == "__main__":
    main()
