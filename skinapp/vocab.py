"""The one vocabulary shared by data loading, the model and the app.

Diagnoses follow HAM10000 / ISIC 2018 task 3. Anatomic sites come in two granularities: HAM10000 names
fine sites ("face", "back"), SIIM-ISIC 2020 names coarse regions ("head/neck", "torso"). Both are
encoded: a fine site implies its region, a region alone leaves the fine site unknown.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

# How a result's model version names the site profile it was made with: "0.2.1+… with site profile Clinic B (…)".
SITE_PROFILE_MARK = " with site profile "

CLASSES: tuple[str, ...] = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
CLASS_NAMES: dict[str, str] = {
    "MEL": "Melanoma",
    "NV": "Melanocytic nevus",
    "BCC": "Basal cell carcinoma",
    "AKIEC": "Actinic keratosis / intraepithelial carcinoma",
    "BKL": "Benign keratosis-like lesion",
    "DF": "Dermatofibroma",
    "VASC": "Vascular lesion",
}
MALIGNANT: tuple[str, ...] = ("MEL", "BCC", "AKIEC")
MALIGNANT_INDICES: tuple[int, ...] = tuple(CLASSES.index(c) for c in MALIGNANT)

# Dermoscopic structures the model reports (issue 28), and what a clinician reads for each.
STRUCTURES: tuple[str, ...] = ("pigment_network", "dots_globules", "streaks", "blue_white_veil", "regression",
                               "vascular")
STRUCTURE_NAMES: dict[str, str] = {
    "pigment_network": "Pigment network",
    "dots_globules": "Dots / globules",
    "streaks": "Streaks",
    "blue_white_veil": "Blue-white veil",
    "regression": "Regression structures",
    "vascular": "Vascular structures",
}

REGIONS: tuple[str, ...] = (
    "head/neck", "upper extremity", "lower extremity", "torso", "palms/soles", "oral/genital",
)
FINE_SITES: tuple[str, ...] = (
    "scalp", "face", "ear", "neck", "chest", "abdomen", "back",
    "upper extremity", "hand", "lower extremity", "foot", "acral", "genital",
)
REGION_OF_SITE: dict[str, str] = {
    "scalp": "head/neck", "face": "head/neck", "ear": "head/neck", "neck": "head/neck",
    "chest": "torso", "abdomen": "torso", "back": "torso",
    "upper extremity": "upper extremity", "hand": "upper extremity",
    "lower extremity": "lower extremity", "foot": "lower extremity",
    "acral": "palms/soles", "genital": "oral/genital",
}
# Free-text names (HAM10000 `localization`, SIIM-ISIC `anatom_site_general_challenge`, common synonyms)
# onto (region, fine site). Either may be None. Region names win over the fine sites of the same name, so
# "upper extremity" means the region in both datasets.
_SITE_ALIASES: dict[str, tuple[str | None, str | None]] = {
    **{s: (REGION_OF_SITE[s], s) for s in FINE_SITES},
    **{r: (r, None) for r in REGIONS},
    "trunk": ("torso", None),
    "anterior torso": ("torso", None),
    "lateral torso": ("torso", None),
    "posterior torso": ("torso", "back"),
    "head": ("head/neck", None),
    "head and neck": ("head/neck", None),
    "arm": ("upper extremity", None),
    "leg": ("lower extremity", None),
    "palms/soles": ("palms/soles", "acral"),
    "palms": ("palms/soles", "acral"),
    "soles": ("palms/soles", "acral"),
    "palm": ("palms/soles", "acral"),
    "sole": ("palms/soles", "acral"),
    "oral": ("oral/genital", None),
    "genitalia": ("oral/genital", "genital"),
}
# Anatomic words in longer descriptions (SNOMED CT code meanings such as "Skin of part of lower limb", DICOM
# BodyPartExamined terms, clinicians' free text). Checked in order, so the more specific words come first:
# "sole of foot" is acral before it is a foot, "posterior surface of thorax" is the back before the chest.
# Limbs give the region only, as the datasets' own "upper extremity" does.
_SITE_WORDS: tuple[tuple[str, str | None, str | None], ...] = (
    (r"palms?|palmar|soles?|plantar|heel|nail|subungual|acral", "palms/soles", "acral"),
    (r"genital\w*|penis|scrot\w*|labi(um|a|al)|vulva\w*|clitoris|perineum|anus|perianal|vagina\w*|urethral|glans|prepuce",
     "oral/genital", "genital"),
    (r"mouth|oral|mucosa|tongue|gingiva|tooth", "oral/genital", None),
    (r"cornea|iris|retina|sclera", None, None),  # the eye itself: not skin
    (r"scalp|occipital|parietal|vertex", "head/neck", "scalp"),
    (r"ears?|auricle|helix|\w*tragus|intertragal|concha|\w*auricular|auditory", "head/neck", "ear"),
    (r"face|facial|cheek|chin|nose|nasi|nasal|nasolabial|forehead|lips?|philtrum|jawline|temporal|eyelids?|canthus|"
     r"eyebrow|eye region|perioral|periocular", "head/neck", "face"),
    (r"neck|nuchal|supraclavicular|submandibular|submental|cervical", "head/neck", "neck"),
    (r"head", "head/neck", None),
    (r"hands?|fingers?|thumb|digit of hand|wrist|knuckle", "upper extremity", "hand"),
    (r"feet|foot|toes?|ankle", "lower extremity", "foot"),
    (r"upper (limb|extremity)|arms?|forearm|elbow|antecubital|axilla|shoulder", "upper extremity", None),
    (r"lower (limb|extremity)|legs?|thigh|knee|popliteal|shin|calf", "lower extremity", None),
    (r"back|dorsum of trunk|lumbar|posterior (surface of )?(thorax|trunk)|scapula\w*|upper thoracic", "torso", "back"),
    (r"chest|thorax|thoracic|sternal|sternum|breast|areola|nipple|infraclavicular|pectoral", "torso", "chest"),
    (r"abdomen|abdominal|epigastric|hypogastric|umbilicus|flank|periumbilical", "torso", "abdomen"),
    (r"trunk|torso|buttocks?|gluteal|groin|inguinal|hip", "torso", None),
)
_SITE_PATTERNS = [(re.compile(rf"\b({words})\b"), region, fine) for words, region, fine in _SITE_WORDS]

SEXES: tuple[str, ...] = ("male", "female")


def _clean(text: object) -> str | None:
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return None
    value = str(text).strip().strip('"').strip("'").strip().lower().replace("_", " ")
    return value or None


@dataclass(frozen=True)
class Site:
    region: str | None = None
    fine: str | None = None

    @property
    def label(self) -> str:
        return self.fine or self.region or "unknown"


def parse_site(text: object) -> Site:
    """Map an anatomic site onto the vocabulary: the datasets' own names exactly, anything longer (a SNOMED
    CT meaning, a DICOM body part, free text) by its anatomic words; anything unrecognised is unknown."""
    value = _clean(text)
    if value is None or value in {"unknown", "nan", "none"}:
        return Site()
    if value in _SITE_ALIASES:
        return Site(*_SITE_ALIASES[value])
    for pattern, region, fine in _SITE_PATTERNS:
        if pattern.search(value):
            return Site(region, fine)
    return Site()


def parse_sex(text: object) -> str | None:
    value = _clean(text)
    if value in {"male", "m"}:
        return "male"
    if value in {"female", "f"}:
        return "female"
    return None


def parse_age(value: object) -> float | None:
    """Age in years from a number, a numeric string, or a DICOM age string such as '045Y'."""
    text = _clean(value)
    if text is None:
        return None
    units = {"y": 1.0, "m": 1 / 12, "w": 1 / 52, "d": 1 / 365}
    factor = 1.0
    if text[-1] in units and text[:-1].replace(".", "", 1).isdigit():
        factor, text = units[text[-1]], text[:-1]
    try:
        age = float(text) * factor
    except ValueError:
        return None
    return age if 0 <= age <= 120 else None


@dataclass(frozen=True)
class Metadata:
    """What the model may know about the patient and the lesion; every field may be missing."""

    age: float | None = None
    sex: str | None = None
    site: Site = Site()

    @classmethod
    def parse(cls, age: object = None, sex: object = None, site: object = None) -> Metadata:
        return cls(parse_age(age), parse_sex(sex), parse_site(site))

    @property
    def is_empty(self) -> bool:
        return self.age is None and self.sex is None and self.site == Site()

    def missing_fields(self) -> list[str]:
        missing = []
        if self.age is None:
            missing.append("age")
        if self.sex is None:
            missing.append("sex")
        if self.site.region is None:
            missing.append("anatomic site")
        return missing


METADATA_DIM = 2 + (len(SEXES) + 1) + (len(REGIONS) + 1) + (len(FINE_SITES) + 1)


def encode_metadata(meta: Metadata) -> list[float]:
    """Tymchenko et al. eq. 1: scaled age with a missing indicator, one-hot sex and site with 'unknown'."""
    age = [meta.age / 100.0, 0.0] if meta.age is not None else [0.0, 1.0]
    sex = [float(meta.sex == s) for s in SEXES] + [float(meta.sex is None)]
    region = [float(meta.site.region == r) for r in REGIONS] + [float(meta.site.region is None)]
    fine = [float(meta.site.fine == s) for s in FINE_SITES] + [float(meta.site.fine is None)]
    return age + sex + region + fine


def metadata_encoding() -> dict:
    """What `encode_metadata` produces, as data: a model card records it, and a model is refused where it differs."""
    return {
        "dim": METADATA_DIM,
        "layout": ["age / 100", "age missing", *[f"sex={s}" for s in SEXES], "sex unknown",
                   *[f"region={r}" for r in REGIONS], "region unknown", *[f"site={s}" for s in FINE_SITES], "site unknown"],
    }
