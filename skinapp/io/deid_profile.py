"""DICOM PS3.15 Table E.1-1 (Basic Application Level Confidentiality Profile) as data: what to do with each
attribute, with the two options skinapp applies on top of the basic profile.

The table itself comes from `dicom-anonymizer` (Kitware's transcription of the 2026c standard, one list of
tags per action); this module only reads it. Actions combining several letters (X/Z, Z/D, X/Z/D, ...) depend
on whether the attribute is type 1, 2 or 3 in the object's IOD, which a file does not say; skinapp takes the
choice that keeps the file valid without keeping the value: X/Z → emptied, anything with D → dummy value.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import cache

from dicomanonymizer.dicom_anonymization_databases import dicomfields_2026c as table_e1_1
from pydicom.datadict import tag_for_keyword
from pydicom.tag import BaseTag, Tag

TABLE_EDITION = "PS3.15 2026c Table E.1-1"


class Action(enum.Enum):
    REMOVE = "X"
    EMPTY = "Z"
    DUMMY = "D"
    REPLACE_UID = "U"
    SCRUB_ITEMS = "X/Z/U*"  # a sequence of references: keep it, replace the UIDs inside its items
    KEEP = "K"              # kept under the Retain Patient Characteristics option
    SHIFT_DATE = "M"        # modified under the Retain Longitudinal Temporal Information (Modified Dates) option


_LISTS = {  # the table's lists, by the action skinapp takes for them
    "X_TAGS": Action.REMOVE, "Z_TAGS": Action.EMPTY, "D_TAGS": Action.DUMMY, "U_TAGS": Action.REPLACE_UID,
    "X_Z_TAGS": Action.EMPTY, "Z_D_TAGS": Action.DUMMY, "X_D_TAGS": Action.DUMMY, "X_Z_D_TAGS": Action.DUMMY,
    "X_Z_U_STAR_TAGS": Action.SCRUB_ITEMS,
}

# Retain Patient Characteristics: what the model reads (age, sex) and body size; nothing that names or locates.
PATIENT_CHARACTERISTICS = frozenset(tag_for_keyword(k) for k in ("PatientAge", "PatientSex", "PatientSize", "PatientWeight"))
# Dates are shifted, not removed, except those that fix the person rather than the visit.
BIRTH = frozenset(tag_for_keyword(k) for k in ("PatientBirthDate", "PatientBirthTime"))
DATE_VRS = frozenset({"DA", "DT"})
# Whole repeating groups that go: curves (50xx) and overlays (60xx: planes, labels, descriptions, comments).
REMOVED_GROUPS = ((0x5000, 0xFF00), (0x6000, 0xFF00))


@dataclass(frozen=True)
class Profile:
    actions: dict[BaseTag, Action]

    def action(self, tag: BaseTag, vr: str) -> Action | None:
        """What to do with one attribute; None: not in the table, kept (its values still pass the UID and
        date rules, and private attributes are removed before this is asked)."""
        group = tag.group
        if any(group & mask == base for base, mask in REMOVED_GROUPS):
            return Action.REMOVE
        action = self.actions.get(tag)
        if tag in PATIENT_CHARACTERISTICS:
            return Action.KEEP
        if vr in DATE_VRS and tag not in BIRTH and action is not None:
            return Action.SHIFT_DATE
        return action


@cache
def profile() -> Profile:
    actions: dict[BaseTag, Action] = {}
    for name, action in _LISTS.items():
        for entry in getattr(table_e1_1, name):
            if len(entry) == 2:  # masked entries are the 50xx/60xx groups, handled whole
                actions[Tag(*entry)] = action
    return Profile(actions)


def table_tags() -> list[BaseTag]:
    """Every single attribute the table names (its masked repeating-group entries excluded)."""
    return sorted({Tag(*entry) for entry in table_e1_1.ALL_TAGS if len(entry) == 2})
