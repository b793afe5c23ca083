"""End to end on a tiny synthetic data set shaped like HAM10000: train writes weights the evaluator scores."""

import json
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

import skinapp.train.loop as loop
from conftest import synthetic_lesion
from skinapp.cli import main
from skinapp.model.card import ModelCard
from skinapp.model.checkpoint import load_ensemble
from skinapp.model.measured import SCORED_BY_ENSEMBLE, SCORED_HELD_OUT
from skinapp.reporting.model_card import render
from skinapp.train.config import members_digest
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


@pytest.fixture(scope="module")
def fake_isic2017(tmp_path_factory):
    """Shaped like ../shared/data/isic2017: square images, mel / nv / bkl, a train and a val split, no masks."""
    root = tmp_path_factory.mktemp("isic2017")
    (root / "images").mkdir()
    rows = []
    for i in range(24):
        image, _ = synthetic_lesion(64, 64, seed=100 + i)
        image_id = f"ISIC_{i:07d}"
        cv2.imwrite(str(root / "images" / f"{image_id}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        rows.append({"image_id": image_id, "dx": ("mel", "nv", "bkl")[i % 3], "dx_original": "x",
                     "split": "val" if i >= 15 else "train", "age": 50, "sex": "male", "anatom_site_general": ""})
    pd.DataFrame(rows).to_csv(root / "ISIC2017_metadata.csv", index=False)
    return root


