"""The model's record at this clinic: what it said about the lesions whose outcome is known, set beside what they
turned out to be; and a refit of its risk levels to the clinic's own verified lesions, cross-validated by patient and
refused where it cannot be trusted. Pure functions over stored records: no Streamlit, no database writes.

What counts as verified (`VERIFICATION_RULE`): a case whose latest outcome says whether the lesion was malignant. A
histopathology result counts by its diagnosis ("other" is left out: its malignancy is unknown); a clinical outcome
(stable at follow-up ≥ 12 months, or not excised) counts as benign unless it names a malignant diagnosis.

Each case counts with its latest result, and only results of one model identity are pooled: a different model, a
recalibrated one or one adapted to a site (a site profile binds itself into the identity) is another model. Below
`JUDGE_MIN_MALIGNANT` verified malignant lesions the figures are shown but said to be too few to judge.

The refit (`refit_levels`) fits the safety net's level (the highest level that keeps ≥ 95 % of the clinic's verified
malignant lesions) and High's (the level at most 10 % of its verified benign lesions reach) with the same fits
`evaluate` uses, on the stored calibrated malignancy (so the levels belong to the current temperature), and measures
them by 5-fold cross-validation by patient. A net fitted to keep exactly 95 % keeps a little less on held-out patients,
so where it does the net is fitted to keep more (`REFIT_TARGETS`) until, held out, it keeps ≥ 95 %. It is refused
below `REFIT_MIN_MALIGNANT` / `REFIT_MIN_BENIGN` verified lesions and whenever, cross-validated, it would keep fewer
than 95 % of the verified malignant lesions in High or Cannot exclude even so. The temperature is refitted (the
stored probabilities un-tempered with their own temperature) and shown with its held-out effect only: adopting another
temperature would change the calls, sets and flags too, so the levels beside it are fitted on the current
calibration. Adopting a refit (`levels_to_adopt`, then `Store.adopt_clinic_levels`) makes the installed model
another model: `skinapp.model.clinic_levels`."""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

from skinapp.model.clinic_levels import ClinicLevels
from skinapp.outcomes import DIAGNOSIS_BY_CODE, HISTOPATHOLOGY, NOT_EXCISED
from skinapp.reporting.table_report import Section, TableBlock, TableReport, rows_of, table_report_pdf
from skinapp.reporting.text import spreadsheet_safe
from skinapp.store import CaseRecord, Outcome
from skinapp.store.records import DECISIONS
from skinapp.trust.calibration import apply_temperature, fit_temperature
from skinapp.trust.risk import (
    CANNOT_EXCLUDE,
    HIGH,
    HIGH_BENIGN_SHARE,
    LOW,
    SUSPICIOUS_UNGRADED,
    TIER_SHORT_NAMES,
    fit_risk_tiers,
)
from skinapp.trust.safety_net import TARGET_SENSITIVITY, fit_safety_net
from skinapp.vocab import CLASSES
from skinapp.workflow.worklist import risk_tier_of

Z95 = 1.959963984540054            # the normal quantile of a two-sided 95 % interval
JUDGE_MIN_MALIGNANT = 20           # below this many verified malignant lesions the figures cannot be judged yet
REFIT_MIN_MALIGNANT, REFIT_MIN_BENIGN = 30, 100
REFIT_FOLDS = 5
RELIABILITY_BINS = 10
# The net is fitted (fit_safety_net) to keep 95 % of the clinic's malignant lesions; fitted exactly so, it keeps a
# little less on held-out patients (about 95 % − 1 / n). Where it does, the next, stricter target is tried, so that the
# level is the highest one that keeps ≥ 95 % held out, and the refit is refused only where none does.
REFIT_TARGETS = (0.95, 0.96, 0.97, 0.98, 0.99, 1.0)
TEMPERATURE_MIN_CASES = 30         # verified cases with a diagnosis among the model's classes, to refit the temperature

VERIFICATION_RULE = (
    "A lesion counts as verified where its latest outcome says whether it was malignant: a histopathology result by "
    "its diagnosis (a histopathology result of “other” is left out: its malignancy is unknown); stable at follow-up "
    "≥ 12 months as benign unless it names a malignant diagnosis. “Not excised” is a decision, not a finding: it "
    "verifies nothing unless it names a malignant diagnosis. Actinic "
    "keratosis counts as malignant, as the model's AKIEC class does. Each case counts once, with its latest result "
    "and its latest outcome.")
TIER_NAMES: dict[str | None, str] = {tier: name for tier, name in TIER_SHORT_NAMES.items()} | {None: "No tier"}
ABOVE_NET = (HIGH, CANNOT_EXCLUDE, SUSPICIOUS_UNGRADED)  # the tiers above the safety net


# ------------------------------------------------------------------------------------------ proportions


