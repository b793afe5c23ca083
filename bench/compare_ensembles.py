"""Two ensembles with the same folds side by side — the shipped one and a candidate (for instance its members
fine-tuned with another recipe) — scored alike before the candidate's longer `evaluate`:

    python bench/compare_ensembles.py --candidate weights/candidates/robust_finetune --data ../shared/data/ham10000 \
        --isic2017 ../shared/data/isic2017 [--siim2020 ../shared/data/siim_isic_2020_jpeg] [--weights weights] \
        [--json weights/compare_candidates.json]

Identity view, uncalibrated, highest probability, metadata given: each member on its own held-out HAM10000 fold
(malignant AUC and balanced accuracy per fold, then pooled out of fold), the whole ensemble on ISIC 2017 `val`
(melanoma AUC), and with --siim2020 on the SIIM-ISIC 2020 images: the benign share at or above a safety net fitted
out of fold (95 % of malignant lesions), the melanomas kept and the melanoma AUC. Where neither ensemble trained on
these patients, each scores every image as one ensemble; where one did, both score each patient with their member
that holds out the patient's fold (the trained one's folds), so that no figure comes from a member that saw the
patient and both rows are scored alike.
Results are keyed by each folder as given (relative to the checkout where it lies inside it); the model card's
"Candidate ensembles" reads the --json file.
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
from skinapp.evaluation.evaluate import out_of_fold_predictions
from skinapp.evaluation.held_out import by_own_member, member_predictors
from skinapp.evaluation.screening import trained_on_siim2020
from skinapp.inference.predictor import Predictor
from skinapp.metrics import balanced_accuracy, is_malignant, malignancy
from skinapp.model.card import ModelCard
from skinapp.train.data import load_ham10000, load_isic2017, load_siim2020, read_folds
from skinapp.train.loop import FOLDS_FILE
from skinapp.trust.safety_net import fit_safety_net
from skinapp.vocab import CLASSES

MEL = CLASSES.index("MEL")


def scored(weights: Path, ham, isic_val, siim, siim_folds: np.ndarray | None) -> dict:
    """One ensemble's figures; `siim_folds` (one per SIIM-ISIC 2020 image) where either ensemble trained on those
    patients: each is then scored by the member holding out its fold."""
    card = ModelCard.load(weights)
    oof = out_of_fold_predictions(weights, ham, views=1)
    labels = oof["label"].map(CLASSES.index).to_numpy()
    probabilities = oof[list(CLASSES)].to_numpy()
    risk, malignant = malignancy(probabilities), is_malignant(labels)
    per_fold = {}
    for fold in sorted(oof["fold"].unique()):
        rows = (oof["fold"] == fold).to_numpy()
        per_fold[str(fold)] = {"malignant_auc": float(roc_auc_score(malignant[rows], risk[rows])),
                               "balanced_accuracy": balanced_accuracy(labels[rows], probabilities[rows])}
    net = fit_safety_net(risk, malignant).threshold
    assert net is not None, "HAM10000 out of fold holds malignant lesions, so the net has a level"
    predictor = Predictor.from_weights(weights, tta=False, gradcam=False, calibrate=False)
    isic = load_isic2017(isic_val, "val")
    external_p = np.stack([p.probabilities for p in predictor.predict(isic.images, isic.metadata)])
    figures = {
        "model": card.version, "identity": card.identity, "recipe": card.training.get("recipe", {}),
        **({"soup_of": [i["folder"] for i in card.training["soup_of"]]} if card.training.get("soup_of") else {}),
        "per_fold": per_fold,
        "out_of_fold": {"malignant_auc": float(roc_auc_score(malignant, risk)),
                        "balanced_accuracy": balanced_accuracy(labels, probabilities),
                        "benign_at_or_above_net": float((risk[~malignant] >= net).mean())},
        "isic2017_val_melanoma_auc": float(roc_auc_score(isic.labels == MEL, external_p[:, MEL])),
    }
    if siim is None:
        return figures
    if siim_folds is None:
        siim_risk = malignancy(np.stack([p.probabilities for p in predictor.predict(siim.images, siim.metadata)]))
        figures["siim2020_all_images"] = screening(siim.labels, siim_risk, net)
    else:
        raws = by_own_member(member_predictors(weights, card, views=1), siim_folds, siim.images, siim.metadata)
        rows = np.asarray([i for i, raw in enumerate(raws) if raw is not None], np.int64)
        siim_risk = malignancy(np.stack([raw.probabilities for raw in raws if raw is not None]))
        figures["siim2020_held_out_patients"] = {**screening(siim.labels[rows], siim_risk, net),
                                                 "patients": len(set(siim.lesion_ids[rows].tolist()))}
    return figures


def screening(labels: np.ndarray, risk: np.ndarray, net: float) -> dict:
    melanoma = labels == MEL
    return {"benign_at_or_above_net": float((risk[~melanoma] >= net).mean()),
            "melanomas_at_or_above_net": int((risk[melanoma] >= net).sum()), "melanomas": int(melanoma.sum()),
            "melanoma_auc": float(roc_auc_score(melanoma, risk))}


def siim_folds_of(ensembles: list[Path], siim) -> np.ndarray | None:
    """The fold of each SIIM-ISIC 2020 image in the ensemble(s) trained on those patients; None if neither was."""
    trained = [w for w in ensembles if trained_on_siim2020(ModelCard.load(w))]
    if not trained:
        return None
    folds = [read_folds(w / FOLDS_FILE, siim.image_ids) for w in trained]
    if any(not np.array_equal(folds[0], f) for f in folds[1:]):
        raise SystemExit("both ensembles trained on SIIM-ISIC 2020 patients, with other folds: not comparable")
    return folds[0]


def named(folder: Path) -> str:
    """The folder as the card names it: relative to the checkout where it lies inside it."""
    checkout = Path(__file__).resolve().parents[1]
    path = folder.resolve()
    return str(path.relative_to(checkout)) if path.is_relative_to(checkout) else str(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidate", type=Path, required=True)
    parser.add_argument("--weights", type=Path, help="the ensemble it is compared with (default: the shipped one)")
    parser.add_argument("--data", type=Path, required=True, help="HAM10000 folder")
    parser.add_argument("--isic2017", type=Path, required=True)
    parser.add_argument("--siim2020", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    shipped = args.weights or weights_dir()
    held_out = [sorted(m.validation_fold for m in ModelCard.load(w).members) for w in (shipped, args.candidate)]
    if held_out[0] != held_out[1]:
        raise SystemExit(f"the two ensembles' members hold out folds {held_out[0]} and {held_out[1]}: not comparable")
    ham = load_ham10000(args.data, with_masks=False)
    if not np.array_equal(read_folds(shipped / FOLDS_FILE, ham.image_ids, missing=-1),
                          read_folds(args.candidate / FOLDS_FILE, ham.image_ids, missing=-1)):
        raise SystemExit(f"{args.candidate} and {shipped} hold out other HAM10000 folds: their members are not comparable")
    siim = load_siim2020(args.siim2020) if args.siim2020 else None
    siim_folds = siim_folds_of([shipped, args.candidate], siim) if siim is not None else None
    results = {named(w): scored(w, ham, args.isic2017, siim, siim_folds) for w in (shipped, args.candidate)}
    for name, r in results.items():
        print(f"{name}: {r['model']}")
        print("  per fold malignant AUC " + "  ".join(f"{k}: {v['malignant_auc']:.3f}" for k, v in r["per_fold"].items()))
        print(f"  out of fold: malignant AUC {r['out_of_fold']['malignant_auc']:.3f}, balanced accuracy "
              f"{r['out_of_fold']['balanced_accuracy']:.3f}, benign at or above the net "
              f"{r['out_of_fold']['benign_at_or_above_net']:.1%}; ISIC 2017 val melanoma AUC "
              f"{r['isic2017_val_melanoma_auc']:.3f}")
        for key in ("siim2020_all_images", "siim2020_held_out_patients"):
            if key not in r:
                continue
            s = r[key]
            print(f"  SIIM-ISIC 2020 ({key}): benign at or above the net {s['benign_at_or_above_net']:.1%}, melanomas "
                  f"{s['melanomas_at_or_above_net']} of {s['melanomas']}, melanoma AUC {s['melanoma_auc']:.3f}")
    if args.json:
        args.json.write_text(json.dumps({"scored": "identity view, uncalibrated, metadata given; the net fitted out "
                                                   "of fold at 95 % of malignant lesions",
                                         "siim2020": "held-out patients, each by its fold's member" if siim_folds is not
                                                     None else "every image, each ensemble whole",
                                         "results": results},
                                        indent=2) + "\n")


if __name__ == "__main__":
    main()
