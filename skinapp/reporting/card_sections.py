"""The measured parts of MODEL_CARD.md: performance, the decision rule, the external check, targets,
calibration and flags, similar cases, experiments. Each renders figures written by `python -m skinapp evaluate`
(or bench/ablation.py) and nothing else."""

from __future__ import annotations

import json
from pathlib import Path

from skinapp.model.card import ModelCard
from skinapp.trust.flags import FIXED_CHECKS
from skinapp.trust.risk import TIER_NAMES
from skinapp.vocab import CLASSES


def metrics_section(metrics: dict, pictures: str = "evaluation/") -> list[str]:
    """pictures: where the evaluation's PNGs are, relative to the page (the card sits beside `evaluation/`)."""
    if not metrics:
        return ["**Not evaluated.** Run `python -m skinapp evaluate … --update-card` before using this model."]
    lines = [
        f"Measured by `python -m skinapp evaluate` on {metrics['evaluated_on']} — folds {metrics['folds']}, "
        f"{metrics['with_metadata']['n_images']} images, {views_text(metrics)}.",
        *_ensemble_note(metrics),
        "",
        "| input | balanced accuracy | accuracy | malignant AUC | sensitivity at 90 % specificity | ECE (uncalibrated) |",
        "|---|---|---|---|---|---|",
    ]
    for key, name in (("with_metadata", "image + age, sex, site"), ("without_metadata", "image only")):
        m = metrics[key]
        lines.append(
            f"| {name} | {m['balanced_accuracy']:.3f} | {m['accuracy']:.3f} | {m['malignant_auc']:.3f} | "
            f"{m['sensitivity_at_90_specificity']:.3f} | {m['expected_calibration_error']:.3f} |"
        )
    m = metrics["with_metadata"]
    lines += [
        "",
        "Per class (image + metadata):",
        "",
        "| | " + " | ".join(CLASSES) + " |",
        "|---|" + "---|" * len(CLASSES),
        _recall_row("recall", m["recall"]),
        _recall_row("precision", m["precision"]),
    ]
    if "mask" in metrics:
        mask = metrics["mask"]
        lines += ["", f"Lesion outline against the HAM10000 masks ({mask['method']}): Jaccard **{mask['jaccard']:.3f}**, "
                      f"Dice {mask['dice']:.3f}, ISIC thresholded Jaccard (J < 0.65 counts 0) "
                      f"{mask['thresholded_jaccard_065']:.3f}."]
    if "melanoma_sensitivity_at_90_specificity" in m:
        lines += ["", f"Melanoma against everything else (P(MEL)): sensitivity at 90 % specificity "
                      f"**{m['melanoma_sensitivity_at_90_specificity']:.3f}**."]
    lines += ["", f"![confusion matrix]({pictures}confusion.png)", "", f"![ROC]({pictures}roc.png)", "",
              *_decision_rule_lines(metrics), *_external_lines(metrics), *_targets(metrics)]
    return lines


def _ensemble_note(metrics: dict) -> list[str]:
    if metrics.get("members", 1) <= 1:
        return []
    return ["", f"Each HAM10000 image is scored by the one member that never trained on it: every other member of the "
                f"{metrics['members']}-member ensemble trained on it, so no HAM10000 image can measure the whole "
                "ensemble without a leak. The figures below are therefore one member's (with test-time views); the "
                "whole ensemble is measured on the external check (ISIC 2017 `val`) further down."]


def _recall_row(name: str, recall: dict) -> str:
    return f"| {name} | " + " | ".join(f"{recall[c]:.2f}" if c in recall else "–" for c in CLASSES) + " |"


