"""Graded malignancy risk (issue 27): High, Cannot exclude and Low, fitted on held-out lesions."""

from __future__ import annotations

import numpy as np
import pytest

from skinapp.inference.postprocess import PostProcessing
from skinapp.inference.prediction import RawOutputs
from skinapp.trust.risk import CANNOT_EXCLUDE, HIGH, LOW, RiskTiers, cross_fitted_tiers, fit_risk_tiers, tier_report
from skinapp.trust.safety_net import SafetyNet, fit_safety_net
from skinapp.vocab import CLASSES


def _held_out(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    malignant = rng.random(n) < 0.2
    malignancy = np.clip(np.where(malignant, rng.beta(3, 2, n), rng.beta(2, 5, n)), 0, 1)
    return malignancy, malignant, np.arange(n).astype(str)


def test_high_holds_at_most_the_promised_share_of_benign_lesions():
    malignancy, malignant, _ = _held_out()
    tiers = fit_risk_tiers(malignancy, malignant)
    assert (malignancy[~malignant] >= tiers.high).mean() <= 0.10
    # and it is the lowest such level: the next benign lesion below it would break the promise
    below = np.sort(malignancy[~malignant][malignancy[~malignant] < tiers.high])[-1]
    assert (malignancy[~malignant] >= below).mean() > 0.10


def test_every_lesion_gets_one_tier_and_suspicious_means_not_low():
    malignancy, malignant, _ = _held_out()
    net = fit_safety_net(malignancy, malignant)
    tiers = fit_risk_tiers(malignancy, malignant)
    assigned = tiers.tiers(malignancy, net)
    assert set(assigned) <= {HIGH, CANNOT_EXCLUDE, LOW}
    assert np.array_equal(assigned != LOW, net.suspicious(malignancy))
    assert (assigned[malignant] != LOW).mean() >= 0.95
    assert RiskTiers().tier(0.9, net) is None and tiers.tier(0.9, SafetyNet()) is None  # no tiers without both levels


def test_cross_fitted_tiers_and_their_report():
    malignancy, malignant, groups = _held_out()
    assigned = cross_fitted_tiers(malignancy, malignant, groups)
    report = tier_report(assigned, malignant)
    assert sum(report[t]["malignant_share"] for t in (HIGH, CANNOT_EXCLUDE, LOW)) == pytest.approx(1.0)
    assert sum(report[t]["benign_share"] for t in (HIGH, CANNOT_EXCLUDE, LOW)) == pytest.approx(1.0)
    assert report[HIGH]["benign_share"] <= 0.12  # about the promised 10 %, held out
    assert report[HIGH]["number_needed_to_excise"] == pytest.approx(1 / report[HIGH]["ppv"])
    assert report[HIGH]["ppv"] > report[CANNOT_EXCLUDE]["ppv"] > report[LOW]["ppv"]


def test_the_chain_grades_each_prediction():
    net, tiers = SafetyNet(threshold=0.2), RiskTiers(high=0.6)
    chain = PostProcessing(safety_net=net, risk_tiers=tiers)
    for malignant_probability, expected in ((0.05, LOW), (0.3, CANNOT_EXCLUDE), (0.8, HIGH)):
        p = np.full(len(CLASSES), (1 - malignant_probability) / 4)
        p[[CLASSES.index("MEL"), CLASSES.index("BCC"), CLASSES.index("AKIEC")]] = malignant_probability / 3
        raw = RawOutputs(p[None], np.zeros((4, 4)), np.zeros((len(CLASSES), 4, 4)), np.zeros(8), None, (40, 40))
        prediction = chain.finish(raw, "test")
        assert prediction.risk_tier == expected and prediction.suspicious == (expected != LOW)


def test_tiers_travel_in_the_card_and_change_the_identity(tiny_weights, tmp_path):
    import dataclasses
    import shutil

    from skinapp.model.card import ModelCard

    shutil.copytree(tiny_weights, tmp_path / "w")
    card = ModelCard.load(tmp_path / "w")
    graded = dataclasses.replace(card, safety_net=SafetyNet(threshold=0.2), risk_tiers=RiskTiers(high=0.55))
    assert graded.identity != dataclasses.replace(card, safety_net=SafetyNet(threshold=0.2)).identity
    graded.save(tmp_path / "w")
    assert ModelCard.load(tmp_path / "w").risk_tiers == RiskTiers(high=0.55)
