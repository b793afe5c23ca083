"""Fitting the flag policy on out-of-fold predictions, and measuring what it catches.

Everything reported here is cross-fitted: the risk model that scores a held-out image was fitted without that
image's lesion, so the coverage-accuracy curve and the share of errors caught are honest estimates.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold

from skinapp.trust.flags import FEATURES, MAX_FLAGGED, FlagPolicy

OOD_QUANTILE = 0.99     # held-out dermoscopy images beyond this distance are rare: 1 % of them
REASON_QUANTILE = 0.90  # a sign is named as a reason when it is in the worst 10 % of held-out cases


def _reason_threshold(values: np.ndarray) -> float:
    threshold = float(np.quantile(values, REASON_QUANTILE))
    if threshold <= float(values.min()):  # most cases share the lowest value (e.g. one attention region)
        above = np.unique(values[values > values.min()])
        threshold = float(above[0]) if len(above) else float("inf")
    return threshold


class _ConstantRisk:
    """Stands in for the logistic model where the held-out cases were all right (or all wrong): the signs then
    carry no information about errors, and every case gets the same risk."""

    def __init__(self, rate: float, n_features: int):
        rate = min(max(rate, 1e-3), 1 - 1e-3)
        self.coef_ = np.zeros((1, n_features))
        self.intercept_ = np.array([np.log(rate / (1 - rate))])

    def predict_proba(self, x: pd.DataFrame) -> np.ndarray:
        p = 1 / (1 + np.exp(-self.intercept_[0]))
        return np.column_stack([np.full(len(x), 1 - p), np.full(len(x), p)])


def _fit_risk(table: pd.DataFrame, errors: np.ndarray) -> tuple[LogisticRegression | _ConstantRisk, pd.Series, pd.Series]:
    means, scales = table.mean(), table.std().replace(0, 1.0).fillna(1.0)
    if len(np.unique(errors)) < 2:
        return _ConstantRisk(float(errors.mean()), table.shape[1]), means, scales
    model = LogisticRegression(C=1.0, max_iter=1000).fit((table - means) / scales, errors)
    return model, means, scales


def _risk(model: LogisticRegression | _ConstantRisk, table: pd.DataFrame, means: pd.Series, scales: pd.Series) -> np.ndarray:
    return model.predict_proba((table - means) / scales)[:, 1]


def coverage_curve(risk: np.ndarray, correct: np.ndarray, points: int = 21) -> list[dict]:
    """Accuracy on the cases kept when the riskiest ones go to manual review, for coverage 100 % … 50 %."""
    order = np.argsort(risk)  # safest first
    curve = []
    for coverage in np.linspace(1.0, 0.5, points):
        kept = order[: max(1, round(coverage * len(order)))]
        curve.append({"coverage": float(coverage), "accuracy": float(correct[kept].mean())})
    return curve


def fit_policy(table: pd.DataFrame, correct: np.ndarray, groups: np.ndarray) -> tuple[FlagPolicy, dict]:
    """table: one row of `flags.features` per held-out image; correct: the model's top class was right."""
    table = table[list(FEATURES)].astype(float)
    errors = (~correct).astype(int)
    crossed = np.zeros(len(table))
    for train, test in GroupKFold(min(5, len(np.unique(groups)))).split(table, errors, groups):
        model, means, scales = _fit_risk(table.iloc[train], errors[train])
        crossed[test] = _risk(model, table.iloc[test], means, scales)
    threshold_crossed = float(np.quantile(crossed, 1 - MAX_FLAGGED))
    flagged = crossed >= threshold_crossed
    model, means, scales = _fit_risk(table, errors)
    final = _risk(model, table, means, scales)
    policy = FlagPolicy(
        thresholds={f: _reason_threshold(table[f].to_numpy()) for f in FEATURES if f != "ood_distance"},
        ood_threshold=float(np.quantile(table["ood_distance"], OOD_QUANTILE)) if table["ood_distance"].any() else None,
        weights={f: float(w) for f, w in zip(FEATURES, model.coef_[0], strict=True)},
        means={f: float(means[f]) for f in FEATURES}, scales={f: float(scales[f]) for f in FEATURES},
        intercept=float(model.intercept_[0]), check_threshold=float(np.quantile(final, 1 - MAX_FLAGGED)),
        fitted_on=f"{len(table)} held-out HAM10000 images (out-of-fold), logistic model of the model's errors",
    )
    report = {
        "n_images": len(table),
        "error_rate": float(errors.mean()),
        "flagged_share": float(flagged.mean()),
        "errors_caught": float(flagged[errors == 1].mean()) if errors.any() else 0.0,
        "accuracy_unflagged": float(correct[~flagged].mean()),
        "accuracy_flagged": float(correct[flagged].mean()) if flagged.any() else None,
        "coverage_accuracy": coverage_curve(crossed, correct),
        "weights": policy.weights,
        "ood_threshold": policy.ood_threshold,
        "ood_share_of_held_out": float((table["ood_distance"] > policy.ood_threshold).mean()) if policy.ood_threshold else 0.0,
    }
    return policy, report
