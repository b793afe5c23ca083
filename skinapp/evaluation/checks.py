"""The trust checks on a set of images the model never trained on: how often the flags fire and what they
catch, the conformal sets' coverage, and the safety net's sensitivity and cost. The same measurement for the
out-of-fold HAM10000 images, the shifted copy of them and ISIC 2017 `val`, so the card can show whether the
flags hold up when the images change."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from skinapp.evaluation.metrics import balanced_accuracy_of_calls, expected_calibration_error
from skinapp.inference.prediction import Prediction
from skinapp.trust.calibration import apply_temperature
from skinapp.trust.conformal import ConformalSets, set_report
from skinapp.trust.decision import DecisionRule
from skinapp.trust.flags import Evidence, FlagPolicy, needs_manual_check
from skinapp.trust.safety_net import SafetyNet, net_report
from skinapp.trust.signs import image_statistics
from skinapp.vocab import CLASSES, MALIGNANT_INDICES, Metadata


@dataclass(frozen=True)
class TrustFit:
    """Everything fitted on out-of-fold data that turns the networks' raw probabilities into what is shown."""

    temperature: float
    rule: DecisionRule
    conformal: ConformalSets
    safety_net: SafetyNet
    policy: FlagPolicy


def assessed_cases(predictions: Sequence[Prediction], images: Sequence[np.ndarray], metadata: Sequence[Metadata],
                   labels: np.ndarray, fit: TrustFit, ood_distances: Sequence[float | None] | None = None,
                   agreements: Sequence[float | None] | None = None, set_masks: np.ndarray | None = None,
                   suspicious: np.ndarray | None = None) -> pd.DataFrame:
    """One row per image: the call, whether it was right, the manual-check flag and the signs that raised it,
    the conformal set and the safety net, as the app would show them. `predictions` are uncalibrated (made with
    `calibrate=False`). `set_masks` and `suspicious`, when given, replace the fitted sets and safety net (their
    cross-fitted values for images the fit saw)."""
    rows = []
    n = len(predictions)
    ood_distances = ood_distances if ood_distances is not None else [None] * n
    agreements = agreements if agreements is not None else [None] * n
    for i, (prediction, image, meta, label, far, agree) in enumerate(zip(
            predictions, images, metadata, labels, ood_distances, agreements, strict=True)):
        probabilities = apply_temperature(prediction.probabilities, fit.temperature)
        scores = fit.rule.scores(probabilities)
        call = int(np.argmax(scores))
        colourfulness, contrast = image_statistics(image)
        prediction_set = fit.conformal.prediction_set(scores) if fit.conformal.active else None
        if set_masks is not None:
            prediction_set = tuple(CLASSES[k] for k in np.argsort(-scores, kind="stable") if set_masks[i, k])
        evidence = Evidence(probabilities, apply_temperature(prediction.view_probabilities, fit.temperature),
                            prediction.attention_grid, True, meta, ood_distance=far, neighbour_agreement=agree,
                            colourfulness=colourfulness, contrast=contrast, call=call, prediction_set=prediction_set,
                            safety_net=fit.safety_net,
                            marked_suspicious=None if suspicious is None else bool(suspicious[i]))
        flags = fit.policy.assess(evidence)
        rows.append({
            "label": int(label), "call": call, "correct": call == int(label),
            "flagged": needs_manual_check(flags),
            "flag_codes": " ".join(f.code for f in flags if f.serious),
            "suspicious": evidence.suspicious,
            "malignancy": evidence.malignancy,
            "in_set": [c in (prediction_set or ()) for c in CLASSES],
            **{c: float(p) for c, p in zip(CLASSES, probabilities, strict=True)},
        })
    return pd.DataFrame(rows)


def check_summary(cases: pd.DataFrame, description: str) -> dict:
    labels = cases["label"].to_numpy()
    flagged, correct = cases["flagged"].to_numpy(bool), cases["correct"].to_numpy(bool)
    malignant = np.isin(labels, MALIGNANT_INDICES)
    errors = ~correct
    suspicious = cases["suspicious"].to_numpy(bool)
    melanoma = labels == CLASSES.index("MEL")
    summary = {
        "data": description,
        "n_images": len(cases),
        "error_rate": float(errors.mean()),
        "balanced_accuracy": balanced_accuracy_of_calls(labels, cases["call"].to_numpy()),
        "ece": expected_calibration_error(labels, cases[list(CLASSES)].to_numpy()),
        "flagged_share": float(flagged.mean()),
        "errors_caught": float(flagged[errors].mean()) if errors.any() else None,
        "accuracy_unflagged": float(correct[~flagged].mean()) if (~flagged).any() else None,
        "safety_net": net_report(suspicious, malignant),
        "melanomas_flagged_or_suspicious": float((flagged | suspicious)[melanoma].mean()) if melanoma.any() else None,
    }
    masks = np.stack(cases["in_set"].to_numpy())
    if masks.any():
        summary["conformal"] = set_report(masks, labels)
    return summary
