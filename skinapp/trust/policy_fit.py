"""Fitting the flag policy on out-of-fold predictions, and measuring what it catches.

Everything reported here is cross-fitted: the risk model that scores a held-out image was fitted without that
image's lesion, so the coverage-accuracy curve and the share of errors caught are honest estimates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from sklearn.model_selection import GroupKFold

from skinapp.trust.flags import FEATURES, MAX_FLAGGED, SCORE_SIGNS, FlagPolicy, beyond_training_data

OOD_QUANTILE = 0.99     # held-out dermoscopy images beyond this distance are rare: 1 % of them
REASON_QUANTILE = 0.90  # a sign is named as a reason when it is in the worst 10 % of held-out cases


def _reason_threshold(values: np.ndarray) -> float:
    threshold = float(np.quantile(values, REASON_QUANTILE))
    if threshold <= float(values.min()):  # most cases share the lowest value (e.g. one attention region)
        above = np.unique(values[values > values.min()])
        threshold = float(above[0]) if len(above) else float("inf")
    return threshold


@dataclass
class RiskModel:
    """Logistic model of "the model is wrong" on standardised signs, every weight ≥ 0: more doubt never lowers
    the risk. Fitted by L-BFGS-B with the weights bounded below by zero and a small ridge penalty."""

    weights: np.ndarray
    intercept: float
    means: pd.Series
    scales: pd.Series

    def risk(self, table: pd.DataFrame) -> np.ndarray:
        z = ((table - self.means) / self.scales).to_numpy() @ self.weights + self.intercept
        return 1 / (1 + np.exp(-z))


def fit_risk(table: pd.DataFrame, errors: np.ndarray, ridge: float = 1e-3) -> RiskModel:
    means, scales = table.mean(), table.std().replace(0, 1.0).fillna(1.0)
    x = ((table - means) / scales).to_numpy()
    y = errors.astype(float)
    n, d = x.shape
    rate = min(max(float(y.mean()), 1e-3), 1 - 1e-3)
    if len(np.unique(y)) < 2:  # all right (or all wrong): the signs carry no information, every case the same risk
        return RiskModel(np.zeros(d), float(np.log(rate / (1 - rate))), means, scales)

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = x @ theta[:d] + theta[d]
        p = 1 / (1 + np.exp(-z))
        value = float(np.mean(np.logaddexp(0, z) - y * z) + ridge * theta[:d] @ theta[:d])
        gradient = np.concatenate([x.T @ (p - y) / n + 2 * ridge * theta[:d], [np.mean(p - y)]])
        return value, gradient

    start = np.concatenate([np.zeros(d), [np.log(rate / (1 - rate))]])
    result = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=[(0, None)] * d + [(None, None)])
    return RiskModel(result.x[:d], float(result.x[d]), means, scales)


def coverage_curve(risk: np.ndarray, correct: np.ndarray, points: int = 21) -> list[dict]:
    """Accuracy on the cases kept when the riskiest ones go to manual review, for coverage 100 % … 50 %."""
    order = np.argsort(risk)  # safest first
    curve = []
    for coverage in np.linspace(1.0, 0.5, points):
        kept = order[: max(1, round(coverage * len(order)))]
        curve.append({"coverage": float(coverage), "accuracy": float(correct[kept].mean())})
    return curve


def threshold_for_budget(risk: np.ndarray, always: np.ndarray, share: float = MAX_FLAGGED) -> float:
    """The lowest risk threshold at which the cases above it, together with those always checked, are at most
    `share` of all: the manual-check budget counts every flag the app raises. Where the always-checked cases fill
    the budget, a finite threshold above every risk (risks are probabilities), so the card stays strict JSON."""
    room = int(np.floor(share * len(risk) + 1e-9)) - int(always.sum())
    rest = np.sort(risk[~always])[::-1]
    if room <= 0 or not len(rest):
        return float(np.nextafter(max(1.0, float(risk.max()) if len(risk) else 1.0), np.inf))
    threshold = float(rest[min(room, len(rest)) - 1])
    if room < len(rest) and rest[room] == threshold:  # a tie at the edge would go over the budget
        threshold = float(np.nextafter(threshold, np.inf))
    return threshold


@dataclass
class HeldOutFlags:
    """The flags raised on held-out images, each image's risk from a model fitted without its lesion."""

    risk: np.ndarray         # the combined score's risk of an error
    always: np.ndarray       # checked whatever the score: beyond the training data, or a fixed check
    far: np.ndarray          # beyond the out-of-distribution threshold (part of `always`)
    by_score: np.ndarray     # the risk is above the threshold that fills the budget
    ood_threshold: float | None

    @property
    def flagged(self) -> np.ndarray:
        return self.by_score | self.always


