"""What a lesion turned out to be: the clinical diagnoses a histopathology report or a follow-up gives, wider than the
model's seven classes, and the kinds of outcome a case can have. Data and pure rules; no database, no torch.

Every diagnosis has a stable code (at most 8 characters: the store keeps it, and a reviewer's own diagnosis on a
disagreement uses the same list), the model class it counts as, and whether it is malignant. Actinic keratosis
counts with the malignant lesions, as the model's AKIEC class does (it is the precursor of squamous cell carcinoma);
"other" is the one entry outside the model's classes, named in free text, its malignancy unknown."""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass

from skinapp.vocab import CLASS_NAMES


@dataclass(frozen=True)
class Diagnosis:
    code: str                       # stable: stored in outcomes and decisions, never renamed
    name: str                       # as a dermatologist writes it
    model_class: str | None         # the model's class it counts as (CLASSES); None: outside them ("other")
    malignant: bool | None          # None: unknown ("other")
    aliases: tuple[str, ...] = ()   # other names a laboratory's CSV may use
    breslow: bool = False           # an invasive melanoma: histopathology gives its Breslow thickness

    @property
    def malignancy_text(self) -> str:
        return "unknown" if self.malignant is None else "malignant" if self.malignant else "benign"

    @property
    def label(self) -> str:
        return f"{self.name} ({self.code})"


OTHER = "OTHER"
MEL_INVASIVE = "MEL_INV"

DIAGNOSES: tuple[Diagnosis, ...] = (
    Diagnosis("MIS", "Melanoma in situ", "MEL", True, ("melanoma in situ", "in situ melanoma")),
    Diagnosis(MEL_INVASIVE, "Invasive melanoma", "MEL", True,
              ("invasive melanoma", "melanoma", "malignant melanoma", "superficial spreading melanoma",
               "nodular melanoma", "acral lentiginous melanoma", "lentigo maligna melanoma"), breslow=True),
    Diagnosis("LM", "Lentigo maligna", "MEL", True, ("lentigo maligna",)),
    Diagnosis("SCC", "Squamous cell carcinoma", "AKIEC", True, ("squamous cell carcinoma", "invasive squamous cell carcinoma")),
    Diagnosis("BOWEN", "Bowen's disease", "AKIEC", True,
              ("bowen's disease", "bowen disease", "morbus bowen", "squamous cell carcinoma in situ", "scc in situ")),
    Diagnosis("BCC", "Basal cell carcinoma", "BCC", True, ("basal cell carcinoma", "basalioma")),
    Diagnosis("AK", "Actinic keratosis", "AKIEC", True, ("actinic keratosis", "solar keratosis")),
    Diagnosis("DN", "Dysplastic / Clark nevus", "NV", False,
              ("dysplastic nevus", "clark nevus", "clark's nevus", "atypical nevus", "dysplastic naevus", "clark naevus")),
    Diagnosis("SPITZ", "Spitz / Reed nevus", "NV", False, ("spitz nevus", "reed nevus", "spitz naevus", "reed naevus")),
    Diagnosis("BLUE_NV", "Blue nevus", "NV", False, ("blue nevus", "blue naevus")),
    Diagnosis("DERM_NV", "Dermal nevus", "NV", False,
              ("dermal nevus", "intradermal nevus", "dermal naevus", "intradermal naevus")),
    Diagnosis("CONG_NV", "Congenital nevus", "NV", False, ("congenital nevus", "congenital naevus")),
    Diagnosis("NV_OTHER", "Other melanocytic nevus", "NV", False,
              ("other melanocytic nevus", "melanocytic nevus", "nevus", "naevus", "compound nevus", "junctional nevus")),
    Diagnosis("SK", "Seborrheic keratosis", "BKL", False, ("seborrheic keratosis", "seborrhoeic keratosis")),
    Diagnosis("SL", "Solar lentigo", "BKL", False, ("solar lentigo", "lentigo solaris", "lentigo senilis")),
    Diagnosis("DF", "Dermatofibroma", "DF", False, ("dermatofibroma",)),
    Diagnosis("VASC", "Vascular lesion", "VASC", False,
              ("vascular lesion", "angioma", "haemangioma", "hemangioma", "angiokeratoma", "pyogenic granuloma")),
    Diagnosis(OTHER, "Other", None, None, ("other",)),
)
DIAGNOSIS_BY_CODE: dict[str, Diagnosis] = {d.code: d for d in DIAGNOSES}
CODE_LENGTH = 8  # what the store's diagnosis columns hold


def _key(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower().replace("’", "'").replace("_", " ").replace("≥", ">="))


_BY_NAME: dict[str, Diagnosis] = {
    **{_key(alias): d for d in DIAGNOSES for alias in d.aliases},
    **{_key(d.name): d for d in DIAGNOSES},
    **{_key(d.code): d for d in DIAGNOSES},
}


def find_diagnosis(text: str) -> Diagnosis | None:
    """A diagnosis by its code or a name a clinician or laboratory writes (any case); None where none fits."""
    return _BY_NAME.get(_key(text))


def diagnosis_label(code: str | None) -> str:
    """A stored diagnosis code in words: the clinical list's, or one of the model's classes (decisions recorded
    before the clinical list hold those)."""
    if code is None:
        return ""
    if code in DIAGNOSIS_BY_CODE:
        return DIAGNOSIS_BY_CODE[code].label
    return f"{CLASS_NAMES[code]} ({code})" if code in CLASS_NAMES else code


