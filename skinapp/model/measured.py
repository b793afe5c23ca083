"""The model card's measured figures, typed: what `python -m skinapp evaluate` wrote into the card's `metrics` (and
into `evaluation/metrics.json`), read through attributes rather than string keys. No torch, no numpy.

The JSON is the record: `CardMetrics.from_dict(raw).to_dict() == raw`, with the keys in the order they were read.
Each section keeps the keys this code does not know in `extra`, so a card written by a newer `evaluate` loses
nothing when an older program saves it. A figure a section may lack (one added to `evaluate` later, or one only some
check sets have) is None when absent, and stays absent when written back.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any, ClassVar, Self


@dataclass(frozen=True)
class Codec:
    """How one field is read from its JSON value and written back to it."""

    read: Callable[[Any], Any]
    write: Callable[[Any], Any]


NUMBERS = Codec(tuple, list)
MATRIX = Codec(lambda rows: tuple(tuple(row) for row in rows), lambda rows: [list(row) for row in rows])


def section(kind: type[Figures]) -> Codec:
    """A nested section (None stays None)."""
    return Codec(lambda raw: None if raw is None else kind.from_dict(raw),
                 lambda value: None if value is None else value.to_dict())


def sections(kind: type[Figures]) -> Codec:
    """A list of sections, read as a tuple."""
    return Codec(lambda raw: tuple(kind.from_dict(item) for item in raw),
                 lambda values: [value.to_dict() for value in values])


def named_sections(kind: type[Figures]) -> Codec:
    """Sections by name (check sets, risk tiers), in the order written (None stays None)."""
    return Codec(lambda raw: None if raw is None else {name: kind.from_dict(item) for name, item in raw.items()},
                 lambda values: None if values is None else {name: value.to_dict() for name, value in values.items()})


def _required(spec: Field) -> bool:
    return spec.default is MISSING and spec.default_factory is MISSING


@dataclass(frozen=True)
class Figures:
    """One section of measured figures. `extra`: the keys this code does not know, kept as read; `key_order`: the
    keys as read, so that writing the section back gives the same JSON (empty for a section made in code)."""

    extra: dict[str, Any] = field(default_factory=dict, kw_only=True, repr=False)
    key_order: tuple[str, ...] = field(default=(), kw_only=True, repr=False, compare=False)

    CODECS: ClassVar[dict[str, Codec]] = {}  # fields that are not plain JSON values (sections, tuples)

    @classmethod
    def _figure_fields(cls) -> list[Field]:
        return [spec for spec in fields(cls) if spec.name not in ("extra", "key_order")]

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Self:
        """Raises ValueError when a figure every evaluation writes is missing, TypeError when `raw` is no object."""
        if not isinstance(raw, Mapping):
            raise TypeError(f"the measured figures' {cls.__name__} section is not an object")
        specs = cls._figure_fields()
        missing = [spec.name for spec in specs if _required(spec) and spec.name not in raw]
        if missing:
            raise ValueError(f"the measured figures' {cls.__name__} section lacks {', '.join(missing)}")
        values = {}
        for spec in specs:
            if spec.name in raw:
                codec = cls.CODECS.get(spec.name)
                values[spec.name] = codec.read(raw[spec.name]) if codec is not None else copy.deepcopy(raw[spec.name])
        known = {spec.name for spec in specs}
        extra = {key: copy.deepcopy(value) for key, value in raw.items() if key not in known}
        return cls(**values, extra=extra, key_order=tuple(raw))

    def to_dict(self) -> dict[str, Any]:
        written: dict[str, Any] = {}
        for spec in self._figure_fields():
            value = getattr(self, spec.name)
            if value is None and not _required(spec) and spec.name not in self.key_order:
                continue  # a figure this section never had
            codec = self.CODECS.get(spec.name)
            written[spec.name] = codec.write(value) if codec is not None else copy.deepcopy(value)
        written.update(copy.deepcopy(self.extra))
        order = [key for key in self.key_order if key in written]
        order += [key for key in written if key not in self.key_order]
        return {key: written[key] for key in order}


@dataclass(frozen=True)
class ClassificationFigures(Figures):
    """The held-out calls and probabilities, with or without metadata (`metrics.classification_report`)."""

    n_images: int
    balanced_accuracy: float
    accuracy: float
    malignant_auc: float
    sensitivity_at_90_specificity: float
    expected_calibration_error: float   # uncalibrated
    recall: dict[str, float]            # by class
    precision: dict[str, float]         # by class
    confusion_matrix: tuple[tuple[int, ...], ...]   # rows: the true class; columns: the call
    melanoma_sensitivity_at_90_specificity: float | None = None   # P(MEL) against everything else; with metadata only

    CODECS: ClassVar[dict[str, Codec]] = {"confusion_matrix": MATRIX}


@dataclass(frozen=True)
class MaskFigures(Figures):
    """The lesion outline against the HAM10000 masks."""

    method: str
    jaccard: float
    dice: float
    thresholded_jaccard_065: float   # ISIC's: a Jaccard below 0.65 counts 0


@dataclass(frozen=True)
class CalibrationFigures(Figures):
    """What temperature scaling did to the calibration error, measured cross-fitted by lesion."""

    method: str
    temperature: float
    ece_before: float
    ece_after: float
    ece_after_note: str
    ece_before_without_metadata: float
    ece_after_without_metadata: float
    malignancy_calibration_error_before: float
    malignancy_calibration_error_after: float
    n_images: int


@dataclass(frozen=True)
class CoveragePoint(Figures):
    """The accuracy on the cases kept when the riskiest go to a manual check, at one coverage."""

    coverage: float
    accuracy: float


@dataclass(frozen=True)
class FlagFigures(Figures):
    """The fitted manual-check flag on the held-out images."""

    n_images: int
    error_rate: float
    flagged_share: float
    errors_caught: float
    accuracy_unflagged: float
    accuracy_flagged: float | None
    coverage_accuracy: tuple[CoveragePoint, ...]
    weights: dict[str, float]          # the standardised signs' weights in the logistic model of an error
    ood_threshold: float | None
    ood_share_of_held_out: float
    flagged_by_score_share: float | None = None   # absent in cards from before the budget counted the always-checked
    always_checked_share: float | None = None

    CODECS: ClassVar[dict[str, Codec]] = {"coverage_accuracy": sections(CoveragePoint)}


@dataclass(frozen=True)
class SimilarCaseFigures(Figures):
    """How the vote of the nearest labelled images relates to the classifier's call on held-out images."""

    index_images: int
    knn_k: int
    knn_agrees_with_classifier: float
    knn_accuracy: float
    classifier_accuracy: float
    accuracy_when_they_agree: float | None
    accuracy_when_they_disagree: float | None
    note: str


