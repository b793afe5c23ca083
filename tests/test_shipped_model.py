"""The shipped model on real data it never trained on. Skipped where ../shared/data or weights/ is absent. The tests
that run the model are marked `slow`; those that read ../shared/data are marked `data` (conftest.py)."""

import io
import json

import cv2
import numpy as np
import pandas as pd
import pytest
from isic_challenge_scoring import ClassificationMetric, ClassificationScore

from conftest import held_out_member
from skinapp.cli import main
from skinapp.inference import Predictor
from skinapp.metrics import jaccard
from skinapp.model.card import ModelCard
from skinapp.reporting.card_sections import TARGETS
from skinapp.vocab import CLASSES, Metadata


@pytest.fixture(scope="module")
def held_out(shared_data, shipped_weights):
    """Four images of each class from the validation fold of the first member (seen by every other member)."""
    card = ModelCard.load(shipped_weights)
    folds = pd.read_csv(shipped_weights / "folds.csv")
    table = pd.read_csv(shared_data / "ham10000" / "HAM10000_metadata.csv").merge(folds, on=["image_id", "lesion_id"])
    table = table[table["fold"] == card.members[0].validation_fold]
    return table.groupby("dx").head(4).reset_index(drop=True)


def test_card_is_evaluated_and_consistent(shipped_weights):
    card = ModelCard.load(shipped_weights)
    assert card.metrics, "the shipped model card has no measured metrics"
    assert card.metrics.model_version == card.version and card.metrics.with_metadata is not None
    markdown = (shipped_weights / "MODEL_CARD.md").read_text()
    assert f"{card.metrics.with_metadata.balanced_accuracy:.3f}" in markdown


def test_the_temperature_lowers_the_log_loss_of_held_out_lesions(shared_data, shipped_weights):
    """What temperature scaling minimises, cross-fitted by lesion on the out-of-fold predictions `evaluate` wrote:
    it must not raise the log-loss (the binned calibration error may rise where the ensemble was already close)."""
    from skinapp.trust.calibration import cross_fitted

    oof = pd.read_csv(shipped_weights / "evaluation" / "oof_predictions.csv")
    lesions = pd.read_csv(shared_data / "ham10000" / "HAM10000_metadata.csv").set_index("image_id")["lesion_id"]
    labels, raw = oof["label"].map(CLASSES.index).to_numpy(), oof[list(CLASSES)].to_numpy()
    honest = cross_fitted(raw, labels, lesions[oof["image_id"]].to_numpy())

    def log_loss(p: np.ndarray) -> float:
        return float(-np.log(np.clip(p[np.arange(len(labels)), labels], 1e-12, 1.0)).mean())

    assert log_loss(honest) < log_loss(raw)


@pytest.mark.slow
def test_held_out_images(shared_data, shipped_weights, held_out):
    predictor, _, _ = held_out_member(shipped_weights)
    root = shared_data / "ham10000"
    images = [cv2.cvtColor(cv2.imread(str(root / "images" / f"{i}.jpg")), cv2.COLOR_BGR2RGB) for i in held_out["image_id"]]
    metadata = [Metadata.parse(a, s, site)
                for a, s, site in zip(held_out["age"], held_out["sex"], held_out["localization"], strict=True)]
    results = predictor.predict(images, metadata)
    labels = held_out["dx"].str.upper().map(CLASSES.index).to_numpy()
    predicted = np.array([r.predicted_index for r in results])
    recall = [np.mean(predicted[labels == k] == k) for k in range(len(CLASSES))]
    assert np.mean(recall) >= 0.5, f"balanced accuracy {np.mean(recall):.2f} on 28 held-out images"
    malignant = np.isin(labels, [CLASSES.index(c) for c in ("MEL", "BCC", "AKIEC")])
    scores = np.array([r.malignancy for r in results])
    assert scores[malignant].mean() > scores[~malignant].mean() + 0.2
    masks = [cv2.imread(str(root / "masks" / f"{i}_segmentation.png"), cv2.IMREAD_GRAYSCALE) > 0 for i in held_out["image_id"]]
    assert np.mean([jaccard(r.outline.mask, m) for r, m in zip(results, masks, strict=True)]) > 0.65