HISTOPATHOLOGY, STABLE, NOT_EXCISED = "histopathology", "stable_12m", "not_excised"
OUTCOME_KINDS: dict[str, str] = {
    HISTOPATHOLOGY: "Histopathology result",
    STABLE: "Stable at follow-up ≥ 12 months",
    NOT_EXCISED: "Not excised",
}
_KIND_NAMES = {**{_key(k): k for k in OUTCOME_KINDS}, **{_key(v): k for k, v in OUTCOME_KINDS.items()},
               "histopathology": HISTOPATHOLOGY, "histology": HISTOPATHOLOGY, "pathology": HISTOPATHOLOGY,
               "histo": HISTOPATHOLOGY, "stable": STABLE, "stable at follow-up": STABLE, "follow-up": STABLE,
               "stable at follow up": STABLE, "not excised": NOT_EXCISED}


def find_kind(text: str) -> str | None:
    return _KIND_NAMES.get(_key(text))


BRESLOW_MAX_MM = 60.0          # above this a Breslow thickness is a typing error (the thickest reported are ~ 40 mm)
EARLIEST_RESULT = dt.date(1950, 1, 1)


class OutcomeError(ValueError):
    """An outcome that cannot be recorded; the message says why in a clinician's words."""


def parse_result_date(text: str) -> dt.date:
    """YYYY-MM-DD, or DD.MM.YYYY as European laboratories write it (never the ambiguous 01/02/2025)."""
    value = text.strip()
    for pattern in ("%Y-%m-%d", "%d.%m.%Y"):
        try:
            return dt.datetime.strptime(value, pattern).date()
        except ValueError:
            continue
    raise OutcomeError(f"the date {value!r} is not a date (write it as YYYY-MM-DD or DD.MM.YYYY)")


def parse_breslow(text: str) -> float | None:
    """A Breslow thickness in mm ("0.8", "0,8", "0.8 mm"); None where the cell is empty."""
    value = text.strip().lower().removesuffix("mm").strip().replace(",", ".")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        raise OutcomeError(f"the Breslow thickness {text.strip()!r} is not a number of millimetres") from None


def checked_outcome(kind: str, diagnosis: str | None, breslow_mm: float | None, result_date: dt.date | None,
                    diagnosis_text: str | None, today: dt.date | None = None) -> tuple[str | None, float | None, str | None]:
    """The rules an outcome follows; returns (diagnosis, Breslow, free text) as kept, or raises OutcomeError.

    A histopathology result names its diagnosis; an invasive melanoma needs its Breslow thickness, which only
    histopathology gives, and no other diagnosis has one; "other" needs its name in words, and only "other" has one;
    the date is a real day, not in the future."""
    if kind not in OUTCOME_KINDS:
        raise OutcomeError(f"{kind!r} is not a kind of outcome (one of: {', '.join(OUTCOME_KINDS.values())})")
    if diagnosis is not None and diagnosis not in DIAGNOSIS_BY_CODE:
        raise OutcomeError(f"{diagnosis!r} is not a diagnosis of the clinical list")
    if kind == HISTOPATHOLOGY and diagnosis is None:
        raise OutcomeError("a histopathology result needs its diagnosis")
    entry = DIAGNOSIS_BY_CODE.get(diagnosis or "")
    if breslow_mm is not None and (isinstance(breslow_mm, bool) or not isinstance(breslow_mm, int | float)):
        raise OutcomeError("the Breslow thickness is not a number of millimetres")
    if entry is not None and entry.breslow:
        if kind != HISTOPATHOLOGY:
            raise OutcomeError("an invasive melanoma is a histopathology result (it has a Breslow thickness)")
        if breslow_mm is None:
            raise OutcomeError("an invasive melanoma needs its Breslow thickness in mm")
        if math.isnan(breslow_mm) or not 0 < breslow_mm <= BRESLOW_MAX_MM:
            raise OutcomeError(f"a Breslow thickness of {breslow_mm:g} mm is not possible (more than 0, at most "
                               f"{BRESLOW_MAX_MM:g} mm)")
        breslow_mm = round(float(breslow_mm), 2)
    elif breslow_mm is not None:
        raise OutcomeError("a Breslow thickness belongs to an invasive melanoma only, not to "
                           + (entry.label if entry else "an outcome without a diagnosis"))
    text = (diagnosis_text or "").strip() or None
    if diagnosis == OTHER and text is None:
        raise OutcomeError("“other” needs the diagnosis in words")
    if diagnosis != OTHER and text is not None:
        raise OutcomeError("a diagnosis in words is given with “other” only")
    if result_date is None:
        raise OutcomeError("the outcome needs the date of its result")
    if not isinstance(result_date, dt.date) or isinstance(result_date, dt.datetime):
        raise OutcomeError("the date of the result is not a date")
    today = today or dt.date.today()
    if result_date > today + dt.timedelta(days=1):  # a day's grace: the laboratory may be a time zone ahead
        raise OutcomeError(f"the date {result_date.isoformat()} lies in the future")
    if result_date < EARLIEST_RESULT:
        raise OutcomeError(f"the date {result_date.isoformat()} lies before {EARLIEST_RESULT.year}")
    return diagnosis, breslow_mm, text