@dataclass(frozen=True)
class SetFigures(Figures):
    """The conformal prediction sets on one set of images (`trust.conformal.set_report`)."""

    n_images: int
    coverage: float
    coverage_by_class: dict[str, float]
    mean_set_size: float
    single_class_share: float
    malignant_cases_with_a_malignant_class_in_set: float | None


@dataclass(frozen=True)
class ConformalFigures(Figures):
    """The fitted conformal sets and their figures on the out-of-fold images."""

    method: str
    threshold: float
    coverage: float              # reached on the out-of-fold images (the target is `target_coverage`)
    calibration_images: int
    target_coverage: float
    fitted_on: str
    n_images: int
    coverage_by_class: dict[str, float]
    mean_set_size: float
    single_class_share: float
    malignant_cases_with_a_malignant_class_in_set: float | None
    note: str


@dataclass(frozen=True)
class NetFigures(Figures):
    """The safety net on one set of images (`trust.safety_net.net_report`)."""

    n_images: int
    malignant_sensitivity: float | None
    share_marked: float
    benign_marked: float | None


@dataclass(frozen=True)
class SafetyNetFigures(Figures):
    """The fitted safety net and its figures on the out-of-fold images."""

    method: str
    threshold: float
    target_sensitivity: float
    fitted_on: str
    n_images: int
    malignant_sensitivity: float | None
    share_marked: float
    benign_marked: float | None
    note: str


