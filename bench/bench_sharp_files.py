"""Sharp files: does an ensemble give the same answer for a file delivered larger than its input and for the same
picture shrunk cleanly to its input first? The card's resolution check enlarges HAM10000 images (no new detail);
this one starts from sharp 256-px files (ISIC 2017 `val`, SIIM-ISIC 2020), as a clinic's 300-px copy would be
sharper than HAM10000's 200×150 px.

    python bench/bench_sharp_files.py --isic2017 ../shared/data/isic2017 [--siim2020 ../shared/data/siim_isic_2020_jpeg] \
        [--weights weights] [--candidate weights/retired/0.2.1 ...] [--json weights/sharp_files.json]

Every ensemble identity view, uncalibrated, highest probability, metadata given; an ensemble of the bicubic resize
also with the antialiased resize (a change of preprocessing alone). Each image analysed as delivered and after an
area-averaged shrink to the ensemble's input size (which its own resize then leaves alone): melanoma AUC (P(MEL))
and balanced accuracy of the call over the classes present, at each; the share of images whose call changes
between the two and the median change of the malignancy probability. The model card's "Sharp files" reads --json.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2
import numpy as np
from compare_ensembles import named  # bench/ is the script's own folder on sys.path
from sklearn.metrics import roc_auc_score

from skinapp.config import weights_dir
from skinapp.inference.predictor import Predictor
from skinapp.metrics import balanced_accuracy, malignancy
from skinapp.model.preprocess import ANTIALIASED_RESIZE
from skinapp.train.data import LabelledImages, load_isic2017, load_siim2020
from skinapp.vocab import CLASSES

MEL = CLASSES.index("MEL")


def resize_name(predictor: Predictor) -> str:
    return "antialiased" if predictor.preprocessing.resize == ANTIALIASED_RESIZE else "bicubic"


def shrunk(images: list[np.ndarray], size: int) -> list[np.ndarray]:
    """Each image area-averaged to size × size: the clean picture the model's input should equal."""
    return [cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in images]


def agreement(labels: np.ndarray, delivered: np.ndarray, clean: np.ndarray) -> dict[str, float]:
    diagnosed = labels < len(CLASSES)   # SIIM-ISIC's unbiopsied lesions carry the partial label 'benign' only

    def at(p):
        return {"melanoma_auc": float(roc_auc_score(labels == MEL, p[:, MEL])),
                "balanced_accuracy": balanced_accuracy(labels, p) if diagnosed.all() else None}
    return {"n": len(labels), "as_delivered": at(delivered), "shrunk_first": at(clean),
            "calls_changed": float((delivered.argmax(1) != clean.argmax(1)).mean()),
            "median_malignancy_change": float(np.median(np.abs(malignancy(delivered) - malignancy(clean))))}


def scored(predictor: Predictor, sets: dict[str, LabelledImages]) -> dict[str, dict]:
    results = {}
    for name, data in sets.items():
        delivered = np.stack([p.probabilities for p in predictor.predict(data.images, data.metadata)])
        clean = np.stack([p.probabilities for p in predictor.predict(shrunk(data.images, predictor.image_size),
                                                                      data.metadata)])
        results[name] = agreement(data.labels, delivered, clean)
    return results


def runs_of(folders: list[Path]) -> list[tuple[dict, Predictor]]:
    """Each ensemble as its card says, and an ensemble of the bicubic resize also with the antialiased one."""
    runs = []
    for folder in folders:
        predictor = Predictor.from_weights(folder, tta=False, gradcam=False, calibrate=False)
        runs.append(({"folder": named(folder), "resize": resize_name(predictor), "as_its_card_says": True}, predictor))
        if predictor.preprocessing.resize != ANTIALIASED_RESIZE:
            swapped = copy.copy(predictor)
            swapped.preprocessing = dataclasses.replace(predictor.preprocessing, resize=ANTIALIASED_RESIZE)
            runs.append(({"folder": named(folder), "resize": "antialiased", "as_its_card_says": False}, swapped))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, help="the shipped ensemble (default: weights/)")
    parser.add_argument("--candidate", type=Path, nargs="*", default=[], help="other ensembles scored alike")
    parser.add_argument("--isic2017", type=Path, required=True)
    parser.add_argument("--siim2020", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sets = {"isic2017_val": load_isic2017(args.isic2017, "val")}
    if args.siim2020:
        sets["siim2020"] = load_siim2020(args.siim2020)
    results = []
    for run, predictor in runs_of([args.weights or weights_dir(), *args.candidate]):
        run.update(model=predictor.card.version, **scored(predictor, sets))
        results.append(run)
        print(f"{run['model']} ({run['folder']}), {run['resize']} resize"
              + ("" if run["as_its_card_says"] else " instead of its card's"))
        for set_name in sets:
            r = run[set_name]
            d, c = r["as_delivered"], r["shrunk_first"]
            print(f"  {set_name} (n={r['n']}): melanoma AUC {d['melanoma_auc']:.3f} as delivered, "
                  f"{c['melanoma_auc']:.3f} shrunk first; "
                  + (f"balanced accuracy {d['balanced_accuracy']:.3f} / {c['balanced_accuracy']:.3f}; "
                     if d["balanced_accuracy"] is not None else "")
                  + f"calls changed {r['calls_changed']:.1%}; median malignancy change {r['median_malignancy_change']:.3f}")
    if args.json:
        args.json.write_text(json.dumps({"scored": "identity view, uncalibrated, highest probability, metadata given",
                                         "delivered": "256 px files", "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
