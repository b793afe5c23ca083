"""The balanced decision rule: which diagnosis is shown as the top call.

A network trained on data where nevi are common keeps some of that prior in its probabilities, so the class
with the highest probability favours common diagnoses. Post-hoc prior correction (Menon et al., "Long-tail
learning via logit adjustment", ICLR 2021) divides the calibrated probabilities by the model's effective class
prior raised to a strength τ and takes the largest: rare classes (melanoma among them) are called more often,
at the cost of more false alarms on common ones. τ is tuned on out-of-fold data for balanced accuracy, by the
one-standard-error rule: the least correction whose balanced accuracy is within one standard error of the best.
The calibrated probabilities themselves are never changed; the rule only picks the call.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from skinapp.metrics import balanced_accuracy_of_calls

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


@dataclass(frozen=True)
class TauChoice:
    """How τ was chosen: balanced accuracy at each candidate, the best, its standard error and the pick."""

    prior: tuple[float, ...]
    taus: tuple[float, ...]
    balanced_accuracy: tuple[float, ...]
    best_tau: float
    standard_error: float   # of the best τ's balanced accuracy, by a bootstrap over lesions
    tau: float              # the smallest τ within one standard error of the best

    @property
    def rule(self) -> DecisionRule:
        return DecisionRule(self.prior, self.tau)


def _bootstrap_standard_error(hits: np.ndarray, labels: np.ndarray, groups: np.ndarray | None, resamples: int,
                              seed: int) -> float:
    """Standard error of the balanced accuracy of these calls (hits: call == label), resampling whole groups (the
    images of one lesion go together; each image is its own group where groups is None)."""
    _, group_of = np.unique(np.arange(len(labels)) if groups is None else groups, return_inverse=True)
    n_groups = int(group_of.max()) + 1
    classes = [labels == k for k in np.unique(labels)]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        weight = np.bincount(rng.integers(0, n_groups, n_groups), minlength=n_groups)[group_of]
        recalls = [(weight * hits)[c].sum() / weight[c].sum() for c in classes if weight[c].sum() > 0]
        values.append(np.mean(recalls))
    return float(np.std(values))


def choose_tau(labels: np.ndarray, probabilities: np.ndarray, groups: np.ndarray | None = None,
               taus: tuple[float, ...] = DEFAULT_TAUS, resamples: int = 200, seed: int = 0) -> TauChoice:
    """The one-standard-error rule (Breiman et al. 1984) over τ. Balanced accuracy is flat near its top, and the τ
    that maximises it moves with the images it is fitted on; among the τ it cannot tell apart, the smallest calls
    rare diagnoses (melanoma first) on common lesions least often. groups: the images' lesions."""
    prior = effective_prior(probabilities)
    order = sorted(float(t) for t in taus)
    calls = [DecisionRule(prior, tau).call(probabilities) for tau in order]
    scores = [balanced_accuracy_of_calls(labels, c, probabilities.shape[1]) for c in calls]
    best = int(np.argmax(scores))
    error = _bootstrap_standard_error(calls[best] == labels, labels, groups, resamples, seed)
    chosen = next(i for i, score in enumerate(scores) if score >= scores[best] - error)
    return TauChoice(prior, tuple(order), tuple(scores), order[best], error, order[chosen])


def fit_decision_rule(labels: np.ndarray, probabilities: np.ndarray, groups: np.ndarray | None = None,
                      taus: tuple[float, ...] = DEFAULT_TAUS) -> DecisionRule:
    """The rule with τ chosen by `choose_tau` on these held-out predictions (groups: their lesions)."""
    return choose_tau(labels, probabilities, groups, taus).rule


def cross_fitted_calls(labels: np.ndarray, probabilities: np.ndarray, groups: np.ndarray,
                       taus: tuple[float, ...] = DEFAULT_TAUS,
                       lesions: np.ndarray | None = None) -> tuple[np.ndarray, list[float]]:
    """Each group's calls from a rule fitted on the other groups (e.g. the HAM folds): an honest estimate of
    what the rule does on data it was not tuned on. lesions: for the standard error of each fit. Returns the calls
    and the τ of each fit."""
    calls = np.empty(len(labels), np.int64)
    fitted = []
    for group in np.unique(groups):
        held = groups == group
        if held.all():  # one group only: nothing to fit on but itself
            held = np.zeros(len(labels), bool)
        rule = fit_decision_rule(labels[~held], probabilities[~held], None if lesions is None else lesions[~held], taus)
        calls[groups == group] = rule.call(probabilities[groups == group])
        fitted.append(rule.tau)
    return calls, fitted
