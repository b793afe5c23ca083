"""The balanced decision rule: which diagnosis is shown as the top call.

A network trained on data where nevi are common keeps some of that prior in its probabilities, so the class
with the highest probability favours common diagnoses. Post-hoc prior correction (Menon et al., "Long-tail
learning via logit adjustment", ICLR 2021) divides the calibrated probabilities by the model's effective class
prior raised to a strength τ and takes the largest: rare classes (melanoma among them) are called more often,
at the cost of more false alarms on common ones. τ is tuned on out-of-fold data for balanced accuracy. The
calibrated probabilities themselves are never changed; the rule only picks the call.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from skinapp.evaluation.metrics import balanced_accuracy

DEFAULT_TAUS = tuple(np.round(np.linspace(0.0, 1.5, 31), 3))


@dataclass(frozen=True)
class DecisionRule:
    prior: tuple[float, ...] = ()   # the model's effective class prior: its mean calibrated probability on held-out data
    tau: float = 0.0                # strength of the correction; 0 = the plain highest probability

    @property
    def active(self) -> bool:
        return bool(self.prior) and self.tau != 0.0

    def scores(self, probabilities: np.ndarray) -> np.ndarray:
        """(…, K) calibrated probabilities → (…, K) scores summing to 1 whose largest is the call."""
        if not self.active:
            return probabilities
        adjusted = probabilities / np.power(np.asarray(self.prior), self.tau)
        return adjusted / adjusted.sum(axis=-1, keepdims=True)

    def call(self, probabilities: np.ndarray) -> np.ndarray:
        return np.argmax(self.scores(probabilities), axis=-1)

    def to_dict(self) -> dict:
        return {"method": "prior correction (Menon et al. 2021)", **asdict(self), "prior": list(self.prior)}

    @classmethod
    def from_dict(cls, raw: dict | None) -> DecisionRule:
        if not raw:
            return cls()
        return cls(prior=tuple(float(p) for p in raw.get("prior", ())), tau=float(raw.get("tau", 0.0)))


def effective_prior(probabilities: np.ndarray, floor: float = 1e-4) -> tuple[float, ...]:
    prior = np.clip(probabilities.mean(axis=0), floor, None)
    return tuple(float(p) for p in prior / prior.sum())


def fit_decision_rule(labels: np.ndarray, probabilities: np.ndarray, taus: tuple[float, ...] = DEFAULT_TAUS) -> DecisionRule:
    """The τ with the best balanced accuracy on these held-out predictions (ties: the smallest τ)."""
    prior = effective_prior(probabilities)
    scores = [balanced_accuracy(labels, DecisionRule(prior, tau).scores(probabilities)) for tau in taus]
    return DecisionRule(prior, float(taus[int(np.argmax(scores))]))


def cross_fitted_calls(labels: np.ndarray, probabilities: np.ndarray, groups: np.ndarray,
                       taus: tuple[float, ...] = DEFAULT_TAUS) -> tuple[np.ndarray, list[float]]:
    """Each group's calls from a rule fitted on the other groups (e.g. the HAM folds): an honest estimate of
    what the rule does on data it was not tuned on. Returns the calls and the τ of each fit."""
    calls = np.empty(len(labels), np.int64)
    fitted = []
    for group in np.unique(groups):
        held = groups == group
        if held.all():  # one group only: nothing to fit on but itself
            rule = fit_decision_rule(labels, probabilities, taus)
        else:
            rule = fit_decision_rule(labels[~held], probabilities[~held], taus)
        calls[held] = rule.call(probabilities[held])
        fitted.append(rule.tau)
    return calls, fitted
