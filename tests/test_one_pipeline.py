"""One post-processing chain (issue 25): what `evaluate` measures is what the app and `predict` show."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from conftest import synthetic_lesion, write_weights
from skinapp.evaluation.checks import TrustFit, assessed_cases
from skinapp.inference import Predictor
from skinapp.inference.assessment import Assessor
from skinapp.inference.postprocess import PostProcessing
from skinapp.inference.prediction import Prediction
from skinapp.model.card import Calibration, ModelCard
from skinapp.trust.conformal import ConformalSets
from skinapp.trust.decision import DecisionRule
from skinapp.trust.flags import needs_manual_check
from skinapp.trust.risk import RiskTiers
from skinapp.trust.safety_net import SafetyNet
from skinapp.vocab import CLASSES, Metadata, Site


@pytest.fixture(scope="module")
def fitted_weights(tmp_path_factory) -> Path:
    """An untrained network with a card as `evaluate` leaves it: calibration, a balanced rule, sets and a net."""
    folder = write_weights(tmp_path_factory.mktemp("fitted"), members=2)
    card = ModelCard.load(folder)
    card.calibration = Calibration(1.7)
    card.decision_rule = DecisionRule((0.1, 0.6, 0.05, 0.04, 0.15, 0.03, 0.03), 0.6)
    card.conformal = ConformalSets(threshold=0.95)
    card.safety_net = SafetyNet(threshold=0.25)
    card.risk_tiers = RiskTiers(high=0.5)
    card.tta_views = 4
    card.save(folder)
    return folder


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return a is not None and b is not None and np.allclose(np.asarray(a, float), np.asarray(b, float), atol=1e-6)
    return a == b


def test_the_app_and_evaluate_make_the_same_prediction_field_by_field(fitted_weights):
    image, _ = synthetic_lesion(90, 120, seed=3)
    meta = Metadata(55, "female", Site("posterior torso"))
    shown = Predictor.from_weights(fitted_weights, device="cpu", gradcam=False).predict([image], [meta])[0]
    raw = Predictor.from_weights(fitted_weights, device="cpu", gradcam=False, calibrate=False).infer([image], [meta])[0]
    card = ModelCard.load(fitted_weights)
    measured = PostProcessing.from_card(card).finish(raw, card.version)
    assert shown.prediction_set is not None and shown.suspicious is not None and shown.decision_scores is not None
    assert shown.risk_tier is not None
    for field in dataclasses.fields(Prediction):
        assert _same(getattr(shown, field.name), getattr(measured, field.name)), field.name
    assert np.array_equal(shown.outline.mask, measured.outline.mask)


def test_evaluate_raises_the_flags_the_app_raises(fitted_weights):
    image, _ = synthetic_lesion(90, 120, seed=5)
    card = ModelCard.load(fitted_weights)
    predictor = Predictor.from_weights(fitted_weights, device="cpu", gradcam=False)
    shown = predictor.predict([image], [Metadata()])[0]
    assessor = Assessor.from_weights(fitted_weights, card)
    flags = assessor.assess(shown, image)
    raw = Predictor.from_weights(fitted_weights, device="cpu", gradcam=False, calibrate=False).infer([image])[0]
    fit = TrustFit(PostProcessing.from_card(card), card.policy)
    row = assessed_cases([raw], [image], np.array([CLASSES.index("MEL")]), fit, [assessor]).iloc[0]
    assert row["call"] == shown.predicted_index
    assert row["flagged"] == needs_manual_check(flags)
    assert set(row["flag_codes"].split()) == {f.code for f in flags if f.serious}
    assert row["suspicious"] == shown.suspicious and row["risk_tier"] == shown.risk_tier
    assert [c for c, inside in zip(CLASSES, row["in_set"], strict=True) if inside] == sorted(
        shown.prediction_set or (), key=CLASSES.index)
    assert row["malignancy"] == pytest.approx(shown.malignancy)


def test_without_calibration_the_chain_is_the_identity(fitted_weights):
    image, _ = synthetic_lesion(90, 120, seed=7)
    predictor = Predictor.from_weights(fitted_weights, device="cpu", gradcam=False, calibrate=False)
    raw = predictor.infer([image])[0]
    plain = predictor.predict([image])[0]
    assert np.allclose(plain.probabilities, raw.probabilities)
    assert plain.predicted_index == int(np.argmax(raw.probabilities))
    assert plain.prediction_set is None and plain.suspicious is None and plain.decision_scores is None