@pytest.fixture(scope="module")
def fake_siim2020(tmp_path_factory):
    """Shaped like ../shared/data/siim_isic_2020_jpeg: several images per patient, mostly unbiopsied benign."""
    root = tmp_path_factory.mktemp("siim2020")
    (root / "images").mkdir()
    rows = []
    for i in range(30):
        image, _ = synthetic_lesion(64, 64, seed=200 + i)
        name = f"ISIC_{9000000 + i}"
        cv2.imwrite(str(root / "images" / f"{name}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        diagnosis = "melanoma" if i % 10 == 0 else "nevus" if i % 10 == 1 else "unknown"
        rows.append({"image_name": name, "patient_id": f"IP_{i // 3}", "sex": "female", "age_approx": 45.0,
                     "anatom_site_general_challenge": "torso", "diagnosis": diagnosis,
                     "benign_malignant": "malignant" if diagnosis == "melanoma" else "benign",
                     "target": int(diagnosis == "melanoma")})
    pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)
    return root


TRAIN = ["--epochs", "2", "--batch-size", "8", "--image-size", "64", "--n-folds", "3", "--steps-per-epoch", "2"]


@pytest.mark.slow
def test_ensemble_trains_on_both_sources_resumes_and_is_checked_externally(fake_ham, fake_isic2017, tmp_path,
                                                                         monkeypatch, capsys):
    weights = tmp_path / "weights"
    args = ["train", "--data", str(fake_ham), "--isic2017", str(fake_isic2017), "--out", str(weights), *TRAIN]

    # a member interrupted after its first epoch …
    real_validate, calls = loop.validate, []

    def interrupted(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_validate(*a, **k)

    monkeypatch.setattr(loop, "validate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        main([*args, "--folds", "0"])
    assert (weights / "fold0.resume.pt").is_file() and not (weights / "fold0.safetensors").exists()
    monkeypatch.setattr(loop, "validate", real_validate)
    # … continues from there, and the next call trains only the member that is missing
    assert main([*args, "--folds", "0"]) == 0
    assert "resuming after epoch 1" in capsys.readouterr().out
    history = [json.loads(line) for line in (weights / "history_fold0.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2]
    assert not (weights / "fold0.resume.pt").exists()
    first_sha = ModelCard.load(weights).members[0].sha256
    assert main([*args, "--folds", "0", "1"]) == 0
    card = ModelCard.load(weights)
    assert [m.validation_fold for m in card.members] == [0, 1] and card.members[0].sha256 == first_sha
    assert card.version.endswith("+lite0-64px+isic2017-sog-2fold")
    assert card.preprocessing.colour_constancy == "shades_of_gray"
    assert card.training["images_per_source"] == {"ham10000": 42, "isic2017": 15}  # never the 9 val images
    assert load_file(str(weights / "fold0.safetensors"))["class_logits.weight"].dtype.is_floating_point
    assert str(load_file(str(weights / "fold0.safetensors"))["class_logits.weight"].dtype) == "torch.float16"
    # a different recipe in the same folder is refused rather than mixed into one ensemble
    assert main(["train", "--data", str(fake_ham), "--out", str(weights), *TRAIN, "--folds", "2"]) == 2
    assert "another recipe" in capsys.readouterr().err

    out = tmp_path / "eval"
    assert main(["evaluate", "--data", str(fake_ham), "--isic2017", str(fake_isic2017), "--weights", str(weights),
                 "--out", str(out), "--update-card"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    folds = pd.read_csv(weights / "folds.csv")
    assert set(pd.read_csv(out / "oof_predictions.csv")["image_id"]) == set(folds.loc[folds["fold"] < 2, "image_id"])
    rule = metrics["decision_rule"]
    assert 0 <= rule["balanced_accuracy_balanced_rule"] <= 1 and len(rule["cross_fitted_taus"]) == 2
    external = metrics["external"]
    assert external["n_images"] == 9 and set(external["classes_present"]) == {"MEL", "NV", "BKL"}
    assert set(pd.read_csv(out / "external_isic2017_val.csv")["image_id"]) == {f"ISIC_{i:07d}" for i in range(15, 24)}
    card = ModelCard.load(weights)
    assert card.decision_rule.tau == rule["tau"] and len(card.decision_rule.prior) == len(CLASSES)
    markdown = (weights / "MODEL_CARD.md").read_text()
    assert "External check: ISIC 2017 `val`" in markdown and f"{rule['balanced_accuracy_balanced_rule']:.3f}" in markdown
    assert "Shades of Gray" in markdown and "the last kept (nothing chosen on the held-out fold)" in markdown
    assert "ISIC 2017 (Codella" in markdown and all(m.sha256 in markdown for m in card.members)


@pytest.mark.slow
def test_a_screening_population_joins_training_with_its_patients_kept_together(fake_ham, fake_siim2020, tmp_path):
    weights = tmp_path / "weights"
    base = ["train", "--data", str(fake_ham), "--out", str(weights), *TRAIN, "--epochs", "1", "--folds", "0"]
    assert main(base) == 0  # a folder whose folds.csv predates the screening images …
    ham_folds = pd.read_csv(weights / "folds.csv")
    assert main([*base, "--siim2020", str(fake_siim2020)]) == 2  # … is another recipe: refused, folds untouched
    assert pd.read_csv(weights / "folds.csv").equals(ham_folds)

    fresh = tmp_path / "with_siim"
    assert main(["train", "--data", str(fake_ham), "--siim2020", str(fake_siim2020), "--out", str(fresh), *TRAIN,
                 "--epochs", "1", "--folds", "0"]) == 0
    card = ModelCard.load(fresh)
    assert card.training["images_per_source"] == {"ham10000": 42, "siim2020": 30}
    assert card.training["recipe"]["with_siim2020"] is True and "+siim2020" in card.version
    folds = pd.read_csv(fresh / "folds.csv")
    assert len(folds) == 72 and (folds.groupby("lesion_id")["fold"].nunique() == 1).all()  # a patient in one fold
    siim = folds[folds["image_id"].str.startswith("ISIC_9")]
    assert set(siim["fold"]) == {0, 1, 2}
    history = [json.loads(line) for line in (fresh / "history_fold0.jsonl").read_text().splitlines()]
    assert 0 <= history[-1]["val_balanced_accuracy"] <= 1  # scored on HAM images only: no partial label in it

    # evaluate scores the member trained with the patients only on its own held-out patients …
    quick = ["--shifted", "0", "--resolution", "0", "--no-tta", "--siim2020", str(fake_siim2020), "--update-card"]
    assert main(["evaluate", "--data", str(fake_ham), "--weights", str(fresh), "--out", str(tmp_path / "e1"), *quick]) == 0
    screening = ModelCard.load(fresh).metrics.screening
    held_out = siim[siim["fold"] == 0]
    assert screening is not None and screening.scored_by == SCORED_HELD_OUT
    assert screening.images == len(held_out) and screening.melanomas == held_out["image_id"].isin(
        [f"ISIC_{9000000 + i}" for i in range(0, 30, 10)]).sum()
    assert screening.benign + screening.melanomas == screening.images
    assert "## A screening population (SIIM-ISIC 2020, held-out patients)" in (fresh / "MODEL_CARD.md").read_text()
    # … and a model that never saw them on every image
    assert main(["evaluate", "--data", str(fake_ham), "--weights", str(weights), "--out", str(tmp_path / "e2"), *quick]) == 0
    screening = ModelCard.load(weights).metrics.screening
    assert screening is not None and screening.scored_by == SCORED_BY_ENSEMBLE
    assert (screening.images, screening.melanomas) == (30, 3)
    assert "## A screening population (SIIM-ISIC 2020, never trained on)" in (weights / "MODEL_CARD.md").read_text()


@pytest.mark.slow
def test_members_fine_tuned_from_an_ensemble_start_from_its_members_and_keep_its_folds(fake_ham, fake_siim2020,
                                                                                        tmp_path, capsys):
    start = tmp_path / "start"
    assert main(["train", "--data", str(fake_ham), "--out", str(start), *TRAIN, "--epochs", "1", "--folds", "0", "1"]) == 0
    tuned = tmp_path / "tuned"
    args = ["train", "--data", str(fake_ham), "--siim2020", str(fake_siim2020), "--out", str(tuned), *TRAIN,
            "--epochs", "1", "--init-from", str(start), "--folds", "1", "--warmup-steps", "0"]
    assert main([*args, "--lr", "0"]) == 0  # nothing learnt: the start is what is saved
    before, after, other = (load_file(str(w / f"fold{f}.safetensors")) for w, f in ((start, 1), (tuned, 1), (start, 0)))
    convolutions = [k for k, v in before.items() if v.ndim == 4]
    assert all(torch.equal(before[k], after[k]) for k in convolutions)
    assert not all(torch.equal(other[k], after[k]) for k in convolutions)  # the member of its own fold, not another
    folds = pd.read_csv(tuned / "folds.csv").set_index("image_id")["fold"]
    started_with = pd.read_csv(start / "folds.csv").set_index("image_id")["fold"]
    assert folds[started_with.index].equals(started_with) and len(folds) == 72  # kept, and the patients added
    card = ModelCard.load(tuned)
    assert card.training["recipe"]["init_from"] == members_digest(start) and card.version.endswith("-finetuned-1fold")
    assert card.training["recipe"]["warmup_steps"] == 0 < len(members_digest(start))
    assert card.training["started_from"] == {"version": ModelCard.load(start).version,
                                             "members_digest": members_digest(start)}
    assert f"started from the member of model {ModelCard.load(start).version}" in render(card, tuned)
    assert main([*args[:6], str(tmp_path / "wider"), *args[7:], "--image-size", "96"]) == 2
    assert "holds lite0 members at 64 px" in capsys.readouterr().err
    other_folds = tmp_path / "other_folds"
    other_folds.mkdir()
    started_with.rename("fold").reset_index().assign(fold=lambda f: (f["fold"] + 1) % 3).to_csv(
        other_folds / "folds.csv", index=False)
    assert main([*args[:6], str(other_folds), *args[7:]]) == 2
    assert "holds other folds than" in capsys.readouterr().err
    assert main([*args[:6], str(tmp_path / "fold2"), *args[7:-4], "--folds", "2"]) == 2  # no member held it out
    assert "has no member that held out fold 2" in capsys.readouterr().err


@pytest.mark.slow
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
    assert ModelCard.load(weights).metrics.to_dict() == metrics  # the card holds what metrics.json holds
    markdown = (weights / "MODEL_CARD.md").read_text()
    assert f"| {metrics['with_metadata']['balanced_accuracy']:.3f} |" in markdown
    assert card.members[0].sha256 in markdown
    # graded risk and the resolution check come with every evaluation
    evaluated = ModelCard.load(weights)
    assert evaluated.risk_tiers.active and evaluated.risk_tiers == ModelCard.load(weights).risk_tiers
    tiers = metrics["risk_tiers"]["tiers"]
    assert set(tiers) == {"high", "cannot_exclude", "low"}
    assert sum(t["n_images"] for t in tiers.values()) == len(held_out)
    assert [row["factor"] for row in metrics["resolution"]["rows"]] == [1.0, 1.5, 2.0, 3.0, 5.0]
    assert "Graded malignancy risk" in markdown and "Does the size a file arrives at matter?" in markdown


def test_training_refuses_a_folder_without_metadata(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "w")]) == 2
    assert "HAM10000_metadata.csv not found" in capsys.readouterr().err


def test_structure_labels_join_training_without_the_held_out_fold(fake_ham, fake_isic2017, tmp_path):
    from skinapp.train.structures import read_structure_labels
    from skinapp.vocab import STRUCTURES

    isic = tmp_path / "isic2017"
    isic.mkdir()
    (isic / "images").symlink_to(fake_isic2017 / "images")
    (isic / "ISIC2017_metadata.csv").write_text((fake_isic2017 / "ISIC2017_metadata.csv").read_text())
    rows = [f"ISIC_{i:07d},{i % 2},0,{2 * (i % 3 == 0)},{int(i % 4 == 0)},0,{int(i % 5 == 0)},0,{i % 2},0"
            for i in range(15)]  # the train split's images only
    (isic / "structures_isic2016_weak.csv").write_text(
        "image_id,globular,homogeneous,reticular,streaks,blue_white_veil,vascular,hypopigmentation,regression,"
        "unspecific\n" + "\n".join(rows) + "\n")
    (tmp_path / "out").mkdir()
    cfg = loop.TrainConfig(data=fake_ham, out=tmp_path / "out", isic2017=isic, structure_weight=0.5,
                           structure_holdout_fold=0, seed=3)
    data, _ = loop.load_training_data(cfg)
    labels = read_structure_labels(isic)
    withheld = {labels.image_ids[k] for k in labels.held_out(3, 0)}
    labelled = {i for i, row in zip(data.image_ids, data.structures, strict=True) if not np.isnan(row).any()}
    assert labelled == set(labels.image_ids) - withheld and len(withheld) == 3
    assert data.structures.shape == (len(data), len(STRUCTURES))
    assert cfg.recipe()["structure_holdout_fold"] == 0 and "structure_weight" not in loop.TrainConfig(fake_ham, tmp_path).recipe()


@pytest.mark.slow
def test_a_soup_averages_fine_tunes_of_one_start_fold_by_fold_and_refuses_what_does_not_average(fake_ham, tmp_path,
                                                                                                capsys):
    start = tmp_path / "start"
    assert main(["train", "--data", str(fake_ham), "--out", str(start), *TRAIN, "--epochs", "1", "--folds", "0", "1"]) == 0
    tuned = {}
    for lr in ("1e-3", "3e-4"):
        tuned[lr] = tmp_path / f"tuned_{lr}"
        assert main(["train", "--data", str(fake_ham), "--out", str(tuned[lr]), *TRAIN, "--epochs", "1", "--folds",
                     "0", "1", "--init-from", str(start), "--warmup-steps", "0", "--lr", lr]) == 0
    soup = tmp_path / "soup"
    assert main(["soup", str(tuned["1e-3"]), str(tuned["3e-4"]), "--out", str(soup)]) == 0
    card = ModelCard.load(soup)
    assert [m.validation_fold for m in card.members] == [0, 1] and card.version.endswith("-soup-2fold")
    for fold in (0, 1):
        a, b, mixed = (load_file(str(w / f"fold{fold}.safetensors")) for w in (*tuned.values(), soup))
        for key in a:
            if a[key].is_floating_point():
                expected = ((a[key].float() + b[key].float()) / 2).to(a[key].dtype)
                assert torch.equal(mixed[key], expected), key
            else:
                assert torch.equal(mixed[key], a[key])
        assert any(not torch.equal(a[k], mixed[k]) for k in a if a[k].ndim == 4)  # neither ingredient as it was
    assert card.training["recipe"]["lr"] == [1e-3, 3e-4] and card.training["recipe"]["soup"] == "uniform"
    assert card.training["soup_varies"] == {"lr": [1e-3, 3e-4]}
    assert "each member is the weight-by-weight mean of the members of the same fold of 2 ensembles" in render(card, soup)
    assert "but for lr (0.001 / 0.0003)" in render(card, soup)
    assert [s["members_digest"] for s in card.training["soup_of"]] == [members_digest(t) for t in tuned.values()]
    assert (soup / "folds.csv").read_bytes() == (start / "folds.csv").read_bytes()
    assert len(load_ensemble(soup)[0]) == 2  # each file matches the card
    capsys.readouterr()
    assert main(["soup", str(tuned["1e-3"]), str(start), "--out", str(tmp_path / "no_start")]) == 2
    assert "not fine-tuned from the same start" in capsys.readouterr().err
    assert main(["soup", str(tuned["1e-3"]), "--out", str(tmp_path / "alone")]) == 2
    assert "at least two ensembles" in capsys.readouterr().err
    assert main(["soup", str(tuned["1e-3"]), str(tuned["3e-4"]), "--out", str(soup)]) == 2
    assert "is not an empty folder" in capsys.readouterr().err
    assert not (tmp_path / "no_start").exists() and not (tmp_path / "alone").exists()
    torn = tmp_path / "torn"  # a member file that is not what its card says: nothing half-made is left
    shutil.copytree(tuned["3e-4"], torn)
    (torn / "fold1.safetensors").write_bytes(b"not safetensors")
    assert main(["soup", str(tuned["1e-3"]), str(torn), "--out", str(tmp_path / "half")]) == 2
    assert "does not match the model card" in capsys.readouterr().err and not (tmp_path / "half").exists()