def cross_fitted_flags(table: pd.DataFrame, correct: np.ndarray, groups: np.ndarray,
                       always_checked: np.ndarray | None = None) -> HeldOutFlags:
    """table: one row of `flags.features` per held-out image; correct: the model's top call was right;
    always_checked: images that get a manual check whatever the score (`flags.fixed_hard_flags`). Images beyond the
    out-of-distribution threshold are always checked too; the score's threshold fills the rest of the budget."""
    table = table[list(FEATURES)].astype(float)
    scored = table[list(SCORE_SIGNS)]
    errors = (~correct).astype(int)
    ood_threshold = float(np.quantile(table["ood_distance"], OOD_QUANTILE)) if table["ood_distance"].any() else None
    far = (beyond_training_data(table["ood_distance"].to_numpy(), ood_threshold) if ood_threshold is not None
           else np.zeros(len(table), bool))
    always = far if always_checked is None else far | np.asarray(always_checked, bool)
    crossed = np.zeros(len(table))
    for train, test in GroupKFold(min(5, len(np.unique(groups)))).split(table, errors, groups):
        crossed[test] = fit_risk(scored.iloc[train], errors[train]).risk(scored.iloc[test])
    return HeldOutFlags(crossed, always, far, crossed >= threshold_for_budget(crossed, always), ood_threshold)


def fit_policy(table: pd.DataFrame, correct: np.ndarray, groups: np.ndarray,
               always_checked: np.ndarray | None = None) -> tuple[FlagPolicy, dict]:
    """The policy fitted on all these held-out images, and its figures from `cross_fitted_flags` (same arguments)."""
    held_out = cross_fitted_flags(table, correct, groups, always_checked)
    table = table[list(FEATURES)].astype(float)
    scored = table[list(SCORE_SIGNS)]
    errors = (~correct).astype(int)
    always, flagged = held_out.always, held_out.flagged
    model = fit_risk(scored, errors)
    final = model.risk(scored)
    policy = FlagPolicy(
        thresholds={f: _reason_threshold(table[f].to_numpy()) for f in FEATURES if f != "ood_distance"},
        ood_threshold=held_out.ood_threshold,
        weights={f: float(w) for f, w in zip(SCORE_SIGNS, model.weights, strict=True) if w > 0},
        means={f: float(model.means[f]) for f in SCORE_SIGNS}, scales={f: float(model.scales[f]) for f in SCORE_SIGNS},
        intercept=model.intercept, check_threshold=threshold_for_budget(final, always),
        fitted_on=f"{len(table)} held-out HAM10000 images (out-of-fold), logistic model of the model's errors with "
                  "non-negative weights on its own uncertainty signs",
    )
    report = {
        "n_images": len(table),
        "error_rate": float(errors.mean()),
        "flagged_share": float(flagged.mean()),
        "flagged_by_score_share": float((held_out.by_score & ~always).mean()),
        "always_checked_share": float(always.mean()),
        "errors_caught": float(flagged[errors == 1].mean()) if errors.any() else 0.0,
        "accuracy_unflagged": float(correct[~flagged].mean()),
        "accuracy_flagged": float(correct[flagged].mean()) if flagged.any() else None,
        "coverage_accuracy": coverage_curve(np.where(always, np.inf, held_out.risk), correct),
        "weights": policy.weights,
        "ood_threshold": policy.ood_threshold,
        "ood_share_of_held_out": float(held_out.far.mean()),
    }
    return policy, report