@pytest.mark.slow  # a couple of seconds or more: the full run has it
def test_shipped_balanced_accuracy_matches_the_isic_scorer(shared_data, shipped_weights):
    oof = pd.read_csv(shipped_weights / "evaluation" / "oof_predictions.csv")
    truth = pd.DataFrame({"image": oof["image_id"], **{c: (oof["label"] == c).astype(float) for c in CLASSES}})
    prediction = pd.DataFrame({"image": oof["image_id"], **{c: oof[c] for c in CLASSES}})
    score = ClassificationScore.from_stream(io.StringIO(truth.to_csv(index=False)), io.StringIO(prediction.to_csv(index=False)),
                                            ClassificationMetric.BALANCED_ACCURACY)
    metrics = json.loads((shipped_weights / "evaluation" / "metrics.json").read_text())
    assert np.isclose(score.to_dict()["overall"], metrics["with_metadata"]["balanced_accuracy"], atol=1e-6)
    ham = pd.read_csv(shared_data / "ham10000" / "HAM10000_metadata.csv").set_index("image_id")
    assert (ham.loc[oof["image_id"], "dx"].str.upper().to_numpy() == oof["label"].to_numpy()).all()


@pytest.mark.slow
def test_predict_real_dicoms(shared_data, shipped_weights, tmp_path):
    folder = shared_data / "siim_isic_2020"
    files = sorted((folder / "dicom").glob("*.dcm"))[:2]
    out = tmp_path / "pred.csv"
    assert main(["predict", *map(str, files), "--out", str(out), "--format", "full", "--metadata", str(folder / "metadata.csv"),
                 "--masks-dir", str(tmp_path / "masks"), "--weights", str(shipped_weights)]) == 0
    rows = pd.read_csv(out)
    assert list(rows["image"]) == [f.stem for f in files]
    assert rows["patient_id"].str.startswith("IP_").all()
    assert np.allclose(rows[list(CLASSES)].sum(axis=1), 1, atol=1e-4)
    mask = cv2.imread(str(tmp_path / "masks" / f"{files[0].stem}_mask.png"), cv2.IMREAD_GRAYSCALE)
    assert mask.shape == (4000, 6000)


