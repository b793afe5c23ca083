"""De-identified copies of cases for sharing (DICOM PS3.15 Annex E, Basic Application Level Confidentiality
Profile, with the Retain Patient Characteristics and Retain Longitudinal Temporal Information with Modified
Dates options).

- Every attribute of Table E.1-1 gets its action (removed, emptied, dummy value, UID replaced; see
  `deid_profile`); private attributes, curves (50xx) and overlays (60xx) go; patient name and ID become a
  pseudonym; a person name the table does not know is removed too.
- Dates are shifted by a per-patient offset, so intervals within a patient survive; times get the table's action.
- Every non-standard UID is replaced by one derived from it (same original, same replacement, in one export
  and across exports that share a key).
- Age, sex, height and weight are kept (ages above 89 are given as 90, as HIPAA's Safe Harbor asks).
- Compressed frames lose their EXIF/XMP/comment segments; native pixels lose old-style overlay bits. Pixel
  values are never altered, so text burned into the image stays: every file is flagged to be looked at
  before sharing, whatever its Burned In Annotation says.
- Ordinary images are re-encoded as PNG, which drops EXIF (camera, GPS, dates).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import hmac
import json
import secrets
import sys
import warnings
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence as DicomSequence

from skinapp.io.case import ImportReport
from skinapp.io.codestream import strip_metadata
from skinapp.io.deid_profile import DATE_VRS, TABLE_EDITION, Action, profile
from skinapp.io.dicom import clean_text, looks_like_dicom
from skinapp.io.images import UnreadableImage, read_image
from skinapp.io.metadata_csv import MetadataRow, read_metadata_csv
from skinapp.io.sources import InputFile, expand_inputs
from skinapp.vocab import parse_age

DICOM_UID_ROOT = "1.2.840.10008."  # UIDs the standard itself defines (SOP classes, transfer syntaxes): not identifying
FILE_META_REMOVE = ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle", "ReceivingApplicationEntityTitle",
                    "PrivateInformationCreatorUID", "PrivateInformation")
DUMMY_TEXT = "ANONYMIZED"
DUMMY_BY_VR: dict[str, object] = {
    "AE": "ANONYMIZED", "AS": "000Y", "CS": "ANONYMIZED", "DA": "19000101", "DT": "19000101", "TM": "000000",
    "PN": "Anonymized", "DS": "0", "IS": "0", "UR": "", "OB": b"", "OW": b"", "OD": b"", "OF": b"", "OL": b"",
    "OV": b"", "UN": b"", "US": 0, "SS": 0, "UL": 0, "SL": 0, "UV": 0, "SV": 0, "FL": 0.0, "FD": 0.0, "AT": 0,
}
OPTIONS = (  # DeidentificationMethodCodeSequence entries (CID 7050)
    ("113100", "Basic Application Confidentiality Profile"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    ("113108", "Retain Patient Characteristics Option"),
)
CLEAN_DESCRIPTORS = ("113105", "Clean Descriptors Option")
# Free text the table does not name (a nested TextValue, ContentDescription, ManufacturerModelName …) may hold a
# name or a story. Under Clean Descriptors it is emptied; what stays is listed for the person sharing the files.
FREE_TEXT_VRS = frozenset({"LO", "LT", "ST", "UT", "SH", "UC"})
KEPT_TEXT = frozenset({  # coded values and what de-identification itself writes
    "CodeValue", "CodingSchemeDesignator", "CodingSchemeVersion", "CodeMeaning", "LongCodeValue", "URNCodeValue",
    "ContextIdentifier", "MappingResource", "PatientID", "DeidentificationMethod",
})


@dataclass
class FreeText:
    """The free-text attributes a copy had: emptied under Clean Descriptors, or kept (by keyword, never value)."""

    clean: bool = True
    emptied: set[str] = field(default_factory=set)
    kept: set[str] = field(default_factory=set)
OLDEST_AGE = 90


@dataclass
class Pseudonymiser:
    """Keyed, one-way replacements: the same original always gives the same replacement under one key."""

    key: bytes = field(default_factory=lambda: secrets.token_bytes(32))

    def _digest(self, kind: str, value: str) -> bytes:
        return hmac.new(self.key, f"{kind}\0{value}".encode(), hashlib.sha256).digest()

    def name(self, kind: str, value: str) -> str:
        return f"{kind}-{self._digest(kind, value).hex()[:12]}"

    def uid(self, value: str) -> str:
        return "2.25." + str(int.from_bytes(self._digest("uid", value)[:16], "big"))

    def date_shift(self, patient: str) -> dt.timedelta:
        """Between 1 and 3 years back, the same for every file of one patient."""
        return dt.timedelta(days=-(365 + int.from_bytes(self._digest("date", patient)[:4], "big") % 730))


def _shift_date(text: str, shift: dt.timedelta) -> str:
    try:
        day = dt.datetime.strptime(text[:8], "%Y%m%d").date()
    except ValueError:
        return ""
    return (day + shift).strftime("%Y%m%d") + text[8:]


def _dummy(vr: str) -> object:
    return DUMMY_BY_VR.get(vr, DUMMY_TEXT)


def _replace_values(element: DataElement, replace: Callable[[str], str]) -> None:
    values = element.value if isinstance(element.value, MultiValue) else [element.value]
    replaced = [replace(clean_text(v) or "") for v in values]
    element.value = replaced if len(replaced) > 1 else replaced[0]


def _scrub(ds: Dataset, pseudonyms: Pseudonymiser, shift: dt.timedelta, text: FreeText) -> None:
    table = profile()
    for element in list(ds):
        action = table.action(element.tag, element.VR)
        if action is Action.REMOVE or (action is None and element.VR == "PN"):
            del ds[element.tag]  # a person's name the table does not know is still a name
        elif action is Action.KEEP:
            continue
        elif element.VR == "SQ":
            if action in (Action.EMPTY, Action.DUMMY):
                element.value = DicomSequence([])
            else:
                for item in element.value or []:
                    _scrub(item, pseudonyms, shift, text)
        elif action is None and element.VR in FREE_TEXT_VRS and element.value not in (None, ""):
            name = element.keyword or str(element.tag)
            if text.clean and name not in KEPT_TEXT:
                element.value = None
                text.emptied.add(name)
            else:
                text.kept.add(name)
        elif action is Action.EMPTY:
            element.value = None
        elif element.VR == "UI" and element.value:
            _replace_values(element, lambda uid: uid if uid.startswith(DICOM_UID_ROOT) else pseudonyms.uid(uid))
        elif element.VR in DATE_VRS and action in (None, Action.SHIFT_DATE):
            if element.value:
                _replace_values(element, lambda text: _shift_date(text, shift))
        elif action is Action.DUMMY:
            element.value = _dummy(element.VR)


def _clean_pixel_data(ds: Dataset) -> list[str]:
    """Metadata hiding in the pixel data: segments inside compressed frames, old-style overlays in the bits a
    native pixel does not use. The coded pixel values are never changed."""
    if "PixelData" not in ds or getattr(ds, "file_meta", None) is None or "TransferSyntaxUID" not in ds.file_meta:
        return []
    syntax = ds.file_meta.TransferSyntaxUID
    if syntax.is_encapsulated:
        frames = list(generate_frames(ds.PixelData, number_of_frames=int(ds.get("NumberOfFrames") or 1)))
        cleaned = [strip_metadata(frame) for frame in frames]
        if cleaned != frames:
            ds.PixelData = encapsulate(cleaned, has_bot=len(cleaned) > 1)
            for keyword in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
                if keyword in ds:
                    del ds[keyword]
        return []
    allocated, stored = int(ds.get("BitsAllocated") or 0), int(ds.get("BitsStored") or 0)
    if allocated not in (8, 16, 32) or not 0 < stored < allocated:
        return []
    high_bit = int(ds.get("HighBit", stored - 1))
    used = ((1 << stored) - 1) << max(high_bit - stored + 1, 0)
    dtype = np.dtype(f"{'<' if syntax.is_little_endian else '>'}u{allocated // 8}")
    pixels = np.frombuffer(ds.PixelData, dtype=dtype, count=len(ds.PixelData) // dtype.itemsize)
    if not (pixels & ~np.array(used, dtype=dtype)).any():
        return []
    ds.PixelData = (pixels & np.array(used, dtype=dtype)).tobytes() + ds.PixelData[pixels.nbytes:]
    return ["bits outside the stored pixel values (an old-style overlay) were cleared"]


def _capped_age(age: float | None) -> float | None:
    return None if age is None else min(age, OLDEST_AGE)


def deidentify_dataset(ds: Dataset, pseudonyms: Pseudonymiser, patient_key: str,
                       text: FreeText | None = None) -> list[str]:
    """De-identify `ds` in place; returns what the person sharing it must still check. `text` (Clean Descriptors
    on by default) receives the free-text attributes emptied and kept."""
    text = text if text is not None else FreeText()
    ds.remove_private_tags()
    _scrub(ds, pseudonyms, pseudonyms.date_shift(patient_key), text)
    ds.PatientName = ds.PatientID = pseudonyms.name("patient", patient_key)
    age = _capped_age(parse_age(clean_text(ds.get("PatientAge"))))
    if "PatientAge" in ds:
        ds.PatientAge = "" if age is None else f"{int(age):03d}Y"
    ds.PatientIdentityRemoved = "YES"
    ds.LongitudinalTemporalInformationModified = "MODIFIED"
    ds.DeidentificationMethod = ("PS3.15 E.1-1 basic; patient characteristics kept; dates shifted"
                                 + ("; descriptors cleaned" if text.clean else ""))
    codes = []
    for value, meaning in (*OPTIONS, *([CLEAN_DESCRIPTORS] if text.clean else [])):
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = value, "DCM", meaning
        codes.append(code)
    ds.DeidentificationMethodCodeSequence = DicomSequence(codes)
    for keyword in FILE_META_REMOVE:  # which station sent the file
        if getattr(ds, "file_meta", None) is not None and keyword in ds.file_meta:
            del ds.file_meta[keyword]
    if getattr(ds, "file_meta", None) is not None and "SOPInstanceUID" in ds:
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        if "SOPClassUID" in ds:
            ds.SOPClassUID = clean_text(ds.SOPClassUID)
            ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    notes = []
    if text.kept - KEPT_TEXT:
        notes.append("free text kept (check it reads no name or story): " + ", ".join(sorted(text.kept - KEPT_TEXT)))
    return notes + _clean_pixel_data(ds) + _pixels_to_check(ds)


def _pixels_to_check(ds: Dataset) -> list[str]:
    """Burned-in text is never assumed absent: a file saying "NO" is as often wrong as a file saying nothing."""
    burned_in = (clean_text(ds.get("BurnedInAnnotation")) or "").upper()
    recognisable = (clean_text(ds.get("RecognizableVisualFeatures")) or "").upper()
    notes = []
    if burned_in == "YES":
        notes.append("the image has text burned into its pixels (Burned In Annotation = YES); check it before sharing")
    elif burned_in == "NO":
        notes.append("the file says no text is burned into the image, which is not taken on trust; check it before sharing")
    else:
        notes.append("the file does not say whether text is burned into the image; check it before sharing")
    if recognisable == "YES":
        notes.append("the image may show recognisable features of the patient (Recognizable Visual Features = YES)")
    return notes


@dataclass
class ExportedFile:
    file: str          # name in the output folder
    patient: str       # pseudonym
    warnings: list[str]
    free_text_emptied: list[str] = field(default_factory=list)  # attribute keywords, never their values
    free_text_kept: list[str] = field(default_factory=list)


def _export_dicom(file: InputFile, out: Path, pseudonyms: Pseudonymiser, row: MetadataRow | None,
                  clean_descriptors: bool = True) -> ExportedFile:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with file.opener() as handle:
                ds = pydicom.dcmread(handle)
        except Exception as exc:
            raise UnreadableImage(f"DICOM file is damaged or unreadable ({type(exc).__name__})") from None
        file_patient = clean_text(ds.get("PatientID"))
        patient_key = (row.patient_id if row else None) or (file_patient if file_patient != file.stem else None) or file.stem
        text = FreeText(clean_descriptors)
        notes = deidentify_dataset(ds, pseudonyms, patient_key, text)
        name = pseudonyms.name("case", file.name) + ".dcm"
        ds.preamble = bytes(128)  # the preamble is free for any use, a name included: it goes out blank
        ds.save_as(out / name, enforce_file_format=True)
    return ExportedFile(name, ds.PatientID, notes, sorted(text.emptied), sorted(text.kept))


def _export_image(file: InputFile, out: Path, pseudonyms: Pseudonymiser, row: MetadataRow | None) -> ExportedFile:
    image, _ = read_image(file, max_side=None)
    name = pseudonyms.name("case", file.name) + ".png"
    Image.fromarray(image).save(out / name)  # fresh PNG: no EXIF, no text chunks
    patient = pseudonyms.name("patient", (row.patient_id if row else None) or file.stem)
    return ExportedFile(name, patient, ["ordinary image: check the picture itself for anything identifying"])


def run_deidentify(paths: Sequence[Path], out: Path, metadata_csv: Path | None = None, key: str | None = None,
                   clean_descriptors: bool = True) -> int:
    """Write de-identified copies into `out` with a `metadata.csv` (pseudonymous patient, age, sex, site) and
    `export.json` (what to check). The link from original to copy is printed here and stored nowhere."""
    pseudonyms = Pseudonymiser(key.encode() if key else secrets.token_bytes(32))
    report = ImportReport()
    rows = {}
    if metadata_csv is not None:
        try:
            rows = read_metadata_csv(metadata_csv)
        except ValueError as exc:
            report.reject(metadata_csv, str(exc))
    out.mkdir(parents=True, exist_ok=True)
    exported: list[ExportedFile] = []
    table = []
    with ExitStack() as archives:  # open until the last file is exported
        for file in expand_inputs(paths, report, archives):
            row = rows.get(file.stem)
            try:
                item = (_export_dicom(file, out, pseudonyms, row, clean_descriptors) if looks_like_dicom(file)
                        else _export_image(file, out, pseudonyms, row))
            except UnreadableImage as exc:
                report.reject(file.name, str(exc))
                continue
            except Exception as exc:
                report.reject(file.name, f"could not be exported ({type(exc).__name__})")
                continue
            exported.append(item)
            print(f"{file.name} → {out / item.file}")
            meta = row.metadata if row else None
            table.append({
                "image_name": Path(item.file).stem, "patient_id": item.patient,
                "sex": (meta.sex if meta else None) or "",
                "age_approx": "" if not meta or meta.age is None else _capped_age(meta.age),
                "anatom_site_general_challenge": (meta.site.region if meta else None) or "",
            })
    with open(out / "metadata.csv", "w", newline="") as handle:
        columns = ["image_name", "patient_id", "sex", "age_approx", "anatom_site_general_challenge"]
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(table)
    (out / "export.json").write_text(json.dumps({
        "method": f"DICOM {TABLE_EDITION} basic profile; retain patient characteristics; modified dates"
                  + ("; clean descriptors (free text the table does not name is emptied)" if clean_descriptors else
                     "; free text the table does not name is kept and listed per file"),
        "files": [vars(item) for item in exported],  # rejected files are only printed: their names may identify
    }, indent=2))
    flagged = sum(1 for item in exported if item.warnings)
    print(f"{len(exported)} file(s) de-identified into {out}; {len(report.rejected)} rejected; "
          f"{flagged} need a look at the pixels before sharing (see export.json)")
    for rejection in report.rejected:
        print(f"skipped {rejection.file}: {rejection.reason}", file=sys.stderr)
    return 0 if exported else 1
