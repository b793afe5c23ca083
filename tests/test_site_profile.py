"""Site profiles (issue 26): the ensemble's batch-norm statistics re-estimated on a clinic's own unlabelled images."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest
import torch

from conftest import synthetic_lesion, write_weights
from skinapp.cli import main
from skinapp.inference import Predictor
from skinapp.inference.site import MIN_SITE_IMAGES, SiteProfile, SiteProfileError


def _site_images(n: int, seed: int = 0) -> list[np.ndarray]:
    """Another clinic: the same kind of lesions under a bluish, darker light."""
    images = [synthetic_lesion(72, 96, seed=seed + i)[0] for i in range(n)]
    return [np.clip(im.astype(np.float32) * (0.75, 0.85, 1.1), 0, 255).astype(np.uint8) for im in images]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return write_weights(tmp_path_factory.mktemp("site_weights"), members=2)


@pytest.mark.slow  # 50 images through two members, several times over
def test_a_profile_is_estimated_without_touching_the_model_and_changes_what_it_says(weights, tmp_path):
    predictor = Predictor.from_weights(weights, device="cpu", gradcam=False)
    before = {k: v.clone() for k, v in predictor.models[0].state_dict().items()}
    images = _site_images(MIN_SITE_IMAGES)
    plain = predictor.predict(images[:4])
    profile = predictor.estimate_site_profile(images, name="Clinic B")
    assert all(torch.equal(before[k], v) for k, v in predictor.models[0].state_dict().items())  # left as it was
    assert profile.n_images == MIN_SITE_IMAGES and profile.model_identity == predictor.card.identity
    profile.save(tmp_path / "clinic_b.safetensors")
    loaded = SiteProfile.load(tmp_path / "clinic_b.safetensors")
    assert loaded.identity == profile.identity and loaded.name == "Clinic B"

    plain_identity = predictor.identity
    predictor.adapt_to_site(loaded)
    adapted = predictor.predict(images[:4])
    assert predictor.identity != plain_identity  # results with and without the profile are told apart
    assert "Clinic B" in adapted[0].model_version and loaded.identity[:12] in adapted[0].model_version
    assert not np.allclose(plain[0].probabilities, adapted[0].probabilities)


def test_too_few_images_are_refused_in_plain_words(weights):
    predictor = Predictor.from_weights(weights, device="cpu", gradcam=False)
    with pytest.raises(SiteProfileError, match=f"at least {MIN_SITE_IMAGES}"):
        predictor.estimate_site_profile(_site_images(MIN_SITE_IMAGES - 1))


def test_a_profile_made_for_another_model_is_refused(weights, tmp_path):
    other = write_weights(tmp_path / "other", members=2, seed=7)
    profile = Predictor.from_weights(other, device="cpu", gradcam=False).estimate_site_profile(_site_images(50))
    with pytest.raises(SiteProfileError, match="another model"):
        Predictor.from_weights(weights, device="cpu", gradcam=False).adapt_to_site(profile)


def _write_inputs(folder, n):
    folder.mkdir()
    for i, image in enumerate(_site_images(n, seed=100)):
        cv2.imwrite(str(folder / f"lesion{i:03d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return folder


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow  # 50 images through two members, several times over
def test_predict_adapts_on_its_inputs_keeps_the_profile_and_reuses_it(weights, tmp_path, capsys):
    inputs = _write_inputs(tmp_path / "site", MIN_SITE_IMAGES)
    profile = tmp_path / "site.safetensors"
    adapted_csv, reused_csv, plain_csv = tmp_path / "adapted.csv", tmp_path / "reused.csv", tmp_path / "plain.csv"
    assert main(["predict", str(inputs), "--weights", str(weights), "--out", str(adapted_csv), "--format", "full",
                 "--no-tta", "--site-adapt", "--save-profile", str(profile)]) == 0
    assert main(["predict", str(inputs), "--weights", str(weights), "--out", str(reused_csv), "--format", "full",
                 "--no-tta", "--site-profile", str(profile)]) == 0
    assert main(["predict", str(inputs), "--weights", str(weights), "--out", str(plain_csv), "--format", "full",
                 "--no-tta"]) == 0
    adapted, reused, plain = _rows(adapted_csv), _rows(reused_csv), _rows(plain_csv)
    assert [r["MEL"] for r in adapted] == [r["MEL"] for r in reused]
    assert {r["model_id"] for r in adapted} == {r["model_id"] for r in reused} != {r["model_id"] for r in plain}
    assert "site profile" in adapted[0]["model_version"] and "site profile" not in plain[0]["model_version"]


def test_predict_refuses_to_adapt_on_too_few_inputs_and_writes_nothing(weights, tmp_path, capsys):
    inputs = _write_inputs(tmp_path / "few", 5)
    out = tmp_path / "out.csv"
    assert main(["predict", str(inputs), "--weights", str(weights), "--out", str(out), "--site-adapt"]) == 2
    assert not out.exists()
    assert f"at least {MIN_SITE_IMAGES}" in capsys.readouterr().err


def test_save_profile_without_site_adapt_is_refused(weights, tmp_path, capsys):
    inputs = _write_inputs(tmp_path / "some", 2)
    assert main(["predict", str(inputs), "--weights", str(weights), "--out", str(tmp_path / "o.csv"),
                 "--save-profile", str(tmp_path / "p.safetensors")]) == 2
    assert "--site-adapt" in capsys.readouterr().err and not (tmp_path / "o.csv").exists()