def test_calibration_and_flags_were_fitted_by_evaluate(shipped_weights):
    card = ModelCard.load(shipped_weights)
    calibration, flags = card.metrics.calibration, card.metrics.flags
    assert calibration is not None and flags is not None and flags.accuracy_flagged is not None
    assert card.temperature == calibration.temperature != 1.0
    (target,) = [t for t in TARGETS if t.name == "ECE after calibration"]
    assert calibration.ece_after <= target.bound
    assert flags.flagged_share <= 0.2 + 1e-3 and flags.accuracy_unflagged > flags.accuracy_flagged
    markdown = (shipped_weights / "MODEL_CARD.md").read_text()
    assert f"{calibration.ece_after:.3f} after" in markdown and f"{flags.errors_caught:.1%}" in markdown
    if calibration.ece_after > calibration.ece_before:  # the card says why, not only the figures
        assert "higher: the temperature minimises the log-loss, not this binned error" in markdown
    external = card.metrics.check_sets["isic2017_val"].ece  # the temperature's reach beyond HAM10000 is stated too
    assert f"ISIC 2017 val {external:.3f}" in markdown
    for picture in ("reliability.png", "coverage.png"):
        assert (shipped_weights / "evaluation" / picture).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_foreign_images_are_flagged_and_clean_real_cases_are_quiet(shared_data, shipped_weights, held_out):
    from skimage import data

    from skinapp.inference.assessment import Assessor
    from skinapp.trust.flags import needs_manual_check

    predictor = Predictor.from_weights(shipped_weights, device="cpu", gradcam=False)
    assessor = Assessor.from_weights(shipped_weights, predictor.card)
    member, member_assessor, _ = held_out_member(shipped_weights, gradcam=False)
    foreign = {
        "cat": data.chelsea(),
        "chest x-ray (grey)": np.repeat(data.camera()[..., None], 3, axis=-1),
        "blank frame": np.full((150, 200, 3), (200, 150, 140), np.uint8),
        "coffee": data.coffee(),
        "rocket": data.rocket(),
    }
    for (name, image), prediction in zip(foreign.items(), predictor.predict(list(foreign.values())), strict=True):
        flags = assessor.assess(prediction, image)
        codes = {f.code for f in flags}
        if name == "rocket":
            # Known limit: with ISIC 2017 `train` in the training distribution (without it half of another clinic's
            # dermoscopy looked foreign), this colourful photograph sits among dermoscopy images in the encoder's
            # feature space. It is not passed off as clean, but no hard flag catches it (model card, Limits).
            assert flags, codes
            continue
        assert needs_manual_check(flags) and codes & {"out_of_distribution", "not_dermoscopy", "blank_image"}, (name, codes)
    assert "out_of_distribution" in {f.code for f in assessor.assess(predictor.predict([foreign["cat"]])[0], foreign["cat"])}

    root = shared_data / "ham10000"
    images = [cv2.cvtColor(cv2.imread(str(root / "images" / f"{i}.jpg")), cv2.COLOR_BGR2RGB) for i in held_out["image_id"]]
    metadata = [Metadata.parse(a, s, site)
                for a, s, site in zip(held_out["age"], held_out["sex"], held_out["localization"], strict=True)]
    labels = held_out["dx"].str.upper().to_numpy()
    clean = [(image, p) for image, p, label in zip(images, member.predict(images, metadata), labels, strict=True)
             if p.predicted_class == label and p.probabilities.max() >= 0.9]
    assert len(clean) >= 5
    flagged = [needs_manual_check(member_assessor.assess(p, image)) for image, p in clean]
    assert sum(flagged) <= len(clean) // 5, f"{sum(flagged)} of {len(clean)} confident, correct held-out cases flagged"


@pytest.mark.slow
def test_the_flags_keep_their_rate_on_a_shifted_copy_of_held_out_images(shared_data, shipped_weights):
    """Another clinic's camera, light and software (the shifts `evaluate` uses): the share of cases flagged for a
    manual check must not collapse, as it did with the flags fitted to HAM10000's quirks."""
    from skinapp.evaluation.shift import shifted_copy
    from skinapp.trust.flags import needs_manual_check

    card = ModelCard.load(shipped_weights)
    folds = pd.read_csv(shipped_weights / "folds.csv")
    table = pd.read_csv(shared_data / "ham10000" / "HAM10000_metadata.csv").merge(folds, on=["image_id", "lesion_id"])
    table = table[table["fold"] == card.members[0].validation_fold].sample(200, random_state=0)
    root = shared_data / "ham10000" / "images"
    images = [cv2.cvtColor(cv2.imread(str(root / f"{i}.jpg")), cv2.COLOR_BGR2RGB) for i in table["image_id"]]
    metadata = [Metadata.parse(a, s, site) for a, s, site in zip(table["age"], table["sex"], table["localization"], strict=True)]
    shifted, _ = shifted_copy(images, seed=11)
    predictor, assessor, _ = held_out_member(shipped_weights, gradcam=False)

    def flagged_share(pictures: list[np.ndarray]) -> float:
        predictions = predictor.predict(pictures, metadata)
        return float(np.mean([needs_manual_check(assessor.assess(p, image)) for p, image in zip(predictions, pictures,
                                                                                                strict=True)]))

    original, changed = flagged_share(images), flagged_share(shifted)
    assert 0.10 <= original <= 0.35, original
    assert 0.10 <= changed <= 0.40 and changed >= 0.7 * original, (original, changed)
