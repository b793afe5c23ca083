import io

import numpy as np
from isic_challenge_scoring import ClassificationMetric, ClassificationScore

from skinapp.metrics import (
    balanced_accuracy,
    expected_calibration_error,
    jaccard,
    malignancy,
    malignant_auc,
    sensitivity_at_specificity,
)
from skinapp.vocab import CLASSES


def _csv(rows: np.ndarray) -> io.StringIO:
    lines = ["image," + ",".join(CLASSES)] + [f"ISIC_{i:07d}," + ",".join(f"{v:.8f}" for v in row) for i, row in enumerate(rows)]
    return io.StringIO("\n".join(lines) + "\n")


def test_balanced_accuracy_matches_the_isic_challenge_scorer():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 7, 300)
    # a mediocre, skewed classifier: right 55 % of the time, otherwise random
    probabilities = rng.dirichlet(np.ones(7), 300)
    right = rng.random(300) < 0.55
    probabilities[right, labels[right]] += 1
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    truth = np.eye(7)[labels]
    score = ClassificationScore.from_stream(_csv(truth), _csv(probabilities), ClassificationMetric.BALANCED_ACCURACY)
    ours = balanced_accuracy(labels, probabilities)
    assert 0.4 < ours < 0.8
    assert np.isclose(score.to_dict()["overall"], ours, atol=1e-9)


def test_malignancy_and_auc():
    probabilities = np.zeros((4, 7))
    probabilities[:, CLASSES.index("NV")] = [0.9, 0.8, 0.2, 0.1]
    probabilities[:, CLASSES.index("MEL")] = 1 - probabilities[:, CLASSES.index("NV")]
    labels = np.array([CLASSES.index(c) for c in ("NV", "NV", "MEL", "BCC")])
    assert np.allclose(malignancy(probabilities), [0.1, 0.2, 0.8, 0.9])
    assert malignant_auc(labels, probabilities) == 1.0
    assert sensitivity_at_specificity(labels, probabilities, 0.9) == 1.0
    assert np.isnan(malignant_auc(labels[:2], probabilities[:2]))


def test_calibration_error():
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.3, 1.0, 20000)
    labels = np.where(rng.random(20000) < confidence, 0, 1)
    calibrated = np.stack([confidence, 1 - confidence], axis=1)
    assert expected_calibration_error(labels, calibrated) < 0.02
    overconfident = np.stack([np.full(20000, 0.99), np.full(20000, 0.01)], axis=1)
    assert expected_calibration_error(labels, overconfident) > 0.2


def test_jaccard():
    a = np.zeros((4, 4), bool)
    a[:2] = True
    b = np.zeros((4, 4), bool)
    b[1:3] = True
    assert jaccard(a, b) == 4 / 12
    assert jaccard(a, a) == 1.0 and jaccard(~a & a, ~a & a) == 1.0
