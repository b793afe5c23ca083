"""The trust checks on a set of images the model never trained on: how often the flags fire and what they
catch, the conformal sets' coverage, and the safety net's sensitivity and cost. The same measurement for the
out-of-fold HAM10000 images, the shifted copy of them and ISIC 2017 `val`, so the card can show whether the
flags hold up when the images change."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from skinapp.inference.assessment import Assessor
from skinapp.inference.postprocess import PostProcessing, with_held_out_sets
from skinapp.inference.prediction import RawOutputs
from skinapp.metrics import balanced_accuracy_of_calls, expected_calibration_error
from skinapp.trust.conformal import ConformalSets, set_report
from skinapp.trust.decision import DecisionRule
from skinapp.trust.flags import FlagPolicy, needs_manual_check
from skinapp.trust.risk import tier_report
from skinapp.trust.safety_net import SafetyNet, net_report
from skinapp.trust.similar import EmbeddingIndex, TrainingDistribution
from skinapp.vocab import CLASSES, MALIGNANT_INDICES


@dataclass(frozen=True)
class TrustFit:
    """Everything fitted on out-of-fold data that turns the networks' raw outputs into what is shown: the
    post-processing chain and the flag policy."""

    postprocessing: PostProcessing
    policy: FlagPolicy

    @property
    def temperature(self) -> float:
        return self.postprocessing.temperature

    @property
    def rule(self) -> DecisionRule:
        return self.postprocessing.rule

    @property
    def conformal(self) -> ConformalSets:
        return self.postprocessing.conformal

    @property
    def safety_net(self) -> SafetyNet:
        return self.postprocessing.safety_net

    def assessor(self, index: EmbeddingIndex | None = None, distribution: TrainingDistribution | None = None) -> Assessor:
        """The app's assessment with this fit's policy and net, over `index` and `distribution` (the ensemble's,
        or one member's view of them)."""
        return Assessor(self.policy, index, distribution, self.safety_net if self.safety_net.active else None)


EVALUATED_MODEL = "evaluated"  # the version string of predictions made inside `evaluate` (never stored)


def assessed_cases(raws: Sequence[RawOutputs], images: Sequence[np.ndarray], labels: np.ndarray, fit: TrustFit,
                   assessors: Sequence[Assessor], exclude_lesions: Sequence[str | None] | None = None,
                   set_masks: np.ndarray | None = None, suspicious: np.ndarray | None = None,
                   tiers: np.ndarray | None = None) -> pd.DataFrame:
    """One row per image: the call, whether it was right, the manual-check flag and the signs that raised it,
    the conformal set and the safety net, made by the app's own chain (`PostProcessing.finish`,
    `Assessor.assess`). `assessors[i]` judges image i (the ensemble's, or the view of the member that never
    trained on it); `exclude_lesions[i]` is a labelled lesion that may not count among its neighbours.
    `set_masks`, `suspicious` and `tiers`, when given, replace the fitted sets, safety net and risk tiers (their
    cross-fitted values for images the fit saw)."""
    rows = []
    exclude = exclude_lesions if exclude_lesions is not None else [None] * len(raws)
    for i, (raw, image, label, assessor, lesion) in enumerate(zip(
            raws, images, labels, assessors, exclude, strict=True)):
        prediction = fit.postprocessing.finish(raw, EVALUATED_MODEL)
        if set_masks is not None and suspicious is not None:
            prediction = with_held_out_sets(prediction, set_masks[i], bool(suspicious[i]),
                                            None if tiers is None else tiers[i])
        evidence = assessor.evidence(prediction, image, True, exclude_lesion=lesion)
        flags = fit.policy.assess(evidence)
        rows.append({
            "label": int(label), "call": prediction.predicted_index, "correct": prediction.predicted_index == int(label),
            "flagged": needs_manual_check(flags),
            "flag_codes": " ".join(f.code for f in flags if f.serious),
            "suspicious": evidence.suspicious,
            "risk_tier": prediction.risk_tier,
            "malignancy": prediction.malignancy,
            "in_set": [c in (prediction.prediction_set or ()) for c in CLASSES],
            **{c: float(p) for c, p in zip(CLASSES, prediction.probabilities, strict=True)},
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
    if cases["risk_tier"].notna().any():
        summary["risk_tiers"] = tier_report(cases["risk_tier"].to_numpy(object), malignant)
    masks = np.stack(cases["in_set"].to_numpy())
    if masks.any():
        summary["conformal"] = set_report(masks, labels)
    return summary