def wilson_interval(count: int, total: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of count / total (95 % by default): honest at small counts and at 0 % or 100 %."""
    if total <= 0:
        raise ValueError("an interval needs at least one case")
    if not 0 <= count <= total:
        raise ValueError(f"{count} of {total} is not a proportion")
    p, n, z2 = count / total, total, z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def _percent(value: float) -> str:
    return f"{value * 100:.0f} %"


@dataclass(frozen=True)
class Proportion:
    count: int
    total: int

    @property
    def value(self) -> float | None:
        return self.count / self.total if self.total else None

    @property
    def interval(self) -> tuple[float, float] | None:
        return wilson_interval(self.count, self.total) if self.total else None

    @property
    def share_text(self) -> str:
        """"60 % (39–78 %)", or "—" with nothing to count."""
        if self.value is None or self.interval is None:
            return "—"
        low, high = self.interval
        return f"{_percent(self.value)} ({low * 100:.0f}–{high * 100:.0f} %)"

    def text(self) -> str:
        """"12 of 20, 60 % (95 % CI 39–78 %)"."""
        if self.value is None or self.interval is None:
            return "0 of 0 (nothing to count)"
        low, high = self.interval
        return f"{self.count} of {self.total}, {_percent(self.value)} (95 % CI {low * 100:.0f}–{high * 100:.0f} %)"


def _share(mask: np.ndarray, within: np.ndarray) -> Proportion:
    return Proportion(int((mask & within).sum()), int(within.sum()))


# ------------------------------------------------------------------------------------------ verified cases


def verified_malignancy(outcome: Outcome) -> bool | None:
    """Whether the outcome says the lesion was malignant (None: it does not say). See VERIFICATION_RULE."""
    entry = outcome.entry
    if outcome.kind == HISTOPATHOLOGY:
        return None if entry is None else entry.malignant
    if outcome.kind == NOT_EXCISED:  # a decision, not a finding: a lesion left in place is not known to be benign
        return True if entry is not None and entry.malignant else None
    return bool(entry is not None and entry.malignant)  # stable at follow-up: benign unless it names a malignancy


def _class_of(code: str | None) -> str | None:
    """The model class a stored diagnosis code counts as (decisions from before the clinical list hold a class)."""
    if code is None:
        return None
    entry = DIAGNOSIS_BY_CODE.get(code)
    if entry is not None:
        return entry.model_class
    return code if code in CLASSES else None


@dataclass(frozen=True, eq=False)
class VerifiedCase:
    """One case whose outcome says whether the lesion was malignant, with what the model said about it."""

    case_id: int
    case_name: str
    patient_id: str | None
    identity: str                   # the model identity of the result (`StoredPrediction.weights_sha256`)
    model_version: str
    probabilities: np.ndarray       # (K,) calibrated, as shown
    temperature: float              # the calibration applied to them
    malignancy: float
    tier: str | None                # HIGH, CANNOT_EXCLUDE, LOW, SUSPICIOUS_UNGRADED (a model without tiers, above
                                    # its net); None: the model had neither tiers nor a net
    graded: bool                    # the model had risk tiers (without them the net's mark counts as Cannot exclude)
    call: str
    flagged: bool                   # a manual check was asked for
    flag_reasons: tuple[str, ...]
    malignant: bool
    histopathology: bool
    outcome_class: str | None       # the model class the outcome's diagnosis counts as (None: no diagnosis given)
    outcome_text: str
    decision: str | None            # the latest reviewer decision's code (DECISIONS), if any
    decision_label: str
    decision_class: str | None      # a disagreeing reviewer's own diagnosis, as a model class

    @property
    def group(self) -> str:
        """What cross-validation keeps together: the patient, else the case itself."""
        return f"patient {self.patient_id}" if self.patient_id else f"case {self.case_id}"

    @property
    def call_right(self) -> bool | None:
        return None if self.outcome_class is None else self.call == self.outcome_class


def verified_case(record: CaseRecord) -> VerifiedCase | None:
    prediction, outcome = record.prediction, record.outcome
    if prediction is None or outcome is None:
        return None
    malignant = verified_malignancy(outcome)
    if malignant is None:
        return None
    decision = record.decision
    return VerifiedCase(
        case_id=record.case.id, case_name=record.case.name, patient_id=record.case.patient_id,
        identity=prediction.weights_sha256, model_version=prediction.model_version,
        probabilities=np.asarray(prediction.probabilities, float), temperature=float(prediction.temperature),
        malignancy=prediction.malignancy, tier=risk_tier_of(prediction),
        graded=prediction.risk_tier is not None, call=prediction.predicted_class,
        flagged=prediction.needs_manual_check, flag_reasons=tuple(f.reason for f in prediction.flags if f.serious),
        malignant=malignant, histopathology=outcome.kind == HISTOPATHOLOGY, outcome_class=outcome.model_class,
        outcome_text=outcome.label, decision=decision.decision if decision else None,
        decision_label=decision.label if decision else "",
        decision_class=_class_of(decision.diagnosis) if decision and decision.decision == "disagree" else None,
    )


def verified_cases(records: Sequence[CaseRecord]) -> list[VerifiedCase]:
    return [v for v in map(verified_case, records) if v is not None]


@dataclass(frozen=True)
class ModelPool:
    """The verified cases whose latest result one model identity made."""

    identity: str
    model_version: str
    cases: int
    malignant: int
    installed: bool

    @property
    def label(self) -> str:
        return (f"{self.model_version} (model id {self.identity[:12]}){', the installed model' if self.installed else ''}"
                f": {self.cases} verified case(s), {self.malignant} malignant")


def model_pools(cases: Sequence[VerifiedCase], installed_identity: str | None) -> list[ModelPool]:
    """One pool per model identity, the installed model's first, then the largest."""
    pools: dict[str, list[VerifiedCase]] = {}
    for case in cases:
        pools.setdefault(case.identity, []).append(case)
    found = [ModelPool(identity, group[-1].model_version, len(group), sum(c.malignant for c in group),
                       identity == installed_identity) for identity, group in pools.items()]
    return sorted(found, key=lambda p: (not p.installed, -p.cases, p.identity))


# ------------------------------------------------------------------------------------------ the record


@dataclass(frozen=True)
class TierRow:
    tier: str | None
    lesions: int
    malignant_found: Proportion     # the tier's malignant lesions among all verified malignant ones
    benign_marked: Proportion       # the tier's benign lesions among all verified benign ones
    malignant_share: Proportion     # the share of the tier's lesions that were malignant

    @property
    def label(self) -> str:
        return TIER_NAMES[self.tier]


@dataclass(frozen=True)
class Confusion:
    """The call (columns) against the outcome's class (rows), on verified cases whose outcome names a diagnosis."""

    counts: tuple[tuple[int, ...], ...]
    right: Proportion
    without_class: int              # verified cases whose outcome names no diagnosis (a clinical outcome)
    classes: tuple[str, ...] = CLASSES


@dataclass(frozen=True)
class FlagFigures:
    wrong_when_flagged: Proportion      # flagged calls that were wrong
    wrong_when_unflagged: Proportion    # unflagged calls that were wrong
    wrong_calls_flagged: Proportion     # wrong calls that a flag preceded
    low_malignant_flagged: Proportion   # malignant lesions below the net (Low) that a flag still put up for a check


@dataclass(frozen=True)
class ReliabilityBin:
    low: float
    high: float
    count: int
    mean_probability: float | None
    observed: Proportion                # the share of the bin's lesions that were malignant


@dataclass(frozen=True)
class DecisionCount:
    decision: str
    label: str
    malignant: int
    benign: int


@dataclass(frozen=True)
class ReviewerFigures:
    """The reviewers' latest decisions on the same verified cases, beside the model's."""

    decided: int
    counts: tuple[DecisionCount, ...]
    biopsy_malignant: Proportion        # malignant lesions a reviewer sent for biopsy or excision
    biopsy_benign: Proportion           # benign lesions a reviewer sent for biopsy or excision
    model_mark: str                     # what the model's side counts ("High" or "at or above the safety net")
    model_malignant: Proportion         # the same malignant lesions the model marked so
    model_benign: Proportion
    own_diagnosis_right: Proportion     # a disagreeing reviewer's own diagnosis matched the outcome's class
    model_right_on_them: Proportion     # the model's call on the same cases


@dataclass(frozen=True)
class ClinicRecord:
    pool: ModelPool | None              # the model the figures are for (None: no verified case yet)
    other_pools: tuple[ModelPool, ...]  # verified cases of other models, not pooled
    cases: tuple[VerifiedCase, ...]
    tiers: tuple[TierRow, ...]
    kept_by_net: Proportion             # verified malignant lesions in High or Cannot exclude
    confusion: Confusion
    flags: FlagFigures
    reliability: tuple[ReliabilityBin, ...]
    reviewers: ReviewerFigures

    @property
    def malignant(self) -> int:
        return sum(c.malignant for c in self.cases)

    @property
    def benign(self) -> int:
        return len(self.cases) - self.malignant

    @property
    def by_histopathology(self) -> int:
        return sum(c.histopathology for c in self.cases)

    @property
    def judgeable(self) -> bool:
        return self.malignant >= JUDGE_MIN_MALIGNANT

    @property
    def judgement_text(self) -> str:
        if self.judgeable:
            return (f"{self.malignant} verified malignant lesions: enough to start judging the figures; the 95 % "
                    "intervals show how far each could still be off.")
        return (f"Only {self.malignant} verified malignant lesion(s), fewer than {JUDGE_MIN_MALIGNANT}: the figures "
                "cannot be judged yet. The counts are shown as they stand; read no percentage from them.")

    @property
    def model_text(self) -> str:
        if self.pool is None:
            return "No verified case yet: no outcome with a known malignancy has been recorded on an analysed case."
        text = (f"These figures are for the model {self.pool.model_version} (model id {self.pool.identity[:12]}"
                f"{', the installed model' if self.pool.installed else ', not the installed model'}): "
                f"{len(self.cases)} verified case(s), {self.malignant} malignant and {self.benign} benign, "
                f"{self.by_histopathology} of them by histopathology.")
        if self.other_pools:
            others = "; ".join(p.label for p in self.other_pools)
            text += f" Results of other models are not pooled with them ({others})."
        return text


def _tier_rows(cases: Sequence[VerifiedCase], malignant: np.ndarray) -> tuple[TierRow, ...]:
    tiers = np.asarray([c.tier for c in cases], dtype=object)
    rows = []
    for tier in (HIGH, SUSPICIOUS_UNGRADED, CANNOT_EXCLUDE, LOW, None):
        inside = np.asarray([t == tier for t in tiers], bool)
        if tier in (None, SUSPICIOUS_UNGRADED) and not inside.any():
            continue
        rows.append(TierRow(tier, int(inside.sum()), _share(inside, malignant), _share(inside, ~malignant),
                            _share(malignant, inside)))
    return tuple(rows)


def _confusion(cases: Sequence[VerifiedCase]) -> Confusion:
    counts = np.zeros((len(CLASSES), len(CLASSES)), int)
    with_class = [c for c in cases if c.outcome_class is not None]
    for case in with_class:
        counts[CLASSES.index(case.outcome_class or ""), CLASSES.index(case.call)] += 1
    right = int(np.trace(counts))
    return Confusion(tuple(tuple(int(v) for v in row) for row in counts), Proportion(right, len(with_class)),
                     len(cases) - len(with_class))


def _flags(cases: Sequence[VerifiedCase]) -> FlagFigures:
    judged = [c for c in cases if c.call_right is not None]
    flagged = np.asarray([c.flagged for c in judged], bool)
    wrong = np.asarray([not c.call_right for c in judged], bool)
    low_malignant = np.asarray([c.malignant and c.tier == LOW for c in cases], bool)
    all_flagged = np.asarray([c.flagged for c in cases], bool)
    return FlagFigures(_share(wrong, flagged), _share(wrong, ~flagged), _share(flagged, wrong),
                       _share(all_flagged, low_malignant))


def reliability_bins(malignancy: np.ndarray, malignant: np.ndarray, bins: int = RELIABILITY_BINS) -> tuple[ReliabilityBin, ...]:
    """Equal-width bins of the malignancy probability: how many lesions, their mean probability and the share that
    were malignant (a calibrated model's two agree)."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(malignancy, edges[1:-1]), 0, bins - 1)
    found = []
    for b in range(bins):
        inside = which == b
        found.append(ReliabilityBin(float(edges[b]), float(edges[b + 1]), int(inside.sum()),
                                    float(malignancy[inside].mean()) if inside.any() else None, _share(malignant, inside)))
    return tuple(found)


def _reviewers(cases: Sequence[VerifiedCase]) -> ReviewerFigures:
    decided = [c for c in cases if c.decision is not None]
    counts = tuple(DecisionCount(code, label, sum(c.malignant for c in decided if c.decision == code),
                                 sum(not c.malignant for c in decided if c.decision == code))
                   for code, label in DECISIONS.items() if any(c.decision == code for c in decided))
    malignant = np.asarray([c.malignant for c in decided], bool)
    biopsy = np.asarray([c.decision == "biopsy" for c in decided], bool)
    mark_high = any(c.graded for c in cases)  # a model with tiers: its High; one without: its one mark, the net
    marked = np.asarray([c.tier == HIGH if mark_high else c.tier in ABOVE_NET for c in decided], bool)
    disagreeing = [c for c in decided if c.decision_class is not None and c.outcome_class is not None]
    return ReviewerFigures(
        decided=len(decided), counts=counts,
        biopsy_malignant=_share(biopsy, malignant), biopsy_benign=_share(biopsy, ~malignant),
        model_mark="High" if mark_high else "at or above the safety net",
        model_malignant=_share(marked, malignant), model_benign=_share(marked, ~malignant),
        own_diagnosis_right=Proportion(sum(c.decision_class == c.outcome_class for c in disagreeing), len(disagreeing)),
        model_right_on_them=Proportion(sum(bool(c.call_right) for c in disagreeing), len(disagreeing)),
    )


def clinic_record(records: Sequence[CaseRecord], installed_identity: str | None, identity: str | None = None) -> ClinicRecord:
    """The record of one model (`identity`; by default the installed one where it has verified cases, else the model
    with the most) on the clinic's verified cases."""
    everything = verified_cases(records)
    pools = model_pools(everything, installed_identity)
    pool = next((p for p in pools if p.identity == identity), None) if identity is not None else (pools[0] if pools else None)
    cases = tuple(c for c in everything if pool is not None and c.identity == pool.identity)
    malignant = np.asarray([c.malignant for c in cases], bool)
    kept = np.asarray([c.tier in ABOVE_NET for c in cases], bool)
    return ClinicRecord(
        pool=pool, other_pools=tuple(p for p in pools if pool is None or p.identity != pool.identity), cases=cases,
        tiers=_tier_rows(cases, malignant), kept_by_net=_share(kept, malignant), confusion=_confusion(cases),
        flags=_flags(cases), reliability=reliability_bins(np.asarray([c.malignancy for c in cases], float), malignant),
        reviewers=_reviewers(cases),
    )


# ------------------------------------------------------------------------------------------ the refit


@dataclass(frozen=True)
class FoldResult:
    fold: int
    patients: int
    net_level: float
    high_level: float
    kept: Proportion                # held-out malignant lesions in High or Cannot exclude
    benign_high: Proportion         # held-out benign lesions in High


@dataclass(frozen=True)
class TemperatureRefit:
    current: float
    refit: float | None
    cases: int
    current_loss: float | None      # held-out mean negative log-likelihood of the outcome's class, current calibration
    refit_loss: float | None        # …with a temperature fitted without the case's patient
    note: str


@dataclass(frozen=True)
class LevelRefit:
    malignant: int
    benign: int
    current_net: float | None
    current_high: float | None
    current_kept: Proportion        # verified malignant lesions the current levels put in High or Cannot exclude
    current_benign_high: Proportion  # verified benign lesions the current levels put in High
    net_level: float | None         # the refit, on all the clinic's verified lesions
    high_level: float | None
    cv_kept: Proportion             # cross-validated by patient: held-out malignant lesions in High or Cannot exclude
    cv_benign_high: Proportion      # …held-out benign lesions in High
    folds: tuple[FoldResult, ...]
    temperature: TemperatureRefit | None
    refusals: tuple[str, ...]
    target: float | None = None     # the share of the clinic's malignant lesions the net was fitted to keep in-sample

    @property
    def refused(self) -> bool:
        return bool(self.refusals)

    @property
    def verdict(self) -> str:
        if self.refused:
            return "The refit is refused: " + " ".join(self.refusals)
        fitted = f" (the net fitted to keep {_percent(self.target)} of them on all cases)" if self.target is not None else ""
        return (f"The refit passes its guards: cross-validated by patient it keeps {self.cv_kept.text()} verified "
                f"malignant lesions in High or Cannot exclude{fitted}, and {self.cv_benign_high.text()} verified benign "
                "lesions reach High.")


def _levels(malignancy: np.ndarray, malignant: np.ndarray, sensitivity: float) -> tuple[float, float]:
    net = fit_safety_net(malignancy, malignant, sensitivity)
    high = fit_risk_tiers(malignancy, malignant, HIGH_BENIGN_SHARE)
    assert net.threshold is not None and high.high is not None
    return net.threshold, high.high


def _folds(groups: np.ndarray, labels: np.ndarray, folds: int, stratify: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    splits = min(folds, len(np.unique(groups)))
    if splits < 2:
        return []
    splitter = StratifiedGroupKFold(splits, shuffle=True, random_state=0) if stratify else GroupKFold(splits)
    return list(splitter.split(np.zeros(len(groups)), labels, groups))


def _nll(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.log(np.clip(probabilities[np.arange(len(labels)), labels], 1e-12, 1.0)).mean())


def refit_temperature(cases: Sequence[VerifiedCase], folds: int = REFIT_FOLDS) -> TemperatureRefit:
    """The temperature refitted on the verified cases whose outcome names one of the model's classes: the stored
    (calibrated) probabilities are un-tempered with their own temperature, refitted, and the effect measured on each
    patient's cases by a temperature fitted without them."""
    usable = [c for c in cases if c.outcome_class is not None]
    current = cases[0].temperature if cases else 1.0
    if len(usable) < TEMPERATURE_MIN_CASES:
        return TemperatureRefit(current, None, len(usable), None, None,
                                f"Not refitted: {len(usable)} verified case(s) name a diagnosis among the model's classes, "
                                f"fewer than {TEMPERATURE_MIN_CASES}.")
    calibrated = np.stack([c.probabilities for c in usable])
    raw = np.stack([apply_temperature(c.probabilities, 1.0 / c.temperature) for c in usable])
    labels = np.asarray([CLASSES.index(c.outcome_class or "") for c in usable])
    groups = np.asarray([c.group for c in usable])
    held_out = np.empty_like(calibrated)
    splits = _folds(groups, labels, folds, stratify=False)
    if not splits:
        return TemperatureRefit(current, None, len(usable), None, None, "Not refitted: every case is of one patient.")
    for train, test in splits:
        held_out[test] = apply_temperature(raw[test], fit_temperature(raw[train], labels[train]))
    return TemperatureRefit(current, fit_temperature(raw, labels), len(usable), _nll(calibrated, labels),
                            _nll(held_out, labels),
                            "Shown for information and not part of the levels: the levels are fitted on the current "
                            "calibration, and a new temperature would change the calls, the sets and the flags too.")


def refit_levels(cases: Sequence[VerifiedCase], current_net: float | None, current_high: float | None,
                 folds: int = REFIT_FOLDS, with_temperature: bool = True) -> LevelRefit:
    """The safety net's and High's levels refitted on one model's verified cases (see the module's text), with the
    current levels' figures beside them, and the reasons it is refused (none: it passes)."""
    malignancy = np.asarray([c.malignancy for c in cases], float)
    malignant = np.asarray([c.malignant for c in cases], bool)
    groups = np.asarray([c.group for c in cases])
    tiers = np.asarray([c.tier for c in cases], dtype=object)
    n_malignant, n_benign = int(malignant.sum()), int((~malignant).sum())
    current_kept = _share(np.asarray([t in ABOVE_NET for t in tiers], bool), malignant)
    graded = any(c.graded for c in cases)  # a model without tiers has no High to count
    current_benign_high = _share(np.asarray([t == HIGH for t in tiers], bool), ~malignant) if graded else Proportion(0, 0)
    empty = Proportion(0, 0)

    def result(refusals: list[str], net: float | None = None, high: float | None = None, kept: Proportion = empty,
               benign_high: Proportion = empty, fold_results: tuple[FoldResult, ...] = (),
               temperature: TemperatureRefit | None = None, target: float | None = None) -> LevelRefit:
        return LevelRefit(n_malignant, n_benign, current_net, current_high, current_kept, current_benign_high, net, high,
                          kept, benign_high, fold_results, temperature, tuple(refusals), target)

    if n_malignant < REFIT_MIN_MALIGNANT or n_benign < REFIT_MIN_BENIGN:
        return result([f"it needs at least {REFIT_MIN_MALIGNANT} verified malignant and {REFIT_MIN_BENIGN} verified "
                       f"benign lesions of this model; there are {n_malignant} and {n_benign}."])
    splits = _folds(groups, malignant.astype(int), folds, stratify=True)
    if not splits:
        return result(["every verified lesion belongs to one patient, so it cannot be cross-validated."])
    if any(malignant[train].all() or not malignant[train].any() for train, _ in splits):
        return result(["a fold has no verified malignant or no benign lesion to fit on."])
    for target in REFIT_TARGETS:  # the first (highest level) whose held-out sensitivity holds; else the last, refused
        fold_results, kept, benign_high = [], np.zeros(len(cases), bool), np.zeros(len(cases), bool)
        for number, (train, test) in enumerate(splits, start=1):
            net, high = _levels(malignancy[train], malignant[train], target)
            kept[test] = malignancy[test] >= net
            benign_high[test] = malignancy[test] >= max(net, high)
            fold_results.append(FoldResult(number, len(np.unique(groups[test])), net, high, _share(kept[test], malignant[test]),
                                           _share(benign_high[test], ~malignant[test])))
        cv_kept, cv_benign_high = _share(kept, malignant), _share(benign_high, ~malignant)
        if (cv_kept.value or 0.0) >= TARGET_SENSITIVITY:
            break
    net, high = _levels(malignancy, malignant, target)
    refusals = []
    if (cv_kept.value or 0.0) < TARGET_SENSITIVITY:
        refusals.append(f"cross-validated by patient, it would keep only {cv_kept.text()} verified malignant lesions in "
                        f"High or Cannot exclude, fewer than {_percent(TARGET_SENSITIVITY)}, even with the net fitted to keep "
                        "all of them.")
    temperature = refit_temperature(cases, folds) if with_temperature else None
    return result(refusals, net, high, cv_kept, cv_benign_high, tuple(fold_results), temperature, target)


# ------------------------------------------------------------------------------------------ exports

CSV_COLUMNS = ("case", "patient", "model_version", "model_id", "risk_tier", "malignancy", "call", "call_right",
               "manual_check", "manual_check_reasons", "outcome", "verified_by", "outcome_class", "malignant",
               "reviewer_decision")


def clinic_record_csv(record: ClinicRecord) -> bytes:
    """One row per verified case of the model the figures are for."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(CSV_COLUMNS))
    writer.writeheader()
    for c in record.cases:
        row = {"case": c.case_name, "patient": c.patient_id or "", "model_version": c.model_version,
               "model_id": c.identity, "risk_tier": c.tier or "", "malignancy": round(c.malignancy, 4), "call": c.call,
               "call_right": "" if c.call_right is None else str(c.call_right).lower(),
               "manual_check": str(c.flagged).lower(), "manual_check_reasons": "; ".join(c.flag_reasons),
               "outcome": c.outcome_text, "verified_by": "histopathology" if c.histopathology else "clinical outcome",
               "outcome_class": c.outcome_class or "", "malignant": "malignant" if c.malignant else "benign",
               "reviewer_decision": c.decision_label}
        writer.writerow({k: spreadsheet_safe(v) for k, v in row.items()})
    return buffer.getvalue().encode("utf-8-sig")


def tier_table(record: ClinicRecord) -> list[dict[str, object]]:
    return [{"Risk tier": r.label, "Lesions": r.lesions, "Malignant lesions in it": r.malignant_found.text(),
             "Benign lesions in it": r.benign_marked.text(), "Share malignant": r.malignant_share.share_text}
            for r in record.tiers]


def confusion_table(record: ClinicRecord) -> list[dict[str, object]]:
    return [{"Outcome": cls, **{f"call {call}": record.confusion.counts[i][j] for j, call in enumerate(CLASSES)}}
            for i, cls in enumerate(CLASSES)]


def reliability_table(record: ClinicRecord) -> list[dict[str, object]]:
    return [{"Malignancy probability": f"{b.low * 100:.0f}–{b.high * 100:.0f} %", "Lesions": b.count,
             "Mean probability": "—" if b.mean_probability is None else _percent(b.mean_probability),
             "Malignant (95 % CI)": b.observed.share_text} for b in record.reliability]


def flag_lines(record: ClinicRecord) -> list[str]:
    f = record.flags
    return [f"Calls with a manual-check flag that were wrong: {f.wrong_when_flagged.text()}.",
            f"Calls without a flag that were wrong: {f.wrong_when_unflagged.text()}.",
            f"Wrong calls that a flag preceded: {f.wrong_calls_flagged.text()}.",
            f"Malignant lesions below the safety net (Low) that a flag still put up for a check: "
            f"{f.low_malignant_flagged.text()}."]


FLAG_NOTE = ("A call is wrong where it differs from the class the outcome's diagnosis counts as; outcomes without a "
             "diagnosis (a clinical outcome alone) are not counted here.")


def reviewer_lines(record: ClinicRecord) -> list[str]:
    r = record.reviewers
    if not r.decided:
        return ["No verified case has a reviewer's decision yet."]
    return [f"Malignant lesions a reviewer sent for biopsy or excision: {r.biopsy_malignant.text()}; the model marked "
            f"the same lesions {r.model_mark}: {r.model_malignant.text()}.",
            f"Benign lesions a reviewer sent for biopsy or excision: {r.biopsy_benign.text()}; the model marked them "
            f"{r.model_mark}: {r.model_benign.text()}.",
            f"Where a reviewer disagreed and gave a diagnosis, that diagnosis matched the outcome in "
            f"{r.own_diagnosis_right.text()}; the model's call on the same cases did in {r.model_right_on_them.text()}."]


REVIEWER_NOTE = ("Counted: each verified case's latest decision, on the same cases as the model's figures. “Sent for "
                 "biopsy or excision” is the decision “Needs biopsy or excision”; a disagreement's diagnosis is compared "
                 "by the model class it counts as.")


def decision_table(record: ClinicRecord) -> list[dict[str, object]]:
    return [{"Latest decision": d.label, "Malignant": d.malignant, "Benign": d.benign} for d in record.reviewers.counts]


def refit_table(refit: LevelRefit) -> list[dict[str, object]]:
    def level(value: float | None) -> str:
        return "—" if value is None else f"{value * 100:.1f} %"

    def high_level(net: float | None, high: float | None) -> str:
        """High starts at the higher of its level and the net's (`RiskTiers.tier`): where that is the net's, every
        lesion the net marks is High and nothing is left for Cannot exclude."""
        if high is None or net is None:
            return level(high)
        return level(high) if high > net else f"{level(net)} (its fitted {level(high)} lies below the net: no Cannot exclude)"

    return [
        {"": "Safety net's level (Cannot exclude from)", "Current": level(refit.current_net),
         "Refit on this clinic": level(refit.net_level)},
        {"": "High from", "Current": high_level(refit.current_net, refit.current_high),
         "Refit on this clinic": high_level(refit.net_level, refit.high_level)},
        {"": "The net fitted to keep (all cases)", "Current": "95 % (held-out HAM10000)",
         "Refit on this clinic": "—" if refit.target is None else _percent(refit.target)},
        {"": "Malignant lesions kept in High or Cannot exclude", "Current": refit.current_kept.text(),
         "Refit on this clinic": refit.cv_kept.text() + " (cross-validated)" if refit.cv_kept.total else "—"},
        {"": "Benign lesions reaching High", "Current": refit.current_benign_high.text(),
         "Refit on this clinic": refit.cv_benign_high.text() + " (cross-validated)" if refit.cv_benign_high.total else "—"},
    ]


def fold_table(refit: LevelRefit) -> list[dict[str, object]]:
    return [{"Fold": f.fold, "Patients held out": f.patients, "Safety net's level": f"{f.net_level * 100:.1f} %",
             "High from": f"{max(f.net_level, f.high_level) * 100:.1f} %", "Held-out malignant kept": f.kept.text(),
             "Held-out benign in High": f.benign_high.text()} for f in refit.folds]


def temperature_text(refit: LevelRefit) -> str:
    t = refit.temperature
    if t is None:
        return "The temperature was not refitted."
    if t.refit is None:
        return f"Temperature {t.current:.3f} (current). {t.note}"
    return (f"Temperature: current {t.current:.3f}, refitted {t.refit:.3f} on {t.cases} verified cases with a "
            f"diagnosis among the model's classes. Held out by patient, the mean negative log-likelihood of the outcome's "
            f"class is {t.current_loss:.3f} with the current temperature and {t.refit_loss:.3f} with a refitted one "
            f"(lower is better). {t.note}")


ADOPTION_NOTE = ("Adopting a refit that passes its guards makes the installed model run with these levels: another "
                 "model identity, named in every result made with it (results made before keep theirs). It is "
                 "recorded in the audit trail and undone by returning to the model card's levels, recorded too. The "
                 "temperature is not adopted.")


def levels_to_adopt(refit: LevelRefit, base_identity: str, adopted_by: str,
                    adopted_at: dt.datetime | None = None) -> ClinicLevels:
    """The refit's levels as the clinic adopts them for the model of `base_identity` (the card as installed, without
    levels adopted before). ValueError where the refit was refused: a refused refit is never adopted."""
    if refit.refused or refit.net_level is None or refit.high_level is None or refit.cv_kept.value is None:
        raise ValueError("a refused refit cannot be adopted: " + " ".join(refit.refusals))
    return ClinicLevels(base_identity, refit.net_level, refit.high_level, adopted_by,
                        adopted_at or dt.datetime.now(dt.UTC), refit.malignant, refit.benign, refit.cv_kept.value)


def levels_text(levels: ClinicLevels | None, card_net: float | None, card_high: float | None) -> str:
    """One line on the levels in force, for the clinic page and the model card page."""
    card = (f"the model card's levels (safety net {_level(card_net)}, High {_level(card_high)})")
    if levels is None:
        return f"New analyses use {card}."
    return (f"New analyses use this clinic's levels, adopted by {levels.adopted_by} on {levels.adopted_at:%Y-%m-%d}: "
            f"safety net {_level(levels.net)}, High {_level(max(levels.high, levels.net))} (fitted on {levels.malignant} "
            f"verified malignant and {levels.benign} benign lesions; cross-validated by patient they kept "
            f"{_percent(levels.kept_held_out)} of the malignant ones in High or Cannot exclude), in place of {card}.")


def _level(value: float | None) -> str:
    return "none" if value is None else f"{value * 100:.1f} %"


def _table_block(rows: list[dict[str, object]], caption: str = "") -> TableBlock:
    header = tuple(rows[0]) if rows else ()
    return TableBlock(header, rows_of([list(r.values()) for r in rows]), caption)


def clinic_record_report(record: ClinicRecord, generated_by: str, generated_at: dt.datetime,
                         refit: LevelRefit | None = None) -> TableReport:
    sections = [
        Section("Which cases count", (VERIFICATION_RULE,)),
        Section("Risk tiers against the outcome", tables=(_table_block(tier_table(record)),),
                paragraphs=(f"Verified malignant lesions in High or Cannot exclude: {record.kept_by_net.text()}.",),
                notes=("Per tier: its malignant lesions among all verified malignant ones, its benign lesions among all "
                       "verified benign ones, and the share of its lesions that were malignant; 95 % Wilson intervals.",)),
        Section("The call against the outcome", tables=(_table_block(confusion_table(record)),),
                paragraphs=(f"The call matched the outcome's class in {record.confusion.right.text()}; "
                            f"{record.confusion.without_class} verified case(s) have no diagnosis to compare with.",)),
        Section("Manual-check flags", tuple(flag_lines(record)), notes=(FLAG_NOTE,)),
        Section("Malignancy probability against the outcome", tables=(_table_block(reliability_table(record)),)),
        Section("The reviewers' decisions", tuple(reviewer_lines(record)),
                tables=(_table_block(decision_table(record)),) if record.reviewers.counts else (), notes=(REVIEWER_NOTE,)),
    ]
    if refit is not None:
        sections.append(Section("Refit of the risk levels to this clinic", (refit.verdict, temperature_text(refit),
                                                                           ADOPTION_NOTE),
                                tables=tuple(t for t in (_table_block(refit_table(refit)),
                                                         _table_block(fold_table(refit), "Each fold, held out by patient"))
                                             if t.rows)))
    return TableReport("The model's record at this clinic", generated_by, generated_at,
                       (record.model_text, record.judgement_text), tuple(sections))


def clinic_record_pdf(record: ClinicRecord, generated_by: str, generated_at: dt.datetime | None = None,
                      refit: LevelRefit | None = None) -> bytes:
    return table_report_pdf(clinic_record_report(record, generated_by, generated_at or dt.datetime.now(dt.UTC), refit))