@dataclass(frozen=True)
class TierFigures(Figures):
    """One malignancy risk tier on one set of images (`trust.risk.tier_report`)."""

    n_images: int
    malignant_share: float | None   # of all malignant lesions, those in this tier
    benign_share: float | None
    ppv: float | None
    number_needed_to_excise: float | None


@dataclass(frozen=True)
class TierLevels(Figures):
    high: float | None
    cannot_exclude: float | None   # the safety net's level


@dataclass(frozen=True)
class RiskTierFigures(Figures):
    """The fitted risk tiers and, by tier, their figures on the out-of-fold images."""

    method: str
    high: float | None
    benign_share: float            # the share of held-out benign lesions the High level lets through
    fitted_on: str
    levels: TierLevels
    tiers: dict[str, TierFigures]
    note: str

    CODECS: ClassVar[dict[str, Codec]] = {"levels": section(TierLevels), "tiers": named_sections(TierFigures)}


@dataclass(frozen=True)
class TauChoiceFigures(Figures):
    """How the decision rule's τ was chosen: the one-standard-error rule over the candidates."""

    best_tau: float
    standard_error: float
    balanced_accuracy_by_tau: dict[str, float]   # keyed by τ as written (`f"{tau:g}"`)


@dataclass(frozen=True)
class DecisionRuleFigures(Figures):
    """The balanced decision rule and what it changes against the highest probability."""

    method: str
    prior: tuple[float, ...]
    tau: float
    fitted_on: str
    balanced_accuracy_argmax: float
    balanced_accuracy_balanced_rule: float   # cross-fitted (`cross_fitting`)
    balanced_accuracy_balanced_rule_in_sample: float
    cross_fitting: str
    cross_fitted_taus: tuple[float, ...]
    recall_argmax: dict[str, float]
    recall_balanced_rule: dict[str, float]
    accuracy_argmax: float
    accuracy_balanced_rule: float
    tau_choice: TauChoiceFigures | None = None   # absent in cards from before the one-standard-error rule

    CODECS: ClassVar[dict[str, Codec]] = {"prior": NUMBERS, "cross_fitted_taus": NUMBERS,
                                          "tau_choice": section(TauChoiceFigures)}


@dataclass(frozen=True)
class CheckFigures(Figures):
    """The flags, sets and safety net on one check set (out of fold, shifted copy, ISIC 2017 `val`)."""

    data: str
    n_images: int
    error_rate: float
    ece: float
    flagged_share: float
    errors_caught: float | None
    accuracy_unflagged: float | None
    safety_net: NetFigures
    balanced_accuracy: float | None = None                 # not written for the out-of-fold images
    melanomas_flagged_or_suspicious: float | None = None   # not written for the out-of-fold images
    conformal: SetFigures | None = None                    # None: the model had no sets
    risk_tiers: dict[str, TierFigures] | None = None       # None: the model had no tiers
    shifts_applied: dict[str, int] | None = None           # the shifted copy only: images per shift

    CODECS: ClassVar[dict[str, Codec]] = {"safety_net": section(NetFigures), "conformal": section(SetFigures),
                                          "risk_tiers": named_sections(TierFigures)}


@dataclass(frozen=True)
class DeliverySizeFigures(Figures):
    """The resolution check at one delivery size."""

    factor: float
    balanced_accuracy: float
    malignant_auc: float | None
    benign_above_net: float | None   # benign lesions at or above the safety net's level


@dataclass(frozen=True)
class ResolutionTargets(Figures):
    balanced_accuracy_range: float
    malignant_auc_range: float


