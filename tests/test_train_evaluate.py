"""End to end on a tiny synthetic data set shaped like HAM10000: train writes weights the evaluator scores."""

import json

import cv2
import numpy as np
import pandas as pd
import pytest

from conftest import synthetic_lesion
from skinapp.cli import main
from skinapp.model.checkpoint import ModelCard, load_ensemble
from skinapp.vocab import CLASSES


@pytest.fixture(scope="module")
def fake_ham(tmp_path_factory):
    root = tmp_path_factory.mktemp("ham")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    rows = []
    for i in range(42):
        image, mask = synthetic_lesion(60, 80, seed=i)
        image_id = f"FAKE_{i:04d}"
        cv2.imwrite(str(root / "images" / f"{image_id}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(root / "masks" / f"{image_id}_segmentation.png"), mask.astype(np.uint8))
        rows.append({"lesion_id": f"L{i // 2}", "image_id": image_id, "dx": CLASSES[(i // 2) % 7].lower(), "dx_type": "histo",
                     "age": "" if i % 5 == 0 else 30 + i, "sex": "unknown" if i % 4 == 0 else "female", "localization": "back"})
    pd.DataFrame(rows).to_csv(root / "HAM10000_metadata.csv", index=False)
    return root


def test_train_then_evaluate(fake_ham, tmp_path):
    weights = tmp_path / "weights"
    assert main(["train", "--data", str(fake_ham), "--out", str(weights), "--epochs", "2", "--batch-size", "8",
                 "--image-size", "64", "--n-folds", "3", "--steps-per-epoch", "2"]) == 0
    card = ModelCard.load(weights)
    assert [m.validation_fold for m in card.members] == [0]
    history = [json.loads(line) for line in (weights / "history_fold0.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2]
    assert {"val_balanced_accuracy", "val_malignant_auc", "val_mask_jaccard", "train_loss"} <= set(history[0])
    folds = pd.read_csv(weights / "folds.csv")
    assert (folds.groupby("lesion_id")["fold"].nunique() == 1).all()
    load_ensemble(weights)

    out = tmp_path / "eval"
    assert main(["evaluate", "--data", str(fake_ham), "--weights", str(weights), "--out", str(out), "--update-card"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    held_out = set(folds.loc[folds["fold"] == 0, "image_id"])
    oof = pd.read_csv(out / "oof_predictions.csv")
    assert set(oof["image_id"]) == held_out
    assert metrics["with_metadata"]["n_images"] == len(held_out)
    assert 0 <= metrics["mask"]["jaccard"] <= 1
    for picture in ("confusion.png", "roc.png"):
        assert (out / picture).read_bytes()[:4] == b"\x89PNG"
    assert "balanced accuracy" in (out / "report.md").read_text()
    assert ModelCard.load(weights).metrics["with_metadata"]["balanced_accuracy"] == metrics["with_metadata"]["balanced_accuracy"]
    markdown = (weights / "MODEL_CARD.md").read_text()
    assert f"| {metrics['with_metadata']['balanced_accuracy']:.3f} |" in markdown
    assert card.members[0].sha256 in markdown


def test_training_refuses_a_folder_without_metadata(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "w")]) == 2
    assert "HAM10000_metadata.csv not found" in capsys.readouterr().err