def _decision_rule_lines(metrics: dict) -> list[str]:
    rule = metrics.get("decision_rule")
    if not rule:
        return []
    choice = rule.get("tau_choice")
    how = ("tuned on the out-of-fold predictions for balanced accuracy" if not choice else
           "the smallest τ whose out-of-fold balanced accuracy is within one standard error of the best, the "
           f"one-standard-error rule; the best is at τ = {choice['best_tau']:.2f}, the standard error "
           f"{choice['standard_error']:.3f} by a bootstrap over lesions. The values of τ within that error differ "
           "mainly in how often a nevus is called melanoma, and the smallest does so least")
    return [
        "### The top diagnosis: a decision rule balanced over the classes",
        "",
        "The app and `predict` show as top diagnosis the class with the largest calibrated probability divided by the "
        f"model's effective class prior raised to τ = {rule['tau']:.2f} (post-hoc prior correction, Menon et al. 2021; τ: "
        f"{how}). The probabilities shown are not changed; rarer diagnoses are called more often, at the cost of more "
        "false alarms among nevi.",
        "",
        "| top diagnosis by | balanced accuracy | accuracy |",
        "|---|---|---|",
        f"| highest probability | {rule['balanced_accuracy_argmax']:.3f} | {rule['accuracy_argmax']:.3f} |",
        f"| balanced rule ({rule['cross_fitting']}) | **{rule['balanced_accuracy_balanced_rule']:.3f}** | "
        f"{rule['accuracy_balanced_rule']:.3f} |",
        "",
        "| recall | " + " | ".join(CLASSES) + " |",
        "|---|" + "---|" * len(CLASSES),
        _recall_row("highest probability", rule["recall_argmax"]),
        _recall_row("balanced rule", rule["recall_balanced_rule"]),
        "",
    ]


def _external_lines(metrics: dict) -> list[str]:
    ext = metrics.get("external")
    if not ext:
        return ["### External check", "", "**Not run.** `evaluate --isic2017 …` scores the model on images from other "
                "centres and dermatoscopes (ISIC 2017 `val`).", ""]
    present = ", ".join(f"{c} {n}" for c, n in ext["classes_present"].items())
    return [
        "### External check: ISIC 2017 `val` (other centres and dermatoscopes, never trained on)",
        "",
        f"{ext['n_images']} images ({present}), scored by the whole ensemble with calibration and the balanced rule "
        "fitted on HAM10000 only.",
        "",
        "| melanoma AUC | malignant AUC | melanoma sensitivity at 90 % specificity | balanced accuracy (balanced rule) "
        "| balanced accuracy (highest probability) |",
        "|---|---|---|---|---|",
        f"| **{_number(ext['melanoma_auc'])}** | {_number(ext['malignant_auc'])} | "
        f"{_number(ext['melanoma_sensitivity_at_90_specificity'])} | {ext['balanced_accuracy_balanced_rule']:.3f} | "
        f"{ext['balanced_accuracy_argmax']:.3f} |",
        "",
        "Balanced accuracy is the mean recall over the classes present, the call chosen among all seven. Recall "
        "(balanced rule): " + ", ".join(f"{c} {r:.2f}" for c, r in ext["recall_balanced_rule"].items()) + ".",
        "",
    ]


TARGETS = (("balanced accuracy (highest probability)", ("with_metadata", "balanced_accuracy"), 0.80, "≥"),
           ("balanced accuracy (balanced rule)", ("decision_rule", "balanced_accuracy_balanced_rule"), 0.80, "≥"),
           ("malignant AUC", ("with_metadata", "malignant_auc"), 0.94, "≥"),
           ("melanoma AUC on the external check", ("external", "melanoma_auc"), 0.85, "≥"),
           ("mask Jaccard", ("mask", "jaccard"), 0.85, "≥"),
           ("ECE after calibration", ("calibration", "ece_after"), 0.03, "≤"),
           ("share of errors caught by the manual-check flag (≤ 20 % flagged)", ("flags", "errors_caught"), 0.60, "≥"))


