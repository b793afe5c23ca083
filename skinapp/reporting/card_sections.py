"""The measured parts of MODEL_CARD.md: performance, the decision rule, the external check, targets,
calibration and flags, similar cases, experiments. Each renders figures written by `python -m skinapp evaluate`
(or bench/ablation.py) and nothing else."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from skinapp.model.card import ModelCard
from skinapp.model.measured import SCORED_BY_ENSEMBLE, CalibrationFigures, CardMetrics, CheckFigures, FlagFigures
from skinapp.trust.flags import FIXED_CHECKS
from skinapp.trust.risk import TIER_NAMES
from skinapp.vocab import CLASSES, STRUCTURE_NAMES


def metrics_section(metrics: CardMetrics, pictures: str = "evaluation/") -> list[str]:
    """pictures: where the evaluation's PNGs are, relative to the page (the card sits beside `evaluation/`)."""
    m, image_only = metrics.with_metadata, metrics.without_metadata
    if m is None or image_only is None:
        return ["**Not evaluated.** Run `python -m skinapp evaluate … --update-card` before using this model."]
    lines = [
        f"Measured by `python -m skinapp evaluate` on {metrics.evaluated_on} — folds {list(metrics.folds or ())}, "
        f"{m.n_images} images, {views_text(metrics)}.",
        *_ensemble_note(metrics),
        "",
        "| input | balanced accuracy | accuracy | malignant AUC | sensitivity at 90 % specificity | ECE (uncalibrated) |",
        "|---|---|---|---|---|---|",
    ]
    for figures, name in ((m, "image + age, sex, site"), (image_only, "image only")):
        lines.append(
            f"| {name} | {figures.balanced_accuracy:.3f} | {figures.accuracy:.3f} | {figures.malignant_auc:.3f} | "
            f"{figures.sensitivity_at_90_specificity:.3f} | {figures.expected_calibration_error:.3f} |"
        )
    lines += [
        "",
        "Per class (image + metadata):",
        "",
        "| | " + " | ".join(CLASSES) + " |",
        "|---|" + "---|" * len(CLASSES),
        _recall_row("recall", m.recall),
        _recall_row("precision", m.precision),
    ]
    if metrics.mask is not None:
        mask = metrics.mask
        lines += ["", f"Lesion outline against the HAM10000 masks ({mask.method}): Jaccard **{mask.jaccard:.3f}**, "
                      f"Dice {mask.dice:.3f}, ISIC thresholded Jaccard (J < 0.65 counts 0) "
                      f"{mask.thresholded_jaccard_065:.3f}."]
    if m.melanoma_sensitivity_at_90_specificity is not None:
        lines += ["", f"Melanoma against everything else (P(MEL)): sensitivity at 90 % specificity "
                      f"**{m.melanoma_sensitivity_at_90_specificity:.3f}**."]
    lines += ["", f"![confusion matrix]({pictures}confusion.png)", "", f"![ROC]({pictures}roc.png)", "",
              *_decision_rule_lines(metrics), *_external_lines(metrics), *_targets(metrics)]
    return lines


def _ensemble_note(metrics: CardMetrics) -> list[str]:
    if metrics.members is None or metrics.members <= 1:
        return []
    return ["", f"Each HAM10000 image is scored by the one member that never trained on it: every other member of the "
                f"{metrics.members}-member ensemble trained on it, so no HAM10000 image can measure the whole "
                "ensemble without a leak. The figures below are therefore one member's (with test-time views); the "
                "whole ensemble is measured on the external check (ISIC 2017 `val`) further down."]


def _recall_row(name: str, recall: dict[str, float]) -> str:
    return f"| {name} | " + " | ".join(f"{recall[c]:.2f}" if c in recall else "–" for c in CLASSES) + " |"


def _decision_rule_lines(metrics: CardMetrics) -> list[str]:
    rule = metrics.decision_rule
    if rule is None:
        return []
    choice = rule.tau_choice
    how = ("tuned on the out-of-fold predictions for balanced accuracy" if choice is None else
           "the smallest τ whose out-of-fold balanced accuracy is within one standard error of the best, the "
           f"one-standard-error rule; the best is at τ = {choice.best_tau:.2f}, the standard error "
           f"{choice.standard_error:.3f} by a bootstrap over lesions. The values of τ within that error differ "
           "mainly in how often a nevus is called melanoma, and the smallest does so least")
    return [
        "### The top diagnosis: a decision rule balanced over the classes",
        "",
        "The app and `predict` show as top diagnosis the class with the largest calibrated probability divided by the "
        f"model's effective class prior raised to τ = {rule.tau:.2f} (post-hoc prior correction, Menon et al. 2021; τ: "
        f"{how}). The probabilities shown are not changed; rarer diagnoses are called more often, at the cost of more "
        "false alarms among nevi.",
        "",
        "| top diagnosis by | balanced accuracy | accuracy |",
        "|---|---|---|",
        f"| highest probability | {rule.balanced_accuracy_argmax:.3f} | {rule.accuracy_argmax:.3f} |",
        f"| balanced rule ({rule.cross_fitting}) | **{rule.balanced_accuracy_balanced_rule:.3f}** | "
        f"{rule.accuracy_balanced_rule:.3f} |",
        "",
        "| recall | " + " | ".join(CLASSES) + " |",
        "|---|" + "---|" * len(CLASSES),
        _recall_row("highest probability", rule.recall_argmax),
        _recall_row("balanced rule", rule.recall_balanced_rule),
        "",
    ]


def _external_lines(metrics: CardMetrics) -> list[str]:
    ext = metrics.external
    if ext is None:
        return ["### External check", "", "**Not run.** `evaluate --isic2017 …` scores the model on images from other "
                "centres and dermatoscopes (ISIC 2017 `val`).", ""]
    present = ", ".join(f"{c} {n}" for c, n in ext.classes_present.items())
    return [
        "### External check: ISIC 2017 `val` (other centres and dermatoscopes, never trained on)",
        "",
        f"{ext.n_images} images ({present}), scored by the whole ensemble with calibration and the balanced rule "
        "fitted on HAM10000 only.",
        "",
        "| melanoma AUC | malignant AUC | melanoma sensitivity at 90 % specificity | balanced accuracy (balanced rule) "
        "| balanced accuracy (highest probability) |",
        "|---|---|---|---|---|",
        f"| **{_number(ext.melanoma_auc)}** | {_number(ext.malignant_auc)} | "
        f"{_number(ext.melanoma_sensitivity_at_90_specificity)} | {ext.balanced_accuracy_balanced_rule:.3f} | "
        f"{ext.balanced_accuracy_argmax:.3f} |",
        "",
        "Balanced accuracy is the mean recall over the classes present, the call chosen among all seven. Recall "
        "(balanced rule): " + ", ".join(f"{c} {r:.2f}" for c, r in ext.recall_balanced_rule.items()) + ".",
        "",
    ]


@dataclass(frozen=True)
class Target:
    """One of the model's targets: what, its figure in the card's metrics (None: not measured), the bound, and
    whether the figure is a share (shown and compared in percentage points)."""

    name: str
    figure: Callable[[CardMetrics], float | None]
    bound: float
    sense: str  # "≥" or "≤"
    share: bool = False


