"""Text a person reads: user strings made inert, and the model's behaviour in a clinician's words."""

from __future__ import annotations

import html
import re

from skinapp.model.measured import CardMetrics
from skinapp.vocab import CLASS_NAMES, SITE_PROFILE_MARK

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+\-.!|~$:])")


_WORD_JOINER = "\u2060"
_LINK_LITERAL = re.compile(r"(?i)(?<=www)(?=\.)|(?=[:@])")


def plain_markdown(text: object) -> str:
    """User text (names, notes, DICOM values) made inert inside st.markdown: every markup character escaped, and
    an invisible word joiner before ':' and '@' and after 'www' so that the renderer's link detection (which runs
    after escapes are undone) finds no web or e-mail address to turn into a link."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", _LINK_LITERAL.sub(_WORD_JOINER, str(text)))


def plain_chart_text(text: object) -> str:
    """User text made inert inside a Plotly label or hover text, which render a subset of HTML (<b>, <a href>)."""
    return html.escape(str(text), quote=True)


def decision_rule_text(call: str, most_probable: str, most_probable_probability: float) -> str | None:
    """Why the top diagnosis is not the most probable one, in a clinician's words, for the case page and the
    report; None where they are the same (the rule itself is explained once, in the model card)."""
    if call == most_probable:
        return None
    return (f"Here the single most probable diagnosis is {CLASS_NAMES[most_probable]} ({most_probable_probability:.0%}). "
            "The top diagnosis is chosen by a rule that gives rarer diagnoses, melanoma among them, a fair chance: "
            "it weighs each probability against how often the model says that diagnosis in general.")


def older_model_text(stored_version: str, installed_version: str) -> str:
    if stored_version.startswith(installed_version + SITE_PROFILE_MARK):
        return (f"This result was made by the installed model adapted to a site ({plain_markdown(stored_version)}). "
                "The model card's figures were measured without a profile and may not hold with it; on a clinic the "
                "model never saw, profiles lowered melanoma AUC (model card, \"Site profiles\"). This result and any "
                "decision on it are kept.")
    return (f"This result was made by an older model ({plain_markdown(stored_version)}), not the one now installed "
            f"({plain_markdown(installed_version)}). Import the case again to analyse it with the current model; "
            "this result and any decision on it are kept.")


def prediction_set_text(prediction_set: tuple[str, ...], coverage: float = 0.9) -> str:
    """The conformal set in a clinician's words (markdown)."""
    names = [f"{CLASS_NAMES[c]} ({c})" for c in prediction_set]
    if len(names) == 1:
        return (f"**The diagnosis is {names[0]}**, with about {coverage:.0%} certainty as measured on held-out images: "
                "the model's set of possible diagnoses holds this one only.")
    return (f"**The diagnosis is one of: {', '.join(names)}.** On held-out images such a set held the true diagnosis "
            f"about {coverage:.0%} of the time; the model cannot narrow it further.")


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: object) -> object:
    """A cell a spreadsheet will not run as a formula (CSV injection): text starting with = + - @ gets a quote. A
    number written as text ("-0.25") is left as it is: it is a value, not a formula."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        try:
            float(value)
        except ValueError:
            return "'" + value
    return value


def percent_text(probability: float) -> str:
    """A calibrated probability as a clinician should read it: never a flat 0 % or 100 %."""
    if probability < 0.01:
        return "< 1 %"
    if probability > 0.99:
        return "> 99 %"
    return f"{probability * 100:.0f} %"


_PLURAL_NAMES = {
    "MEL": "melanomas", "NV": "melanocytic nevi", "BCC": "basal cell carcinomas",
    "AKIEC": "actinic keratoses / intraepithelial carcinomas", "BKL": "benign keratosis-like lesions",
    "DF": "dermatofibromas", "VASC": "vascular lesions",
}


def class_recall_text(metrics: CardMetrics, class_name: str) -> str | None:
    """How often the model's call finds this diagnosis, from the model card's own held-out evaluation: the
    balanced rule's cross-fitted recall where the model uses the rule, and the external ISIC 2017 check where
    the diagnosis occurs there. None when the card has no such figure."""
    rule, with_metadata, external = metrics.decision_rule, metrics.with_metadata, metrics.external
    held_out = ((rule.recall_balanced_rule if rule is not None else None)
                or (with_metadata.recall if with_metadata is not None else None))
    if not held_out or held_out.get(class_name) is None:
        return None
    text = f"This model finds {held_out[class_name] * 100:.0f} % of {_PLURAL_NAMES[class_name]} in held-out HAM10000 images"
    external_recall = None if external is None else (
        external.recall_balanced_rule if rule is not None else external.recall_argmax).get(class_name)
    if external is not None and external_recall is not None:
        count = external.classes_present.get(class_name)
        text += f" and {external_recall * 100:.0f} % in images from other clinics (ISIC 2017" + (
            f", {count} images)" if count else ")")
    return text + "."