# The trust checks' targets: (check, what, (section, key) in the check, lowest, highest).
CHECK_TARGETS = (
    ("out_of_fold", "flagged", (None, "flagged_share"), None, 0.20),
    ("out_of_fold", "errors caught by the flag", (None, "errors_caught"), 0.60, None),
    ("shifted_ham", "flagged", (None, "flagged_share"), 0.10, 0.30),
    ("shifted_ham", "errors caught by the flag", (None, "errors_caught"), 0.50, None),
    ("shifted_ham", "conformal coverage", ("conformal", "coverage"), 0.85, None),
    ("shifted_ham", "safety net: malignant lesions kept", ("safety_net", "malignant_sensitivity"), 0.90, None),
    ("isic2017_val", "flagged", (None, "flagged_share"), 0.10, 0.30),
    ("isic2017_val", "errors caught by the flag", (None, "errors_caught"), 0.50, None),
    ("isic2017_val", "conformal coverage", ("conformal", "coverage"), 0.85, None),
    ("isic2017_val", "safety net: malignant lesions kept", ("safety_net", "malignant_sensitivity"), 0.90, None),
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


def _targets(metrics: dict) -> list[str]:
    lines = ["Against the project's targets for this model:", ""]
    for name, (section, key), target, sense in TARGETS:
        if section in metrics:
            value = metrics[section][key]
            if value is None:
                continue
            bounds = (target, None) if sense == "≥" else (None, target)
            lines.append(f"- {name} {value:.3f} (target {sense} {target:.2f}): {_verdict(value, *bounds)}")
    return [*lines, ""]


def _check_targets(metrics: dict) -> list[str]:
    checks, lines = metrics.get("checks", {}), []
    for check, name, (section, key), lowest, highest in CHECK_TARGETS:
        values = checks.get(check, {})
        value = (values.get(section, {}) if section else values).get(key)
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


def _calibration_on_checks(metrics: dict) -> str:
    """The same temperature on the other check sets: with an ensemble it was fitted on one member's predictions
    and is applied to the averaged ones, and other clinics' images drift from HAM10000 as well."""
    shown = [f"{CHECK_NAMES.get(name, name)} {check['ece']:.3f}" for name, check in metrics.get("checks", {}).items()
             if name != "out_of_fold" and check.get("ece") is not None]
    if not shown:
        return ""
    members = metrics.get("members", 1)
    scored = f" (each scored by one member, while the app averages all {members})" if members > 1 else ""
    return (f" The temperature is fitted on HAM10000 images only{scored}; the top diagnosis's calibration error on "
            f"the other checks: {', '.join(shown)}. Read the probabilities of images from other clinics as less "
            "exact than the held-out figures suggest.")


def _flag_parts(flags: dict) -> str:
    if "always_checked_share" not in flags:  # fitted before the budget counted the always-checked cases
        return ""
    return (f" ({flags['flagged_by_score_share']:.1%} by the combined score, {flags['always_checked_share']:.1%} "
            "always checked)")


def trust_section(card: ModelCard) -> list[str]:
    metrics = card.metrics
    if "calibration" not in metrics:
        return ["## Calibration and flags", "", "**Not fitted.** Probabilities are uncalibrated and the manual-check "
                "flags use provisional thresholds until `python -m skinapp evaluate … --update-card` is run.", ""]
    c, f, s = metrics["calibration"], metrics["flags"], metrics["similar_cases"]
    weights = sorted(f["weights"].items(), key=lambda kv: -abs(kv[1]))
    return [
        "## Calibration",
        "",
        f"Temperature scaling (T = {c['temperature']:.3f}, fitted on the {c['n_images']} out-of-fold predictions; "
        "it changes no prediction's ranking of the classes, so the figures above stay as they are). Expected "
        f"calibration error of the top diagnosis: **{c['ece_before']:.3f} before, {c['ece_after']:.3f} after** "
        f"({c['ece_after_note']}); without metadata {c['ece_before_without_metadata']:.3f} → "
        f"{c['ece_after_without_metadata']:.3f}. Malignancy probability against the malignant/benign truth: "
        f"calibration error {c['malignancy_calibration_error_before']:.3f} → {c['malignancy_calibration_error_after']:.3f}."
        + _calibration_on_checks(metrics),
        "",
        "![reliability diagram](evaluation/reliability.png)",
        "",
        "## When the model flags a case for a manual check",
        "",
        f"Fitted on the same {f['n_images']} held-out images, cross-fitted by lesion. A few of the model's own "
        "uncertainty signs (confidence in the top call, margin, entropy, disagreement across test-time views and "
        "ensemble members, mutual information, malignancy spread, size of the conformal set, whether the most similar "
        "labelled images share the diagnosis) are combined by a logistic model of its errors whose weights may not be "
        "negative, so more doubt never lowers the risk and the flags rise rather than go quiet on unfamiliar images; "
        "the threshold flags at most 20 % of held-out cases, those always checked (below) counted in. Every flag "
        "names the signs that raised it.",
        "",
        f"- Flagged: {f['flagged_share']:.1%} of held-out cases{_flag_parts(f)}; they hold **{f['errors_caught']:.1%} "
        f"of the model's errors** (error rate {f['error_rate']:.1%} overall).",
        f"- Accuracy on unflagged cases {_number(f['accuracy_unflagged'])}, on flagged cases {_number(f['accuracy_flagged'])}.",
        f"- Always a manual check, whatever the score: {', '.join(FIXED_CHECKS.values())}, or an image farther "
        f"from the training images than {_number(f['ood_threshold'], 1)} (Mahalanobis distance of the encoder's pooled "
        f"features; {f['ood_share_of_held_out']:.1%} of held-out dermoscopy images are that far).",
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
        f"The {s['index_images']:,} labelled HAM10000 images are indexed by the model's embedding (`embeddings.npz`). "
        f"On held-out images (neighbours of the same lesion excluded), a vote of the {s['knn_k']} nearest agrees with the "
        f"classifier for {s['knn_agrees_with_classifier']:.1%} of images; the vote alone is right for "
        f"{s['knn_accuracy']:.1%}, the classifier for {s['classifier_accuracy']:.1%}. When they agree the classifier is "
        f"right {_share(s['accuracy_when_they_agree'])} of the time, when they disagree "
        f"{_share(s['accuracy_when_they_disagree'])}.",
        "",
    ]


def _net_wording(metrics: dict) -> str:
    """What the app says at the net: with graded risk the lower tier's words, never the excision wording."""
    if "risk_tiers" in metrics:
        return "\"malignancy cannot be excluded\" (or \"high risk\" above the High level, below)"
    return "\"suspicious — consider excision\""


def _sets_and_net_lines(metrics: dict) -> list[str]:
    if "conformal" not in metrics:
        return []
    sets, net = metrics["conformal"], metrics["safety_net"]
    return [
        "## Prediction sets and the melanoma safety net",
        "",
        f"- **Conformal sets** ({sets['method']}, for {sets['target_coverage']:.0%} coverage; fitted on "
        f"{sets['fitted_on']}): on the out-of-fold images the set held the true diagnosis for "
        f"**{sets['coverage']:.1%}** of them, {sets['mean_set_size']:.2f} diagnoses on average, a single diagnosis for "
        f"{sets['single_class_share']:.1%}. By class: "
        + ", ".join(f"{c} {v:.0%}" for c, v in sets["coverage_by_class"].items()) + ".",
        f"- **Safety net**: {_net_wording(metrics)} at a malignancy probability of {net['threshold']:.1%} or "
        f"more, chosen so that {net['target_sensitivity']:.0%} of held-out malignant lesions (and of their shifted "
        f"copies) reach it. On the out-of-fold images it keeps **{_share(net['malignant_sensitivity'])} of malignant "
        f"lesions** and marks {net['share_marked']:.1%} of all cases ({_share(net['benign_marked'])} of benign ones): "
        "that is its cost, accepted because a missed melanoma is the costliest error. A case above it is never "
        "shown without a warning.",
        "",
    ]




def _risk_tier_lines(metrics: dict) -> list[str]:
    if "risk_tiers" not in metrics:
        return []
    tiers = metrics["risk_tiers"]
    levels = tiers["levels"]
    lines = [
        "## Graded malignancy risk",
        "",
        "One red warning for every lesion above the safety net stops being read, so the warning is graded by the "
        "calibrated malignancy probability:",
        "",
        f"- **High risk of malignancy — consider excision or biopsy** at {levels['high']:.1%} or more: the level that "
        f"at most {tiers['benign_share']:.0%} of held-out benign lesions reach.",
        f"- **Malignancy cannot be excluded — a second look or dermoscopic follow-up** from the safety net "
        f"({levels['cannot_exclude']:.1%}) up to High. Never the excision wording.",
        "- **Low** below the safety net. Never called benign: the model found nothing that reaches the net.",
        "",
        f"Fitted on {tiers['fitted_on']}; {tiers['note']}. Per tier, the share of all malignant and of all benign "
        "lesions that fall in it, the share of its lesions that are malignant (PPV) and the lesions excised per "
        "malignant one found (number needed to excise, 1 / PPV):",
        "",
        "| images | tier | malignant lesions in it | benign lesions in it | PPV | number needed to excise |",
        "|---|---|---|---|---|---|",
    ]
    rows = {"out_of_fold": tiers["tiers"], **{k: c["risk_tiers"] for k, c in metrics.get("checks", {}).items()
                                              if k != "out_of_fold" and "risk_tiers" in c}}
    for key, table in rows.items():
        for tier, row in table.items():
            lines.append(f"| {CHECK_NAMES.get(key, key)} | {TIER_NAMES[tier]} | {_share(row['malignant_share'])} | "
                         f"{_share(row['benign_share'])} | {_number(row['ppv'], 2)} | "
                         f"{_number(row['number_needed_to_excise'], 1)} |")
    return [*lines, ""]


def _resolution_lines(metrics: dict) -> list[str]:
    if "resolution" not in metrics:
        return []
    check = metrics["resolution"]
    targets = check["targets"]
    lines = [
        "### Does the size a file arrives at matter?",
        "",
        f"{check['data']}, then analysed as the app analyses an upload (the safety net's level as fitted). Clinics "
        "send 768×512 scans, 1,024-px copies and 6000×4000 DICOMs; the figures should not move. Target: balanced "
        f"accuracy within {targets['balanced_accuracy_range']:.2f} and malignant AUC within "
        f"{targets['malignant_auc_range']:.2f} from 1× to 5×.",
        "",
        "| delivered at | balanced accuracy of the call | malignant AUC | benign lesions above the safety net |",
        "|---|---|---|---|",
        *(f"| {row['factor']:g}× | {row['balanced_accuracy']:.3f} | {_number(row['malignant_auc'])} | "
          f"{_share(row['benign_above_net'])} |" for row in check["rows"]),
        "",
        f"Spread from 1× to 5×: balanced accuracy {check['balanced_accuracy_range']:.3f} "
        f"({_verdict(check['balanced_accuracy_range'], None, targets['balanced_accuracy_range'])}), malignant AUC "
        f"{_number(check['malignant_auc_range'])} ("
        + (_verdict(check['malignant_auc_range'], None, targets['malignant_auc_range'])
           if check["malignant_auc_range"] is not None else "not measured") + "). Enlarged copies of the same "
        "picture are a kind test: a file that is sharper than the training images (a large original shrunk by the "
        "clinic) is not covered by it.",
        "",
    ]
    return lines


def _checks_lines(metrics: dict) -> list[str]:
    checks = metrics.get("checks", {})
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
        sets, net = check.get("conformal", {}), check["safety_net"]
        lines.append(
            f"| {CHECK_NAMES.get(key, key)} | {check['n_images']} | {check['error_rate']:.1%} | {check['flagged_share']:.1%} | "
            f"{_share(check['errors_caught'])} | {_share(sets.get('coverage'))} | {_number(sets.get('mean_set_size'), 2)} | "
            f"{_share(net['malignant_sensitivity'])} | {net['share_marked']:.1%} | "
            f"{_share(check.get('melanomas_flagged_or_suspicious'))} |")
    return [*lines, ""]


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


def views_text(metrics: dict) -> str:
    views = metrics.get("tta_views", 4 if metrics.get("tta") else 1)
    return f"{views} test-time view{'s' if views > 1 else ''}"


def evaluation_report(metrics: dict, version: str) -> str:
    """report.md in the evaluation folder: the same measured sections as the model card."""
    return "\n".join([f"# Evaluation of {version}", "", *metrics_section(metrics, pictures=""), ""])