TARGETS: tuple[Target, ...] = (
    Target("balanced accuracy (highest probability)",
           lambda m: m.with_metadata.balanced_accuracy if m.with_metadata else None, 0.80, "≥"),
    Target("balanced accuracy (balanced rule)",
           lambda m: m.decision_rule.balanced_accuracy_balanced_rule if m.decision_rule else None, 0.80, "≥"),
    Target("malignant AUC", lambda m: m.with_metadata.malignant_auc if m.with_metadata else None, 0.94, "≥"),
    Target("melanoma AUC on the external check", lambda m: m.external.melanoma_auc if m.external else None, 0.92, "≥"),
    Target("share of benign lesions at or above the safety net, out of fold",
           lambda m: m.safety_net.benign_marked if m.safety_net else None, 0.30, "≤", share=True),
    Target("mask Jaccard", lambda m: m.mask.jaccard if m.mask else None, 0.85, "≥"),
    Target("ECE after calibration", lambda m: m.calibration.ece_after if m.calibration else None, 0.03, "≤"),
    Target("share of errors caught by the manual-check flag (≤ 20 % flagged)",
           lambda m: m.flags.errors_caught if m.flags else None, 0.60, "≥", share=True))


def _flagged(check: CheckFigures) -> float | None:
    return check.flagged_share


def _errors_caught(check: CheckFigures) -> float | None:
    return check.errors_caught


def _set_coverage(check: CheckFigures) -> float | None:
    return check.conformal.coverage if check.conformal else None


def _net_sensitivity(check: CheckFigures) -> float | None:
    return check.safety_net.malignant_sensitivity


# The trust checks' targets: (check, what, the figure in the check, lowest, highest).
CHECK_TARGETS: tuple[tuple[str, str, Callable[[CheckFigures], float | None], float | None, float | None], ...] = (
    ("out_of_fold", "flagged", _flagged, None, 0.20),
    ("out_of_fold", "errors caught by the flag", _errors_caught, 0.60, None),
    ("shifted_ham", "flagged", _flagged, 0.10, 0.30),
    ("shifted_ham", "errors caught by the flag", _errors_caught, 0.50, None),
    ("shifted_ham", "conformal coverage", _set_coverage, 0.85, None),
    ("shifted_ham", "safety net: malignant lesions kept", _net_sensitivity, 0.90, None),
    ("isic2017_val", "flagged", _flagged, 0.10, 0.30),
    ("isic2017_val", "errors caught by the flag", _errors_caught, 0.50, None),
    ("isic2017_val", "conformal coverage", _set_coverage, 0.85, None),
    ("isic2017_val", "safety net: malignant lesions kept", _net_sensitivity, 0.90, None),
)
CHECK_NAMES = {"out_of_fold": "out-of-fold HAM10000", "shifted_ham": "shifted HAM10000 copy",
               "isic2017_val": "ISIC 2017 val"}


def _verdict(value: float, lowest: float | None, highest: float | None, points: bool = False) -> str:
    """"met", or "not met" and by how much (in percentage points where the figure is a share)."""
    def gap(x: float) -> str:
        return f"{x * 100:.1f} percentage points" if points else f"{x:.3f}"

    if lowest is not None and value < lowest:
        return f"**not met** (short by {gap(lowest - value)})"
    if highest is not None and value > highest:
        return f"**not met** (over by {gap(value - highest)})"
    return "met"


def _targets(metrics: CardMetrics) -> list[str]:
    lines = ["Against the project's targets for this model:", ""]
    for target in TARGETS:
        value = target.figure(metrics)
        if value is None:
            continue
        lowest, highest = (target.bound, None) if target.sense == "≥" else (None, target.bound)
        shown, bound = ((f"{value:.1%}", f"{target.bound:.0%}") if target.share
                        else (f"{value:.3f}", f"{target.bound:.2f}"))
        lines.append(f"- {target.name} {shown} (target {target.sense} {bound}): "
                     f"{_verdict(value, lowest, highest, points=target.share)}")
    return [*lines, ""]


def _check_targets(metrics: CardMetrics) -> list[str]:
    checks, lines = metrics.check_sets, []
    for check, name, figure, lowest, highest in CHECK_TARGETS:
        value = figure(checks[check]) if check in checks else None
        if value is None:
            continue
        wanted = (f"{lowest:.0%}–{highest:.0%}" if lowest is not None and highest is not None
                  else f"≥ {lowest:.0%}" if lowest is not None else f"≤ {highest:.0%}")
        lines.append(f"- {CHECK_NAMES[check]}, {name}: {value:.1%} (target {wanted}): "
                     f"{_verdict(value, lowest, highest, points=True)}")
    return ["Against the targets for the flags, sets and safety net:", "", *lines, ""] if lines else []


def _share(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}%}"


