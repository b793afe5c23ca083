"""Colour constancy (Shades of Gray) and the balanced decision rule."""

import numpy as np
import pytest

from conftest import synthetic_lesion, write_weights
from skinapp.inference import Predictor
from skinapp.metrics import balanced_accuracy
from skinapp.model.card import ModelCard
from skinapp.model.preprocess import Preprocessing, shades_of_gray, shades_of_gray_gains
from skinapp.trust.decision import DecisionRule, choose_tau, cross_fitted_calls, fit_decision_rule


def _cast(image: np.ndarray, gains=(1.0, 0.8, 0.6)) -> np.ndarray:
    return np.clip(image.astype(np.float32) * np.asarray(gains, np.float32), 0, 255).astype(np.uint8)


def test_shades_of_gray_removes_a_colour_cast():
    rng = np.random.default_rng(0)
    scene = rng.integers(40, 200, (60, 80, 3)).astype(np.uint8)
    corrected_plain = shades_of_gray(scene).astype(float)
    corrected_cast = shades_of_gray(_cast(scene)).astype(float)
    # the same scene under two illuminants comes out the same up to one brightness factor (the colour of the
    # illuminant is removed, its intensity kept)
    brightness = corrected_plain.mean() / corrected_cast.mean()
    assert np.abs(corrected_plain - corrected_cast * brightness).mean() < 2.0
    # while the uncorrected images differ by far more, channel by channel
    assert np.abs(scene.astype(float) - _cast(scene) * (scene.mean() / _cast(scene).mean())).mean() > 10
    # and a cast image's channel means are pulled together
    cast = _cast(scene)
    assert np.ptp(corrected_cast.reshape(-1, 3).mean(0)) < 0.3 * np.ptp(cast.reshape(-1, 3).mean(0))


def test_shades_of_gray_does_not_depend_on_the_image_size():
    image = _cast(synthetic_lesion(300, 400, seed=1)[0])
    small = image[::2, ::2].copy()
    assert np.allclose(shades_of_gray_gains(image), shades_of_gray_gains(small), rtol=0.02)


def test_shades_of_gray_leaves_black_frames_alone():
    assert np.array_equal(shades_of_gray(np.zeros((10, 10, 3), np.uint8)), np.zeros((10, 10, 3), np.uint8))


def test_preprocessing_round_trip_and_unknown_method():
    spec = Preprocessing(image_size=96, colour_constancy="shades_of_gray")
    assert Preprocessing.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="colour constancy"):
        Preprocessing(colour_constancy="retinex")


def test_predictor_follows_the_card_preprocessing(tmp_path):
    """A card that says Shades of Gray gets colour-corrected input; an older card without it does not."""
    folder = write_weights(tmp_path / "w")
    card = ModelCard.load(folder)
    assert card.preprocessing.colour_constancy == "none"  # cards from before colour constancy
    image = _cast(synthetic_lesion(64, 64, seed=2)[0])
    plain = Predictor.from_weights(folder, device="cpu", gradcam=False).predict([image])[0]
    on_corrected = Predictor.from_weights(folder, device="cpu", gradcam=False).predict([shades_of_gray(image)])[0]
    card.preprocessing = Preprocessing(card.config.image_size, "shades_of_gray")
    card.save(folder)
    corrected = Predictor.from_weights(folder, device="cpu", gradcam=False).predict([image])[0]
    assert np.allclose(corrected.probabilities, on_corrected.probabilities, atol=1e-6)
    assert not np.allclose(corrected.probabilities, plain.probabilities, atol=1e-4)


def _long_tailed(n: int = 3000, seed: int = 0):
    """A model that shares a common class's prior: the rare class is under-called by argmax."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(3, size=n, p=[0.8, 0.15, 0.05])
    logits = rng.normal(0, 1.0, (n, 3))
    logits[np.arange(n), labels] += 1.5
    logits += np.log([0.8, 0.15, 0.05])  # the training prior baked into the outputs
    p = np.exp(logits)
    return labels, p / p.sum(1, keepdims=True)


def test_prior_correction_raises_balanced_accuracy_and_keeps_probabilities():
    labels, p = _long_tailed()
    rule = fit_decision_rule(labels, p)
    assert rule.tau > 0.3
    assert balanced_accuracy(labels, rule.scores(p)) > balanced_accuracy(labels, p) + 0.05
    scores = rule.scores(p)
    assert np.allclose(scores.sum(1), 1) and scores.shape == p.shape
    assert (rule.call(p) == 2).sum() > (p.argmax(1) == 2).sum()  # the rare class is called more often
    assert DecisionRule.from_dict(rule.to_dict()) == rule
    assert not DecisionRule.from_dict({}).active and np.array_equal(DecisionRule().scores(p), p)


def test_tau_is_the_least_correction_within_one_standard_error_of_the_best():
    """Balanced accuracy is flat near its best τ: the rule takes the smallest τ it cannot tell from the best, which
    calls a rare diagnosis on common lesions least often."""
    labels, p = _long_tailed(seed=2)
    choice = choose_tau(labels, p)
    by_tau = dict(zip(choice.taus, choice.balanced_accuracy, strict=True))
    floor = by_tau[choice.best_tau] - choice.standard_error
    assert choice.standard_error > 0 and by_tau[choice.best_tau] == max(by_tau.values())
    assert by_tau[choice.tau] >= floor and choice.tau <= choice.best_tau
    assert all(score < floor for tau, score in by_tau.items() if tau < choice.tau)
    assert fit_decision_rule(labels, p).tau == choice.tau
    # the images of one lesion are resampled together: three copies of each image are not three times the evidence
    copies = np.repeat(np.arange(len(labels)), 3)
    as_lesions = choose_tau(labels[copies], p[copies], groups=copies)
    as_images = choose_tau(labels[copies], p[copies])
    assert as_lesions.standard_error > 1.3 * as_images.standard_error


def test_cross_fitted_rule_is_fitted_without_the_group_it_scores():
    labels, p = _long_tailed(seed=1)
    groups = np.arange(len(labels)) % 5
    calls, taus = cross_fitted_calls(labels, p, groups)
    assert len(taus) == 5 and calls.shape == labels.shape
    # honest figure: below or near the in-sample one, and still better than argmax
    in_sample = balanced_accuracy(labels, fit_decision_rule(labels, p).scores(p))
    honest = float(np.mean([(calls[labels == k] == k).mean() for k in range(3)]))
    assert balanced_accuracy(labels, p) < honest <= in_sample + 0.01


def test_predictor_applies_the_rule_to_the_top_call_only(tmp_path):
    folder = write_weights(tmp_path / "w")
    image = synthetic_lesion(64, 64, seed=3)[0]
    before = Predictor.from_weights(folder, device="cpu", gradcam=False).predict([image])[0]
    card = ModelCard.load(folder)
    # a prior that makes the currently most probable class look very common, so the rule calls another
    prior = np.full(7, 0.02)
    prior[before.predicted_index] = 0.88
    card.decision_rule = DecisionRule(tuple(prior / prior.sum()), 2.0)
    card.save(folder)
    after = Predictor.from_weights(folder, device="cpu", gradcam=False).predict([image])[0]
    assert np.allclose(after.probabilities, before.probabilities)  # what is shown as probability is unchanged
    assert after.most_probable_class == before.predicted_class
    assert after.predicted_class != before.predicted_class
    assert after.predicted_index == int(np.argmax(after.decision_scores))
