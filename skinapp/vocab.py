"""The one vocabulary shared by data loading, the model and the app.

Diagnoses follow HAM10000 / ISIC 2018 task 3. Anatomic sites come in two granularities: HAM10000 names
fine sites ("face", "back"), SIIM-ISIC 2020 names coarse regions ("head/neck", "torso"). Both are
encoded: a fine site implies its region, a region alone leaves the fine site unknown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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
    """Map a free-text anatomic site onto the vocabulary; anything unrecognised is unknown."""
    value = _clean(text)
    if value is None or value in {"unknown", "nan", "none"}:
        return Site()
    region, fine = _SITE_ALIASES.get(value, (None, None))
    return Site(region, fine)


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
    def parse(cls, age: object = None, sex: object = None, site: object = None) -> "Metadata":
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
