"""Resolution robustness (issue 26): the model's input should not depend on the size a file arrives at."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from skinapp.evaluation.resolution import RENDER_FACTORS, UPSCALING_KERNELS, rerendered, resolution_check, spread
from skinapp.model.preprocess import ANTIALIASED_RESIZE, BICUBIC_RESIZE, Preprocessing, resize_for_model
from skinapp.train.augment import AugmentConfig, augment, degrade


def textured_lesion(height: int, width: int, grain: float, seed: int = 0) -> np.ndarray:
    """A brown blob on skin with a fine random texture of `grain` px (a stand-in for a pigment network)."""
    rng = np.random.default_rng(seed)
    texture = cv2.GaussianBlur(rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0), grain)
    texture /= texture.std()
    yy, xx = np.mgrid[:height, :width]
    blob = np.exp(-(((xx - width / 2) / (0.3 * width)) ** 2 + ((yy - height / 2) / (0.3 * height)) ** 2))
    skin = np.stack([200 - 90 * blob, 170 - 100 * blob, 150 - 100 * blob], -1)
    return np.clip(skin + 25 * texture[..., None] * (0.5 + blob[..., None]), 0, 255).astype(np.uint8)


def input_difference(image: np.ndarray, other: np.ndarray, method: str) -> float:
    """Mean absolute difference (0–255) between the two images' model inputs."""
    a, b = resize_for_model(image, 160, method), resize_for_model(other, 160, method)
    return float(np.abs(a.astype(float) - b.astype(float)).mean())


def test_one_image_delivered_at_every_size_reaches_the_model_nearly_unchanged():
    image = textured_lesion(150, 200, grain=1.0)
    differences = {
        method: max(input_difference(image, rerendered(image, factor, kernel), method)
                    for factor in RENDER_FACTORS for kernel in UPSCALING_KERNELS)
        for method in (ANTIALIASED_RESIZE, BICUBIC_RESIZE)}
    assert differences[ANTIALIASED_RESIZE] <= 3.5
    assert differences[ANTIALIASED_RESIZE] < differences[BICUBIC_RESIZE]  # the old resize aliased


def test_a_sharper_delivery_of_the_same_scene_does_not_alias():
    """The scene captured at 1200×900, delivered at 300×225: between 1× and 2× the model's size, where the old
    bicubic resize aliased. The antialiased input is close to the scene shrunk straight to the input."""
    scene = textured_lesion(900, 1200, grain=3.0)
    ideal = cv2.resize(scene, (160, 160), interpolation=cv2.INTER_AREA).astype(float)
    delivered = cv2.resize(scene, (300, 225), interpolation=cv2.INTER_AREA)
    error = {m: float(np.abs(resize_for_model(delivered, 160, m).astype(float) - ideal).mean())
             for m in (ANTIALIASED_RESIZE, BICUBIC_RESIZE)}
    assert error[ANTIALIASED_RESIZE] < 0.8 * error[BICUBIC_RESIZE]


def test_the_card_names_its_resize_and_an_unknown_one_is_refused():
    assert Preprocessing().resize == BICUBIC_RESIZE  # cards from before 0.3 keep the resize they were measured with
    with pytest.raises(ValueError, match="unknown resize"):
        Preprocessing(resize="nearest, whatever")
    spec = Preprocessing.from_dict({**Preprocessing(resize=ANTIALIASED_RESIZE).to_dict(), "image_size": 96})
    assert spec.model_images([textured_lesion(150, 200, 1.0)]).shape == (1, 96, 96, 3)


def test_rerendered_images_come_back_through_the_importers_decoder_at_display_size():
    image = textured_lesion(150, 200, grain=1.0)
    assert rerendered(image, 1.0, "bicubic").shape == image.shape
    assert np.array_equal(rerendered(image, 1.0, "bicubic"), image)  # lossless
    assert rerendered(image, 5.0, "nearest").shape == (750, 1000, 3)
    assert max(rerendered(textured_lesion(300, 400, 1.0), 5.0, "lanczos").shape[:2]) == 1024  # the display limit


def test_resolution_check_reports_each_factor_and_the_spread():
    images = [textured_lesion(60, 80, 1.0, seed) for seed in range(6)]
    labels = np.array([0, 1, 2, 0, 1, 1])  # MEL, NV, BCC, ...

    def score(rendered, positions):
        # a scorer that reads only the image's mean brightness: it must not depend on the delivery size
        brightness = np.array([im.mean() for im in rendered])
        probabilities = np.full((len(rendered), 7), 0.01)
        probabilities[:, 0] = brightness / 255
        probabilities /= probabilities.sum(1, keepdims=True)
        return probabilities, probabilities.argmax(1)

    rows = resolution_check(images, labels, score, net_level=0.5, factors=(1.0, 2.0))
    assert [r.factor for r in rows] == [1.0, 2.0]
    assert spread(rows)["malignant_auc_range"] <= 0.01


def test_training_views_are_shrunk_without_aliasing_and_degraded_on_request():
    rng = np.random.default_rng(0)
    image = textured_lesion(900, 1200, grain=3.0)
    mask = np.zeros((900, 1200), np.uint8)
    mask[300:600, 400:800] = 1
    view, view_mask = augment(image, mask, 128, rng, AugmentConfig(antialias=True, degrade_p=1.0))
    assert view.shape == (128, 128, 3) and view.dtype == np.uint8
    assert view_mask is not None and view_mask.shape == (128, 128) and 0 < view_mask.mean() < 1
    for seed in range(8):
        degraded = degrade(textured_lesion(150, 200, 1.0), np.random.default_rng(seed))
        assert degraded.shape == (150, 200, 3) and degraded.dtype == np.uint8


def test_the_resolution_experiments_are_shown_as_means_over_their_seeds(tmp_path):
    import json

    from skinapp.reporting.card_sections import RESOLUTION_ABLATION_FILE, resolution_ablation_section

    def run(ba, auc, mel, spread):
        return {"balanced_accuracy": ba, "malignant_auc": auc, "mask_jaccard": 0.8, "external_melanoma_auc": mel,
                "resolution": {"balanced_accuracy_range": spread, "malignant_auc_range": 0.001}}

    (tmp_path / RESOLUTION_ABLATION_FILE).write_text(json.dumps({"protocol": {}, "results": {
        "recipe": run(0.70, 0.86, 0.70, 0.01), "recipe [seed 1]": run(0.60, 0.82, 0.80, 0.03),
        "0.2 recipe": run(0.68, 0.88, 0.77, 0.02)}}))
    lines = resolution_ablation_section(tmp_path)
    assert "| recipe | 2 | 0.650 | 0.840 | 0.750 | 0.020 | 0.001 |" in lines
    assert "| 0.2 recipe | 1 | 0.680 | 0.880 | 0.770 | 0.020 | 0.001 |" in lines
    assert resolution_ablation_section(tmp_path / "nothing") == []