def _number(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _calibration_on_checks(metrics: CardMetrics) -> str:
    """The same temperature on the other check sets: with an ensemble it was fitted on one member's predictions
    and is applied to the averaged ones, and other clinics' images drift from HAM10000 as well."""
    shown = [f"{CHECK_NAMES.get(name, name)} {check.ece:.3f}" for name, check in metrics.check_sets.items()
             if name != "out_of_fold" and check.ece is not None]
    if not shown:
        return ""
    members = metrics.members if metrics.members is not None else 1
    scored = f" (each scored by one member, while the app averages all {members})" if members > 1 else ""
    return (f" The temperature is fitted on HAM10000 images only{scored}; the top diagnosis's calibration error on "
            f"the other checks: {', '.join(shown)}. Read the probabilities of images from other clinics as less "
            "exact than the held-out figures suggest.")


def _calibration_rose(c: CalibrationFigures) -> str:
    """Why the error can rise: the temperature minimises the log-loss, not this binned error."""
    if c.ece_after <= c.ece_before or c.temperature == 1.0:
        return ""
    change = "softens" if c.temperature > 1.0 else "sharpens"
    return (f", higher: the temperature minimises the log-loss, not this binned error, and it {change} the "
            "probabilities, which here moved them away from how often the top diagnosis was right (the reliability "
            "diagram below shows where)")


def _flag_parts(flags: FlagFigures) -> str:
    if flags.always_checked_share is None:  # fitted before the budget counted the always-checked cases
        return ""
    return (f" ({flags.flagged_by_score_share:.1%} by the combined score, {flags.always_checked_share:.1%} "
            "always checked)")


def trust_section(card: ModelCard) -> list[str]:
    metrics = card.metrics
    c, f, s = metrics.calibration, metrics.flags, metrics.similar_cases
    if c is None or f is None or s is None:
        return ["## Calibration and flags", "", "**Not fitted.** Probabilities are uncalibrated and the manual-check "
                "flags use provisional thresholds until `python -m skinapp evaluate … --update-card` is run.", ""]
    weights = sorted(f.weights.items(), key=lambda kv: -abs(kv[1]))
    return [
        "## Calibration",
        "",
        f"Temperature scaling (T = {c.temperature:.3f}, fitted on the {c.n_images} out-of-fold predictions; "
        "it changes no prediction's ranking of the classes, so the figures above stay as they are). Expected "
        f"calibration error of the top diagnosis: **{c.ece_before:.3f} before, {c.ece_after:.3f} after** "
        f"({c.ece_after_note}){_calibration_rose(c)}; without metadata {c.ece_before_without_metadata:.3f} → "
        f"{c.ece_after_without_metadata:.3f}. Malignancy probability against the malignant/benign truth: "
        f"calibration error {c.malignancy_calibration_error_before:.3f} → {c.malignancy_calibration_error_after:.3f}."
        + _calibration_on_checks(metrics),
        "",
        "![reliability diagram](evaluation/reliability.png)",
        "",
        "## When the model flags a case for a manual check",
        "",
        f"Fitted on the same {f.n_images} held-out images, cross-fitted by lesion. A few of the model's own "
        "uncertainty signs (confidence in the top call, margin, entropy, disagreement across test-time views and "
        "ensemble members, mutual information, malignancy spread, size of the conformal set, whether the most similar "
        "labelled images share the diagnosis) are combined by a logistic model of its errors whose weights may not be "
        "negative, so more doubt never lowers the risk and the flags rise rather than go quiet on unfamiliar images; "
        "the threshold flags at most 20 % of held-out cases, those always checked (below) counted in. Every flag "
        "names the signs that raised it.",
        "",
        f"- Flagged: {f.flagged_share:.1%} of held-out cases{_flag_parts(f)}; they hold **{f.errors_caught:.1%} "
        f"of the model's errors** (error rate {f.error_rate:.1%} overall).",
        f"- Accuracy on unflagged cases {_number(f.accuracy_unflagged)}, on flagged cases {_number(f.accuracy_flagged)}.",
        f"- Always a manual check, whatever the score: {', '.join(FIXED_CHECKS.values())}, or an image farther "
        f"from the training images than {_number(f.ood_threshold, 1)} (Mahalanobis distance of the encoder's pooled "
        f"features; {f.ood_share_of_held_out:.1%} of held-out dermoscopy images are that far).",
        "- Weights (standardised; signs left out have weight 0): " + ", ".join(f"{k} {v:+.2f}" for k, v in weights) + ".",
        "",
        *_sets_and_net_lines(metrics),
        *_risk_tier_lines(metrics),
        *_checks_lines(metrics),
        *_resolution_lines(metrics),
        *_check_targets(metrics),
        "![coverage against accuracy](evaluation/coverage.png)",
        "",
        "## Similar cases",
        "",
        f"The {s.index_images:,} labelled HAM10000 images are indexed by the model's embedding (`embeddings.npz`). "
        f"On held-out images (neighbours of the same lesion excluded), a vote of the {s.knn_k} nearest agrees with the "
        f"classifier for {s.knn_agrees_with_classifier:.1%} of images; the vote alone is right for "
        f"{s.knn_accuracy:.1%}, the classifier for {s.classifier_accuracy:.1%}. When they agree the classifier is "
        f"right {_share(s.accuracy_when_they_agree)} of the time, when they disagree "
        f"{_share(s.accuracy_when_they_disagree)}.",
        "",
    ]


def _net_wording(metrics: CardMetrics) -> str:
    """What the app says at the net: with graded risk the lower tier's words, never the excision wording."""
    if metrics.risk_tiers is not None:
        return "\"malignancy cannot be excluded\" (or \"high risk\" above the High level, below)"
    return "\"suspicious — consider excision\""


def _sets_and_net_lines(metrics: CardMetrics) -> list[str]:
    sets, net = metrics.conformal, metrics.safety_net
    if sets is None or net is None:
        return []
    return [
        "## Prediction sets and the melanoma safety net",
        "",
        f"- **Conformal sets** ({sets.method}, for {sets.target_coverage:.0%} coverage; fitted on "
        f"{sets.fitted_on}): on the out-of-fold images the set held the true diagnosis for "
        f"**{sets.coverage:.1%}** of them, {sets.mean_set_size:.2f} diagnoses on average, a single diagnosis for "
        f"{sets.single_class_share:.1%}. By class: "
        + ", ".join(f"{c} {v:.0%}" for c, v in sets.coverage_by_class.items()) + ".",
        f"- **Safety net**: {_net_wording(metrics)} at a malignancy probability of {net.threshold:.1%} or "
        f"more, chosen so that {net.target_sensitivity:.0%} of held-out malignant lesions (and of their shifted "
        f"copies) reach it. On the out-of-fold images it keeps **{_share(net.malignant_sensitivity)} of malignant "
        f"lesions** and marks {net.share_marked:.1%} of all cases ({_share(net.benign_marked)} of benign ones): "
        "that is its cost, accepted because a missed melanoma is the costliest error. A case above it is never "
        "shown without a warning.",
        "",
    ]




def _risk_tier_lines(metrics: CardMetrics) -> list[str]:
    tiers = metrics.risk_tiers
    if tiers is None:
        return []
    levels = tiers.levels
    lines = [
        "## Graded malignancy risk",
        "",
        "One red warning for every lesion above the safety net stops being read, so the warning is graded by the "
        "calibrated malignancy probability:",
        "",
        f"- **High risk of malignancy — consider excision or biopsy** at {levels.high:.1%} or more: the level that "
        f"at most {tiers.benign_share:.0%} of held-out benign lesions reach.",
        f"- **Malignancy cannot be excluded — a second look or dermoscopic follow-up** from the safety net "
        f"({levels.cannot_exclude:.1%}) up to High. Never the excision wording.",
        "- **Low** below the safety net. Never called benign: the model found nothing that reaches the net.",
        "",
        f"Fitted on {tiers.fitted_on}; {tiers.note}. Per tier, the share of all malignant and of all benign "
        "lesions that fall in it, the share of its lesions that are malignant (PPV) and the lesions excised per "
        "malignant one found (number needed to excise, 1 / PPV):",
        "",
        "| images | tier | malignant lesions in it | benign lesions in it | PPV | number needed to excise |",
        "|---|---|---|---|---|---|",
    ]
    rows = {"out_of_fold": tiers.tiers, **{k: c.risk_tiers for k, c in metrics.check_sets.items()
                                           if k != "out_of_fold" and c.risk_tiers is not None}}
    for key, table in rows.items():
        for tier, row in table.items():
            lines.append(f"| {CHECK_NAMES.get(key, key)} | {TIER_NAMES[tier]} | {_share(row.malignant_share)} | "
                         f"{_share(row.benign_share)} | {_number(row.ppv, 2)} | "
                         f"{_number(row.number_needed_to_excise, 1)} |")
    return [*lines, ""]


def _resolution_lines(metrics: CardMetrics) -> list[str]:
    check = metrics.resolution
    if check is None:
        return []
    targets = check.targets
    lines = [
        "### Does the size a file arrives at matter?",
        "",
        f"{check.data}, then analysed as the app analyses an upload (the safety net's level as fitted). Clinics "
        "send 768×512 scans, 1,024-px copies and 6000×4000 DICOMs; the figures should not move. Target: balanced "
        f"accuracy within {targets.balanced_accuracy_range:.2f} and malignant AUC within "
        f"{targets.malignant_auc_range:.2f} from 1× to 5×.",
        "",
        "| delivered at | balanced accuracy of the call | malignant AUC | benign lesions above the safety net |",
        "|---|---|---|---|",
        *(f"| {row.factor:g}× | {row.balanced_accuracy:.3f} | {_number(row.malignant_auc)} | "
          f"{_share(row.benign_above_net)} |" for row in check.rows),
        "",
        f"Spread from 1× to 5×: balanced accuracy {check.balanced_accuracy_range:.3f} "
        f"({_verdict(check.balanced_accuracy_range, None, targets.balanced_accuracy_range)}), malignant AUC "
        f"{_number(check.malignant_auc_range)} ("
        + (_verdict(check.malignant_auc_range, None, targets.malignant_auc_range)
           if check.malignant_auc_range is not None else "not measured") + "). Enlarged copies of the same "
        "picture are a kind test: a file that is sharper than the training images (a large original shrunk by the "
        "clinic) is not covered by it.",
        "",
    ]
    return lines


def _checks_lines(metrics: CardMetrics) -> list[str]:
    checks = metrics.check_sets
    if not checks:
        return []
    lines = [
        "### Do the flags hold on other images?",
        "",
        "The same measurements on the out-of-fold images, on a copy of held-out images that `evaluate` shifts itself "
        "(two of colour cast, contrast, blur, JPEG compression, scale per image) and on ISIC 2017 `val` (other clinics "
        "and dermatoscopes). Targets: on the shifted copy and ISIC 2017 `val`, 10–30 % flagged, ≥ 50 % of errors caught, "
        "conformal coverage ≥ 85 %, safety net ≥ 90 % of malignant lesions; out-of-fold, ≤ 20 % flagged with ≥ 60 % of "
        "errors caught.",
        "",
        "| images | n | error rate | flagged | errors caught | conformal coverage | mean set size | safety net: malignant "
        "kept | safety net: cases marked | melanomas flagged or suspicious |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, check in checks.items():
        sets, net = check.conformal, check.safety_net
        lines.append(
            f"| {CHECK_NAMES.get(key, key)} | {check.n_images} | {check.error_rate:.1%} | {check.flagged_share:.1%} | "
            f"{_share(check.errors_caught)} | {_share(sets.coverage if sets else None)} | "
            f"{_number(sets.mean_set_size if sets else None, 2)} | "
            f"{_share(net.malignant_sensitivity)} | {net.share_marked:.1%} | "
            f"{_share(check.melanomas_flagged_or_suspicious)} |")
    return [*lines, ""]


def structures_section(card: ModelCard, pictures: str = "evaluation/") -> list[str]:
    """The dermoscopic-structure heads: what they read, how well (held out, against the baseline), what is shown."""
    section = card.structures
    if section is None:
        return []
    lines = [
        "## Dermoscopic structures", "",
        f"Six structures are read from each member's frozen features by a linear head per location, pooled over the "
        f"lesion by σ(M) like the diagnosis; the same head location by location draws the map of where each is seen. "
        f"Labels: {section.source}, {section.images} images, image level only (present or absent; not where, not "
        f"typical or atypical). Measured by {section.folds}-fold cross-validation repeated over {section.seeds} seeds "
        "of the split (nothing tuned on the labels), with a 95 % bootstrap interval; the baseline is a logistic "
        "regression on each member's plain average of its top features. Probabilities are Platt-calibrated on the "
        "held-out logits; the calibration error is cross-fitted.", "",
        "| structure | present | AUC (95 % interval) | baseline AUC | calibration error | shown to clinicians |",
        "|---|---|---|---|---|---|",
    ]
    for f in section.figures:
        lines.append(f"| {f.name} | {f.positives} | {f.auc:.3f} ({f.auc_low:.3f}–{f.auc_high:.3f}) | "
                     f"{f.baseline_auc:.3f} | {f.ece:.3f} | {'yes' if f.shown else 'no'} |")
    missed = [f for f in section.figures if f.auc < 0.75]
    hidden = [f for f in section.figures if not f.shown]
    gain = sum(f.auc - f.baseline_auc for f in section.figures) / len(section.figures)
    lines += ["", f"- Against the baseline the lesion-weighted head gains {gain:+.3f} AUC on average over the six: "
                  + ("about the same; its value is the map of where each structure is seen, which the baseline cannot "
                     "draw." if abs(gain) < 0.02 else "its pooling over the lesion helps." if gain > 0 else
                     "the baseline reads them better.")]
    if missed:
        lines.append("- Below the target AUC of 0.75: " + "; ".join(f"{f.name} {f.auc:.3f}" for f in missed) + ".")
    if hidden:
        lines.append(f"- Not shown to clinicians (AUC below {section.min_auc_shown:.2f}): "
                     + ", ".join(f.name for f in hidden) + ".")
    lines += ["",
        "These are hints, not a 7-point checklist or ABCD score: the labels do not say whether a structure is typical "
        "or atypical. The members were trained (for the diagnosis, not the structures) on these same ISIC 2017 "
        "`train` images, so their features know them; on images from other clinics the figures may be lower. The "
        "members are frozen: the diagnosis figures above are unchanged by the heads.", "",
        f"![structure reliability]({pictures}structures_reliability.png)", "",
    ]
    return lines


def contrast_lines(folder: Path) -> list[str]:
    """How alike the top two diagnoses' Grad-CAM maps are, measured by bench/bench_contrast.py."""
    path = folder / "evaluation" / "contrast.json"
    if not path.is_file():
        return []
    c = json.loads(path.read_text())
    return [
        "## What separates the top two diagnoses", "",
        f"On {c['images']} {c['data']} images (`python bench/bench_contrast.py`), the Grad-CAM maps of the top diagnosis "
        f"and the runner-up correlate {c['class_maps_median_correlation']:.2f} (median) and look alike (correlation ≥ "
        f"{c['alike_at']}) for {c['class_maps_alike_share']:.0%} of images: both cover the lesion. The case page's "
        "contrast layer (Grad-CAM of the difference of the two logits) correlates "
        f"{c['contrast_median_correlation']:.2f} with the top diagnosis's map (alike for {c['contrast_alike_share']:.0%}). "
        + ("It differs from the plain map on only some images: where it looks the same, the two diagnoses are told "
           "apart by the same region, not by a separate one." if c["contrast_alike_share"] >= 0.5 else
           "It shows what speaks for one diagnosis rather than the other."), "",
    ]


def screening_lines(card: ModelCard, folder: Path) -> list[str]:
    """The ensemble on the SIIM-ISIC 2020 screening population: as `evaluate --siim2020` measured it, else as
    bench/bench_screening.py did (`evaluation/screening.json`)."""
    path = folder / "evaluation" / "screening.json"
    if card.metrics.screening is not None:
        c, source = card.metrics.screening.to_dict(), "`evaluate --siim2020`"
    elif path.is_file():
        c, source = json.loads(path.read_text()), "`python bench/bench_screening.py`"
    else:
        return []
    auc = "—" if c.get("melanoma_auc") is None else f"{c['melanoma_auc']:.3f}"
    held_out = c.get("scored_by", SCORED_BY_ENSEMBLE) != SCORED_BY_ENSEMBLE
    return [
        "## A screening population (SIIM-ISIC 2020, " + ("held-out patients)" if held_out else "never trained on)"), "",
        f"{source}: {c['data']}" + (f", {c['scored_by']}" if "scored_by" in c else "") + ", analysed as the app analyses a case "
        f"({c['tta_views']} views, calibrated, no metadata). Mostly benign lesions of a screening programme, judged "
        f"benign without a biopsy; other dermatoscopes than HAM10000's.", "",
        "| benign lesions at or above the safety net | melanomas at or above it | melanoma AUC (malignancy probability) |",
        "|---|---|---|",
        f"| {c['benign_above_net']:.0%} of {c['benign']} | {c['melanomas_at_or_above_net']} of {c['melanomas']} | {auc} |",
        "",
        f"{c['benign_above_net']:.0%} of these benign lesions would be marked for excision or as cannot-exclude: on a "
        "screening population the warning does not yet discriminate"
        + (", although the model trained on the other patients of this population." if held_out else
           " (see the short-protocol experiments below for training on it).")
        if c["benign_above_net"] >= 0.3 else "The warning stays selective on this population.", "",
    ]


def ablation_section(folder: Path) -> list[str]:
    path = folder / "ablation.json"
    if not path.is_file():
        return []
    ablation = json.loads(path.read_text())
    protocol = ablation["protocol"]
    lines = [
        "## Experiments (short protocol)",
        "",
        f"`python bench/ablation.py`: each variant trained from the same ImageNet start with the same seed, "
        f"{protocol['epochs']} epochs × {protocol['steps_per_epoch']} steps of {protocol['batch_size']} images at "
        f"{protocol['image_size']} px, scored on fold {protocol['validation_fold']} ({protocol['scored']}). "
        "Comparable with each other, not with the shipped model's longer training.",
        "",
        "| variant | HAM balanced accuracy | HAM malignant AUC | mask Jaccard (σ(M) > 0.5) | ISIC 2017 val melanoma AUC "
        "| ISIC 2017 val balanced accuracy |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {name} | {r['balanced_accuracy']:.3f} | {r['malignant_auc']:.3f} | {r['mask_jaccard']:.3f} | "
              f"{_number(r.get('external_melanoma_auc'))} | {_number(r.get('external_balanced_accuracy'))} |"
              for name, r in ablation["results"].items()]
    return [*lines, ""]


RESOLUTION_ABLATION_FILE = "ablation_resolution.json"
BASELINE_VARIANT = "0.2 recipe: bicubic resize, no resolution degradations"
ROBUST_VARIANT = ("recipe: HAM + ISIC 2017 train, Shades of Gray, crop/aspect + illuminant jitter, class-balanced CE, "
                  "antialiased resize, resolution degradations")  # bench/ablation.py's RECIPE


SHIPPED_SIZE_VARIANT = "0.2 recipe at 160 px, the shipped input size"
STRONGER_PREFIX = "stronger: "  # bench/ablation.py's wider encoders and larger inputs
# Stronger variants of the shipped recipe itself; the others add the resolution-robust training.
STRONGER_SHIPPED_PREFIX = STRONGER_PREFIX + "the 0.2 recipe "


BASELINE_SHORT_NAMES = {BASELINE_VARIANT: "0.2 recipe", SHIPPED_SIZE_VARIANT: "0.2 recipe at 160 px"}


def _stronger_baseline(name: str) -> str:
    """A stronger variant of the shipped recipe is judged against that recipe at the shipped input size; one with
    the resolution-robust training against the shipped recipe at the protocol's 128 px, as first run."""
    return SHIPPED_SIZE_VARIANT if name.startswith(STRONGER_SHIPPED_PREFIX) else BASELINE_VARIANT


def _screening_baseline(name: str) -> str | None:
    """A screening variant (one that names SIIM-ISIC 2020) at the shipped input size is judged against the shipped
    recipe at that size, the others against it at the protocol's 128 px; the references themselves against none."""
    if name in BASELINE_SHORT_NAMES or "SIIM" not in name:
        return None
    return SHIPPED_SIZE_VARIANT if " at 160 px" in name else BASELINE_VARIANT


def _seed_runs(folder: Path) -> dict[str, list[dict]]:
    """`bench/ablation.py`'s results in the weights folder, each variant's seeds together (each result keeps its
    seed under "seed")."""
    path = folder / RESOLUTION_ABLATION_FILE
    if not path.is_file():
        return {}
    runs: dict[str, list[dict]] = {}
    for name, result in json.loads(path.read_text())["results"].items():
        seed = re.search(r" \[seed (\d+)\]$", name)
        runs.setdefault(re.sub(r" \[seed \d+\]$", "", name), []).append(
            {**result, "seed": int(seed.group(1)) if seed else 0})
    return runs


Figure = Callable[[dict], float | None]


def _mean(items: list[dict], figure: Figure) -> float | None:
    values = [v for v in map(figure, items) if v is not None]
    return sum(values) / len(values) if values else None


def _shown(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _gain(items: list[dict], baseline: list[dict], figure: Figure) -> float:
    """The variant's mean of a figure less the baseline's (NaN where either lacks it)."""
    a, b = _mean(items, figure), _mean(baseline, figure)
    return float("nan") if a is None or b is None else a - b


def _against_baseline(runs: dict[str, list[dict]], baseline_name: str = BASELINE_VARIANT
                      ) -> Iterator[tuple[str, list[dict], list[dict]]]:
    """Each variant other than the baseline with its runs and the baseline's, both restricted to the seeds they
    share (the seed also draws the folds): comparisons are made on these only."""
    everything_of_baseline = runs.get(baseline_name)
    if everything_of_baseline is None:
        return
    for name, all_items in runs.items():
        if name == baseline_name:
            continue
        seeds = {r["seed"] for r in all_items} & {r["seed"] for r in everything_of_baseline}
        if seeds:
            yield (name, [r for r in all_items if r["seed"] in seeds],
                   [r for r in everything_of_baseline if r["seed"] in seeds])


def _held_out_auc(r: dict) -> float | None:
    return r.get("malignant_auc")


def _external_auc(r: dict) -> float | None:
    return r.get("external_melanoma_auc")


STRUCTURES_JOINT_FILE = "structures_joint.json"


def structures_joint_section(folder: Path) -> list[str]:
    """`bench/structures_joint.py`: the structure head read from frozen members against members trained with
    structure supervision (at each weight tried), on the short protocol, with what each does to the diagnosis."""
    path = folder / STRUCTURES_JOINT_FILE
    if not path.is_file():
        return []
    stored = json.loads(path.read_text())
    if "seeds" in stored:  # one weight's results, as the first version of the bench wrote them
        stored = {"runs": {str(stored["protocol"]["structure_weight"]): stored}}
    runs = {float(w): r["seeds"] for w, r in stored["runs"].items()}
    weights = sorted(runs)

    def mean(seeds: dict, way: str, key) -> float:
        return float(sum(key(r[way]) for r in seeds.values()) / len(seeds))

    reference = runs[weights[0]]
    structures = list(next(iter(reference.values()))["frozen"]["structures"])
    lines = ["### Frozen members or structure supervision (short protocol)", "",
             f"`python bench/structures_joint.py`, {len(reference)} seeds: for each seed one fold of the 746 labelled "
             "images is held out. *Frozen*: the short protocol's member that never saw a structure label. *Supervised*: "
             "the same recipe and seed trained with the structure labels of the other four folds at the weight shown "
             "(class-weighted, with the global pattern as a further target). All are read out by the shipped head's "
             "method, fitted on the same four folds, and scored on the held-out fold; mean AUC over the seeds.", "",
             "| structure | frozen | " + " | ".join(f"supervised, weight {w:g}" for w in weights) + " |",
             "|---|---|" + "---|" * len(weights)]
    for structure in structures:
        frozen = mean(reference, "frozen", lambda r, s=structure: r["structures"][s])
        supervised = [mean(runs[w], "joint", lambda r, s=structure: r["structures"][s]) for w in weights]
        lines.append(f"| {STRUCTURE_NAMES.get(structure, structure)} | {frozen:.3f} | "
                     + " | ".join(f"{v:.3f} ({v - frozen:+.3f})" for v in supervised) + " |")
    keys = ("balanced_accuracy", "malignant_auc", "external_melanoma_auc")
    rows = [("frozen", {k: mean(reference, "frozen", lambda r, k=k: r[k]) for k in keys})]
    rows += [(f"supervised, weight {w:g}", {k: mean(runs[w], "joint", lambda r, k=k: r[k]) for k in keys}) for w in weights]
    lines += ["", "| diagnosis | HAM balanced accuracy | HAM malignant AUC | ISIC 2017 val melanoma AUC |", "|---|---|---|---|",
              *(f"| {label} | {f['balanced_accuracy']:.3f} | {f['malignant_auc']:.3f} | {f['external_melanoma_auc']:.3f} |"
                for label, f in rows), ""]
    for w in weights:
        gain = sum(mean(runs[w], "joint", lambda r, s=s: r["structures"][s])
                   - mean(reference, "frozen", lambda r, s=s: r["structures"][s]) for s in structures) / len(structures)
        figures = dict(rows)[f"supervised, weight {w:g}"]
        auc, external = (figures[k] - rows[0][1][k] for k in ("malignant_auc", "external_melanoma_auc"))
        verdict = ("not adopted: it costs the diagnosis" if auc < -0.005 or external < -0.01 else
                   "not adopted: too little gain" if gain < 0.02 else "a candidate for the next members' training")
        lines.append(f"- Weight {w:g}: the structures' AUC {gain:+.3f} on average, HAM malignant AUC {auc:+.3f}, ISIC "
                     f"2017 val melanoma AUC {external:+.3f}; {verdict}.")
    return [*lines, "", "The shipped heads read frozen members, so the diagnosis above is unchanged by them.", ""]


def screening_ablation_section(folder: Path) -> list[str]:
    """The short protocol's variants on held-out SIIM-ISIC 2020 patients (a screening population): whether
    training on that population's benign lesions lowers the share above the safety net, and at what cost in
    melanomas. Both figures, always: a net that misses melanomas is the costlier error."""
    runs = {name: [r for r in items if r.get("siim2020")] for name, items in _seed_runs(folder).items()
            if "SIIM" in name or name in BASELINE_SHORT_NAMES}
    runs = {name: items for name, items in runs.items() if items}
    if not runs:
        return []
    lines = ["## The screening population (SIIM-ISIC 2020, short protocol)", "",
             "The short protocol's member of each seed on the SIIM-ISIC 2020 patients of its held-out fold (patients "
             "never trained on; folds by patient, stratified by melanoma). Mostly benign lesions judged without a "
             "biopsy, photographed with other dermatoscopes. The safety net is the one fitted on the member's held-out "
             "HAM10000 fold (95 % of malignant lesions at 1×). Melanomas are few: the counts are given, not rates.", "",
             "| variant | seeds | benign lesions at or above the safety net | melanomas at or above it | melanoma AUC "
             "on these patients | HAM malignant AUC | ISIC 2017 val melanoma AUC |", "|---|---|---|---|---|---|---|"]

    def caught(items: list[dict]) -> tuple[int, int]:
        return (sum(r["siim2020"]["melanomas_at_or_above_net"] or 0 for r in items),
                sum(r["siim2020"]["melanomas"] for r in items))

    def benign(r: dict) -> float | None:
        return r["siim2020"]["benign_above_net"]

    for name, items in runs.items():
        kept, melanomas = caught(items)
        lines.append(f"| {name} | {len(items)} | {_shown(_mean(items, benign))} | {kept} of {melanomas} | "
                     f"{_shown(_mean(items, lambda r: r['siim2020'].get('melanoma_auc')))} | "
                     f"{_shown(_mean(items, _held_out_auc))} | {_shown(_mean(items, _external_auc))} |")
    if any(name in runs for name in BASELINE_SHORT_NAMES):
        lines += ["", "Each variant is judged against the shipped recipe at its own input size, on the seeds both have."]
    judged = ((name, items, baseline, baseline_name) for baseline_name in BASELINE_SHORT_NAMES
              for name, items, baseline in _against_baseline(
                  {n: i for n, i in runs.items() if n == baseline_name or _screening_baseline(n) == baseline_name},
                  baseline_name))
    for name, items, baseline, baseline_name in judged:
        base_kept, base_melanomas = caught(baseline)
        kept, melanomas = caught(items)
        before, after = _mean(baseline, benign) or 0.0, _mean(items, benign) or 0.0
        external = _gain(items, baseline, _external_auc)
        lost = kept / max(melanomas, 1) < base_kept / max(base_melanomas, 1)
        verdict = ("not adopted: it loses melanomas" if lost else
                   "not adopted: it costs discrimination on the external check" if external < -0.01 else
                   "not adopted: the warning is not more selective" if after > before - 0.05 else
                   "a candidate for the members")
        lines.append(f"- {name} (against the {BASELINE_SHORT_NAMES[baseline_name]}): benign lesions at or above the "
                     f"net {before:.0%} → {after:.0%}, melanomas at or above it "
                     f"{base_kept} of {base_melanomas} → {kept} of {melanomas}, ISIC 2017 val melanoma AUC "
                     f"{external:+.3f}; {verdict}.")
    return [*lines, ""]


def resolution_ablation_section(folder: Path) -> list[str]:
    """The resolution recipes compared by `bench/ablation.py` (`--seed`), each seed's run averaged: what the
    resolution-robust training costs or gains before it is adopted for members."""
    runs = {name: items for name, items in _seed_runs(folder).items()
            if "SIIM" not in name and not name.startswith(STRONGER_PREFIX) and name != SHIPPED_SIZE_VARIANT}
    if not runs:
        return []

    def mean(items: list[dict], figure: Figure) -> str:
        return _shown(_mean(items, figure))

    lines = ["## Resolution-robust training (short protocol)", "",
             "The same protocol as above, each variant with several seeds (the seed also draws the folds); means over "
             "the seeds. The resolution spread is the largest change from 1× to 5× on the held-out fold.", "",
             "| variant | seeds | HAM balanced accuracy | HAM malignant AUC | ISIC 2017 val melanoma AUC | resolution "
             "spread: balanced accuracy | resolution spread: malignant AUC |", "|---|---|---|---|---|---|---|"]
    for name, items in runs.items():
        lines.append(
            f"| {name} | {len(items)} | {mean(items, lambda r: r['balanced_accuracy'])} | "
            f"{mean(items, _held_out_auc)} | {mean(items, _external_auc)} | "
            f"{mean(items, lambda r: (r.get('resolution') or {}).get('balanced_accuracy_range'))} | "
            f"{mean(items, lambda r: (r.get('resolution') or {}).get('malignant_auc_range'))} |")
    if BASELINE_VARIANT in runs:
        lines.append("")
    for name, items, baseline in _against_baseline(runs):
        auc, mel = _gain(items, baseline, _held_out_auc), _gain(items, baseline, _external_auc)
        verdict = ("no loss on either: a candidate for the members" if auc >= 0 and mel >= 0 else
                   "not adopted for the members: it costs discrimination on this protocol")
        lines.append(f"- {name}: against the 0.2 recipe, HAM malignant AUC {auc:+.3f} and ISIC 2017 val melanoma AUC "
                     f"{mel:+.3f}; {verdict}.")
    return [*lines, ""]


# The rule for a stronger recipe, against the shipped (0.2) recipe on the same seeds.
ADOPT_EXTERNAL_GAIN = 0.02   # ISIC 2017 `val` melanoma AUC
ADOPT_HELD_OUT_GAIN = 0.01   # held-out HAM10000 malignant AUC


def stronger_recipe_section(folder: Path) -> list[str]:
    """`bench/ablation.py`'s wider encoders and larger inputs against the shipped recipe: adopted only for a gain of
    ≥ 0.02 ISIC 2017 `val` melanoma AUC and ≥ 0.01 held-out malignant AUC on the seeds both have."""
    seed_runs = _seed_runs(folder)
    runs = {name: items for name, items in seed_runs.items() if name.startswith(STRONGER_PREFIX)}
    if not runs or BASELINE_VARIANT not in seed_runs:
        return []

    def mean(items: list[dict], figure: Figure) -> str:
        return _shown(_mean(items, figure))

    def screening(items: list[dict]) -> str:
        scored = [r["siim2020"] for r in items if r.get("siim2020")]
        if not scored:
            return "—"
        benign = sum(s["benign_above_net"] for s in scored) / len(scored)
        return (f"{benign:.0%}; {sum(s['melanomas_at_or_above_net'] for s in scored)} of "
                f"{sum(s['melanomas'] for s in scored)}")

    lines = ["## Stronger encoders and larger inputs (short protocol)", "",
             "The same protocol. Variants named \"the recipe with …\" add the resolution-robust training (antialiased "
             "resize, resolution degradations) and are judged against the shipped recipe (0.2: Lite0, bicubic, no "
             "degradations) at the protocol's 128 px; those named \"the 0.2 recipe with …\" keep the shipped recipe and "
             "are judged against it at the shipped input size, 160 px. A variant is "
             f"adopted for the members only if, on the same seeds, it gains ≥ {ADOPT_EXTERNAL_GAIN} ISIC 2017 `val` "
             f"melanoma AUC and ≥ {ADOPT_HELD_OUT_GAIN} held-out HAM malignant AUC.", "",
             "| variant | seeds | HAM balanced accuracy | HAM malignant AUC | ISIC 2017 val melanoma AUC | resolution "
             "spread: malignant AUC | SIIM-ISIC 2020 held-out: benign at or above the net; melanomas kept |",
             "|---|---|---|---|---|---|---|"]
    references = {name: items for name, items in seed_runs.items()
                  if name in (BASELINE_VARIANT, ROBUST_VARIANT, SHIPPED_SIZE_VARIANT)}
    for name, items in {**references, **runs}.items():
        lines.append(f"| {name.removeprefix(STRONGER_PREFIX)} | {len(items)} | "
                     f"{mean(items, lambda r: r['balanced_accuracy'])} | {mean(items, _held_out_auc)} | "
                     f"{mean(items, _external_auc)} | "
                     f"{mean(items, lambda r: (r.get('resolution') or {}).get('malignant_auc_range'))} | "
                     f"{screening(items)} |")
    lines.append("")
    for name, all_items in runs.items():
        baseline_name = _stronger_baseline(name)
        if baseline_name not in seed_runs:
            continue
        for _, items, baseline in _against_baseline({baseline_name: seed_runs[baseline_name], name: all_items},
                                                    baseline_name):
            held_out, external = _gain(items, baseline, _held_out_auc), _gain(items, baseline, _external_auc)
            adopted = external >= ADOPT_EXTERNAL_GAIN and held_out >= ADOPT_HELD_OUT_GAIN
            seeds = f"{len(items)} seed{'s' if len(items) > 1 else ''}"
            verdict = ("adopted for the next members" if adopted and len(items) >= 3 else
                       "meets the rule on fewer than 3 seeds: more seeds before it is adopted" if adopted else
                       "not adopted: below the rule's gain")
            lines.append(f"- {name.removeprefix(STRONGER_PREFIX)} ({seeds}): ISIC 2017 val melanoma AUC "
                         f"{external:+.3f}, HAM malignant AUC {held_out:+.3f} against the "
                         f"{BASELINE_SHORT_NAMES[baseline_name]}; {verdict}.")
    return [*lines, ""]


def views_text(metrics: CardMetrics) -> str:
    views = metrics.views
    return f"{views} test-time view{'s' if views > 1 else ''}"


def evaluation_report(metrics: CardMetrics, version: str) -> str:
    """report.md in the evaluation folder: the same measured sections as the model card."""
    return "\n".join([f"# Evaluation of {version}", "", *metrics_section(metrics, pictures=""), ""])


SITE_ADAPTATION_FILE = "site_adaptation.json"
# Issue 26's bar for recommending site profiles: melanoma AUC gained on a new clinic, with the safety net holding.
SITE_GAIN_NEEDED = 0.03
SITE_MELANOMAS_KEPT_NEEDED = 0.93


def site_adaptation_section(folder: Path) -> list[str]:
    """`bench/site_adaptation.py`'s new-clinic protocol: the short recipe trained without ISIC 2017, whose images
    then stand for a clinic it never saw, before and after a site profile learnt from some of them (scored on the
    others). What the app's site-profile choice says of profiles comes from here."""
    path = folder / SITE_ADAPTATION_FILE
    if not path.is_file():
        return []
    found = json.loads(path.read_text())
    seeds = list(found["seeds"].values())
    sizes = sorted({int(n) for s in seeds for n in s["by_site_images"]})
    if not seeds or not sizes:
        return []

    def mean(n: int, which: str, key: str) -> float:  # over the seeds that ran this number of site images
        values = [s["by_site_images"][str(n)][which][key] for s in seeds if str(n) in s["by_site_images"]]
        return sum(values) / len(values)

    protocol = found.get("protocol", {})
    lines = ["## Site profiles (unsupervised adaptation to a clinic)", "",
             "A site profile re-estimates every member's batch-norm statistics from a clinic's own unlabelled images "
             "(AdaBN); the app and `predict --site-adapt` / `--site-profile` offer it, and every result names it. "
             f"Measured by `python bench/site_adaptation.py` over {len(seeds)} seeds: the short recipe trained on "
             f"{protocol.get('trained_on', 'HAM10000 only')}, then {protocol.get('new_clinic', 'ISIC 2017')} as the "
             "clinic it never saw, each profile learnt from the number of that clinic's images shown and scored on "
             "the others (identity view, uncalibrated; the safety net fitted on the held-out HAM10000 fold).", "",
             "| site images | melanoma AUC: as trained → with the profile | melanomas at or above the net | benign "
             "lesions at or above the net |", "|---|---|---|---|"]
    for n in sizes:
        lines.append(
            f"| {n} | {mean(n, 'as_trained_same_images', 'melanoma_auc'):.3f} → {mean(n, 'adapted', 'melanoma_auc'):.3f} "
            f"| {mean(n, 'as_trained_same_images', 'melanomas_above_net'):.0%} → "
            f"{mean(n, 'adapted', 'melanomas_above_net'):.0%} | "
            f"{mean(n, 'as_trained_same_images', 'benign_above_net'):.0%} → {mean(n, 'adapted', 'benign_above_net'):.0%} |")
    gains = {n: mean(n, "adapted", "melanoma_auc") - mean(n, "as_trained_same_images", "melanoma_auc") for n in sizes}
    kept = {n: mean(n, "adapted", "melanomas_above_net") for n in sizes}
    helping = [n for n in sizes if gains[n] >= SITE_GAIN_NEEDED and kept[n] >= SITE_MELANOMAS_KEPT_NEEDED]
    lines.append("")
    if helping:
        lines.append(f"- With {', '.join(map(str, helping))} site images a profile gains ≥ {SITE_GAIN_NEEDED} melanoma "
                     f"AUC with ≥ {SITE_MELANOMAS_KEPT_NEEDED:.0%} of melanomas at or above the net.")
    else:
        worst = min(gains.values())
        lines.append(f"- Not recommended: at no number of site images does a profile gain the {SITE_GAIN_NEEDED} "
                     f"melanoma AUC asked of it with ≥ {SITE_MELANOMAS_KEPT_NEEDED:.0%} of melanomas kept (change "
                     f"{worst:+.3f} to {max(gains.values()):+.3f}; melanomas kept {min(kept.values()):.0%}–"
                     f"{max(kept.values()):.0%}). The app offers the model as shipped first; a profile is for "
                     "comparing with it on cases the clinic can verify.")
    return [*lines, *_shipped_site_lines(folder), ""]


SITE_ADAPTATION_SHIPPED_FILE = "site_adaptation_shipped.json"  # bench/bench_site.py --json


def _shipped_site_lines(folder: Path) -> list[str]:
    """The shipped ensemble, with its calibration, net and tiers, on the external check adapted on that set's own
    images (`bench/bench_site.py`): what a clinic choosing a profile would see."""
    path = folder / SITE_ADAPTATION_SHIPPED_FILE
    if not path.is_file():
        return []
    found = json.loads(path.read_text())

    def row(what: str, r: dict) -> str:
        return (f"| {what} | {r['melanoma AUC']:.3f} | {r['melanomas at/above net']:.0%} | {r['benign above net']:.0%} | "
                f"{r['benign in High']:.0%} |")

    return ["", f"The ensemble of model {found['model']} ({found['views']} views, calibrated, the app's safety net and "
                f"tiers) on {found['data']}, as it shipped and with profiles learnt from that set's own images "
                "(`python bench/bench_site.py --json`; every image scored, those the profile learnt from included):", "",
            "| profile | melanoma AUC | melanomas at or above the net | benign lesions at or above it | benign lesions "
            "in the High tier |", "|---|---|---|---|---|",
            row("none (as shipped)", found["as_shipped"]),
            *(row(f"learnt from {n} images ({r['seeds']} seed{'s' if r['seeds'] > 1 else ''})", r)
              for n, r in found["adapted_on"].items())]


FULL_LENGTH_FILE = "full_length.json"
FINE_TUNE_FILE = "fine_tune.json"  # bench/ablation.py --fine-tune weights
FINE_TUNE_MARK = " [fine-tuned from the shipped member]"
SHIPPED_MEMBER = "shipped member (fold 0) [full length]"  # bench/ablation.py --score-member
FULL_LENGTH_TOLERANCE = 0.005  # AUC a full-length candidate may lose against the shipped member and still be trained
LOUDER_TOLERANCE = 0.02  # … and the share of SIIM benign lesions it may add at or above the net


def short_version(version: str) -> str:
    """'0.2.1+lite0-160px+…' → '0.2.1': the release, as the card's prose names an earlier model."""
    return version.split("+", 1)[0]


def _experiment_name(name: str) -> str:
    return name.removesuffix(" [full length]").replace(FINE_TUNE_MARK, " [fine-tuned from that member]")


def full_length_section(folder: Path) -> list[str]:
    """`bench/ablation.py --full-length`: a recipe trained like the shipped members (10 full epochs, fold 0 held
    out) against the shipped fold-0 member, scored the same way. The check a recipe passes before five members are
    trained with it: the short protocol may misjudge recipes whose augmentation pays only over a long schedule."""
    path = folder / FULL_LENGTH_FILE
    if not path.is_file():
        return []
    results = json.loads(path.read_text())["results"]
    if (folder / FINE_TUNE_FILE).is_file():
        results |= json.loads((folder / FINE_TUNE_FILE).read_text())["results"]
    shipped = results.get(SHIPPED_MEMBER)
    candidates = {name: r for name, r in results.items() if name != SHIPPED_MEMBER}
    if shipped is None or not candidates:
        return []
    # the member every row is judged against: the shipped model's when it was measured, named by its version
    base = f"model {short_version(shipped['model'])}" if shipped.get("model") else "the shipped model"
    base_row = f"member of {base} (fold 0)"
    against = f"the fold-0 member of {base} (shipped then)" if shipped.get("model") else "the shipped fold-0 member"

    def siim(r: dict) -> str:
        s = r.get("siim2020")
        if not s or s.get("benign_above_net") is None:
            return "— | — | —"
        auc = "—" if s.get("melanoma_auc") is None else f"{s['melanoma_auc']:.3f}"
        return f"{s['benign_above_net']:.0%} | {s['melanomas_at_or_above_net']} of {s['melanomas']} | {auc}"

    lines = ["## Full-length check of a recipe (fold 0)", "",
             f"`python bench/ablation.py --full-length`: the recipe trained like the members of {base} (10 full epochs "
             f"from ImageNet, the last kept), one member with HAM10000 fold 0 held out, against {against} scored the same way "
             "(identity view, uncalibrated, highest probability; the safety net fitted on the member's held-out fold; "
             "SIIM-ISIC 2020: the patients of fold 0, never trained on). A recipe is trained for the "
             f"five members only if it loses no melanoma there, at most {FULL_LENGTH_TOLERANCE} of either AUC, and "
             f"puts at most {LOUDER_TOLERANCE:.0%} more of the benign lesions at or above the net. `--fine-tune "
             "weights` instead trains that fold-0 member further with the recipe (two full passes at a tenth of the "
             "learning rate): a cheaper way to give its members new data.", "",
             "| member | HAM balanced accuracy | HAM malignant AUC | ISIC 2017 val melanoma AUC | resolution spread: "
             "malignant AUC | SIIM benign at or above the net | SIIM melanomas at or above it | SIIM melanoma AUC |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in {base_row: shipped, **candidates}.items():
        lines.append(f"| {_experiment_name(name)} | "
                     f"{r['balanced_accuracy']:.3f} | "
                     f"{r['malignant_auc']:.3f} | {r['external_melanoma_auc']:.3f} | "
                     f"{_shown((r.get('resolution') or {}).get('malignant_auc_range'))} | {siim(r)} |")
    lines.append("")
    for name, r in candidates.items():
        held_out = r["malignant_auc"] - shipped["malignant_auc"]
        external = r["external_melanoma_auc"] - shipped["external_melanoma_auc"]
        kept, base_kept = ((r.get("siim2020") or {}).get("melanomas_at_or_above_net"),
                           (shipped.get("siim2020") or {}).get("melanomas_at_or_above_net"))
        lost = kept is not None and base_kept is not None and kept < base_kept
        benign, base_benign = ((r.get("siim2020") or {}).get("benign_above_net"),
                               (shipped.get("siim2020") or {}).get("benign_above_net"))
        louder = benign is not None and base_benign is not None and benign > base_benign + LOUDER_TOLERANCE
        how = "fine-tune" if FINE_TUNE_MARK in name else "train"
        verdict = ("not trained for the ensemble: it loses melanomas on the screening population" if lost else
                   "not trained for the ensemble: it costs discrimination"
                   if min(held_out, external) < -FULL_LENGTH_TOLERANCE else
                   "not trained for the ensemble: the warning marks more benign lesions" if louder else
                   f"a candidate: {how} the five members with it")
        screening = ""
        if kept is not None and base_kept is not None:
            s, b = r["siim2020"], shipped["siim2020"]
            screening = (f", SIIM benign lesions at or above the net {b['benign_above_net']:.0%} → "
                         f"{s['benign_above_net']:.0%} and melanomas {base_kept} → {kept} of {s['melanomas']}")
        lines.append(f"- {_experiment_name(name)}: "
                     f"HAM malignant AUC {held_out:+.3f}, ISIC 2017 val melanoma AUC {external:+.3f}{screening} against "
                     f"the {base_row}; {verdict}.")
    return [*lines, ""]
