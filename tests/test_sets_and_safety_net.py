"""Conformal prediction sets, the melanoma safety net and the shifted copy `evaluate` builds, on synthetic data
whose truth is known."""

import cv2
import numpy as np
import pytest

from skinapp.evaluation.shift import SHIFTS, shift_image, shifted_copy
from skinapp.trust.conformal import ConformalSets, cross_fitted_masks, fit_conformal, nonconformity, set_report
from skinapp.trust.safety_net import SafetyNet, cross_fitted_suspicious, fit_safety_net, net_report
from skinapp.vocab import CLASSES


def _model_outputs(n: int, seed: int, sharpness: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities of a model whose labels are really drawn from them (so it is calibrated)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, sharpness, (n, len(CLASSES)))
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(len(CLASSES), p=p) for p in probabilities])
    return probabilities, labels


def test_the_set_holds_the_truth_at_the_promised_rate_on_new_data():
    fit_p, fit_y = _model_outputs(3000, 0)
    sets = fit_conformal(fit_p, fit_y, coverage=0.9)
    new_p, new_y = _model_outputs(3000, 1)
    masks = sets.masks(new_p)
    report = set_report(masks, new_y)
    assert 0.88 <= report["coverage"] <= 0.93
    assert 1 < report["mean_set_size"] < len(CLASSES)
    assert masks[np.arange(len(new_p)), new_p.argmax(1)].all()  # the top call is always in its set
    honest = cross_fitted_masks(fit_p, fit_y, groups=np.arange(3000) // 3)
    assert 0.88 <= honest[np.arange(3000), fit_y].mean() <= 0.93


def test_a_confident_prediction_gets_one_diagnosis_an_unsure_one_several_in_order():
    sets = ConformalSets(threshold=0.85)
    assert sets.prediction_set(np.array([0.02, 0.9, 0.02, 0.02, 0.02, 0.01, 0.01])) == ("NV",)
    unsure = np.array([0.35, 0.4, 0.02, 0.02, 0.19, 0.01, 0.01])
    assert sets.prediction_set(unsure) == ("NV", "MEL", "BKL")
    assert ConformalSets.from_dict(sets.to_dict()) == sets
    assert not ConformalSets.from_dict({}).active
    assert nonconformity(unsure[None])[0, 1] == pytest.approx(0.2)  # top class: half its own score


def test_the_safety_net_keeps_the_target_share_of_malignant_cases_and_says_what_it_costs():
    rng = np.random.default_rng(4)
    malignant = rng.random(4000) < 0.2
    malignancy = np.clip(np.where(malignant, rng.beta(5, 2, 4000), rng.beta(2, 5, 4000)), 0, 1)
    net = fit_safety_net(malignancy, malignant, sensitivity=0.95)
    kept = malignancy[malignant] >= net.threshold
    assert kept.mean() >= 0.95
    assert (malignancy[malignant] >= np.nextafter(net.threshold, 1)).mean() < 0.95 or kept.mean() == 1.0  # the largest such
    report = net_report(net.suspicious(malignancy), malignant)
    assert report["malignant_sensitivity"] >= 0.95 and 0 < report["benign_marked"] < 1
    honest = cross_fitted_suspicious(malignancy, malignant, groups=np.arange(4000) // 2)
    assert net_report(honest, malignant)["malignant_sensitivity"] >= 0.93
    assert net.suspicious(0.99) is True and net.suspicious(0.0) is False
    assert SafetyNet.from_dict(net.to_dict()) == net and SafetyNet().suspicious(0.99) is False


def test_the_shifted_copy_is_reproducible_keeps_the_size_and_changes_the_image():
    rng = np.random.default_rng(5)
    image = cv2.GaussianBlur(rng.integers(0, 256, (150, 200, 3)).astype(np.uint8), (0, 0), 1.0)  # some texture
    for name, shift in SHIFTS.items():
        changed = shift(image, np.random.default_rng(0))
        assert changed.shape == image.shape and changed.dtype == np.uint8, name
        assert np.abs(changed.astype(int) - image).mean() > 1, name
    first, names = shifted_copy([image, image], seed=7)
    again, _ = shifted_copy([image, image], seed=7)
    assert all(len(n) == 2 for n in names) and all((a == b).all() for a, b in zip(first, again, strict=True))
    assert shift_image(image, rng)[0].shape == image.shape