@dataclass(frozen=True)
class ResolutionFigures(Figures):
    """Held-out images delivered larger than the model learnt them: the figures by size, and their spread."""

    data: str
    n_images: int
    rows: tuple[DeliverySizeFigures, ...]
    balanced_accuracy_range: float
    malignant_auc_range: float | None
    targets: ResolutionTargets

    CODECS: ClassVar[dict[str, Codec]] = {"rows": sections(DeliverySizeFigures), "targets": section(ResolutionTargets)}


@dataclass(frozen=True)
class ExternalFigures(Figures):
    """The whole ensemble on ISIC 2017 `val` (other centres and dermatoscopes, never trained on)."""

    data: str
    n_images: int
    classes_present: dict[str, int]
    melanoma_auc: float | None
    malignant_auc: float | None
    melanoma_sensitivity_at_90_specificity: float | None
    balanced_accuracy_balanced_rule: float
    balanced_accuracy_argmax: float
    balanced_accuracy_note: str
    recall_balanced_rule: dict[str, float]   # the classes present only
    recall_argmax: dict[str, float]
    tta_views: int


SCORED_HELD_OUT = "each patient by the member that never trained on them"
SCORED_BY_ENSEMBLE = "the whole ensemble (no member trained on these patients)"


@dataclass(frozen=True)
class ScreeningFigures(Figures):
    """The SIIM-ISIC 2020 screening population (`evaluation/screening.py`): who scored it, the benign share at or
    above the safety net, the melanomas kept."""

    data: str
    scored_by: str
    images: int
    melanomas: int
    benign: int
    benign_above_net: float | None
    melanomas_at_or_above_net: int
    melanoma_auc: float | None
    tiers_benign: dict[str, int]
    tiers_melanoma: dict[str, int]
    metadata: str
    tta_views: int
    model_version: str | None = None


@dataclass(frozen=True)
class CardMetrics(Figures):
    """Everything `evaluate` measured; every section None (and `evaluated` False) for a model not evaluated."""

    evaluated_on: str | None = None
    folds: tuple[int, ...] | None = None
    with_metadata: ClassificationFigures | None = None
    without_metadata: ClassificationFigures | None = None
    mask: MaskFigures | None = None
    model_version: str | None = None
    tta: bool | None = None
    members: int | None = None      # absent in cards from before ensembles
    tta_views: int | None = None
    calibration: CalibrationFigures | None = None
    flags: FlagFigures | None = None
    similar_cases: SimilarCaseFigures | None = None
    conformal: ConformalFigures | None = None
    safety_net: SafetyNetFigures | None = None
    risk_tiers: RiskTierFigures | None = None
    decision_rule: DecisionRuleFigures | None = None
    checks: dict[str, CheckFigures] | None = None   # by check set: out_of_fold, shifted_ham, isic2017_val
    resolution: ResolutionFigures | None = None
    external: ExternalFigures | None = None
    screening: ScreeningFigures | None = None

    CODECS: ClassVar[dict[str, Codec]] = {
        "folds": NUMBERS, "with_metadata": section(ClassificationFigures),
        "without_metadata": section(ClassificationFigures), "mask": section(MaskFigures),
        "calibration": section(CalibrationFigures), "flags": section(FlagFigures),
        "similar_cases": section(SimilarCaseFigures), "conformal": section(ConformalFigures),
        "safety_net": section(SafetyNetFigures), "risk_tiers": section(RiskTierFigures),
        "decision_rule": section(DecisionRuleFigures), "checks": named_sections(CheckFigures),
        "resolution": section(ResolutionFigures), "external": section(ExternalFigures),
        "screening": section(ScreeningFigures),
    }

    @property
    def evaluated(self) -> bool:
        return bool(self.extra) or any(getattr(self, spec.name) is not None for spec in self._figure_fields())

    def __bool__(self) -> bool:
        return self.evaluated

    @property
    def views(self) -> int:
        """Test-time views the figures were measured with (cards from before `tta_views` say only `tta`)."""
        if self.tta_views is not None:
            return self.tta_views
        return 4 if self.tta else 1

    @property
    def check_sets(self) -> dict[str, CheckFigures]:
        return self.checks or {}
