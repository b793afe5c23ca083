"""De-identified copies of cases for sharing (DICOM PS3.15 Annex E, Basic Application Level Confidentiality
Profile, with the Retain Patient Characteristics and Retain Longitudinal Temporal Information with Modified
Dates options).

- Names, patient IDs, birth dates, institutions, physicians, operators, devices, free-text descriptions and
  private tags are removed or replaced; patient name and ID become a pseudonym.
- Dates are shifted by a per-patient offset, so intervals within a patient survive.
- Every non-standard UID is replaced by one derived from it (same original, same replacement, in one export
  and across exports that share a key).
- Age and sex are kept (ages above 89 are given as 90, as HIPAA's Safe Harbor asks).
- Pixels are never altered: a file that has or may have text burned into the image is flagged, to be checked
  before sharing.
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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence as DicomSequence

from skinapp.io.case import ImportReport
from skinapp.io.dicom import clean_text, looks_like_dicom
from skinapp.io.images import UnreadableImage, read_image
from skinapp.io.metadata_csv import MetadataRow, read_metadata_csv
from skinapp.io.sources import InputFile, expand_inputs
from skinapp.vocab import parse_age

DICOM_UID_ROOT = "1.2.840.10008."  # UIDs the standard itself defines (SOP classes, transfer syntaxes): not identifying

# Annex E table E.1-1 attributes (by keyword) that are removed outright (action X) ...
REMOVE = frozenset([
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "InstitutionCodeSequence",
    "InstitutionalDepartmentTypeCodeSequence", "StationName", "DeviceSerialNumber", "DeviceUID", "PlateID",
    "DetectorID", "OtherPatientIDs", "OtherPatientIDsSequence", "OtherPatientNames", "PatientBirthName",
    "PatientMotherBirthName", "PatientBirthTime", "PatientAddress", "PatientTelephoneNumbers",
    "PatientTelecomInformation", "MilitaryRank", "BranchOfService", "MedicalRecordLocator", "Occupation",
    "AdditionalPatientHistory", "PatientComments", "PatientInsurancePlanCodeSequence", "PatientReligiousPreference",
    "EthnicGroup", "IssuerOfPatientID", "IssuerOfPatientIDQualifiersSequence", "ReferringPhysicianAddress",
    "ReferringPhysicianTelephoneNumbers", "ReferringPhysicianIdentificationSequence",
    "PhysiciansOfRecordIdentificationSequence", "PerformingPhysicianIdentificationSequence",
    "PhysiciansReadingStudyIdentificationSequence", "OperatorIdentificationSequence", "RequestingService",
    "RequestAttributesSequence", "RequestedProcedureDescription", "RequestedProcedureID",
    "ScheduledProcedureStepDescription", "PerformedProcedureStepDescription", "PerformedProcedureStepID",
    "PerformedStationName", "PerformedLocation", "StudyDescription", "SeriesDescription", "ImageComments",
    "AcquisitionComments", "FrameComments", "DerivationDescription", "AdmittingDiagnosesDescription",
    "AdmittingDiagnosesCodeSequence", "AdmissionID", "IssuerOfAdmissionIDSequence", "ProtocolName",
    "ContentSequence", "CurrentPatientLocation", "PatientState", "PregnancyStatus",
    "ReasonForTheRequestedProcedure", "ReasonForStudy", "TextComments", "TextString",
    "AcquisitionDeviceProcessingDescription", "ResponsibleOrganization", "ResponsiblePerson",
    "ModifiedAttributesSequence", "OriginalAttributesSequence"
])
# ... and those kept but emptied (action Z: type 2 attributes must be present)
EMPTY = frozenset(["AccessionNumber", "StudyID", "PatientBirthDate", "ReferringPhysicianName", "ContentCreatorName"])
PSEUDONYMISED = frozenset({"PatientName", "PatientID"})
FILE_META_REMOVE = ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle", "ReceivingApplicationEntityTitle",
                    "PrivateInformationCreatorUID", "PrivateInformation")
OPTIONS = (  # DeidentificationMethodCodeSequence entries (CID 7050)
    ("113100", "Basic Application Confidentiality Profile"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    ("113108", "Retain Patient Characteristics Option"),
)
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


def _scrub(ds: Dataset, pseudonyms: Pseudonymiser, shift: dt.timedelta) -> None:
    for element in list(ds):
        keyword = element.keyword
        if keyword in REMOVE or (element.VR == "PN" and keyword not in PSEUDONYMISED and keyword not in EMPTY):
            del ds[element.tag]
        elif element.VR == "SQ":
            for item in element.value or []:
                _scrub(item, pseudonyms, shift)
        elif keyword in EMPTY:
            element.value = ""
        elif element.VR == "UI" and element.value:
            values = element.value if isinstance(element.value, MultiValue) else [element.value]
            replaced = [v if v.startswith(DICOM_UID_ROOT) else pseudonyms.uid(v) for v in (clean_text(v) or "" for v in values)]
            element.value = replaced if len(replaced) > 1 else replaced[0]
        elif element.VR in ("DA", "DT") and element.value:
            values = element.value if isinstance(element.value, MultiValue) else [element.value]
            shifted = [_shift_date(clean_text(v) or "", shift) for v in values]
            element.value = shifted if len(shifted) > 1 else shifted[0]


def _capped_age(age: float | None) -> float | None:
    return None if age is None else min(age, OLDEST_AGE)


def deidentify_dataset(ds: Dataset, pseudonyms: Pseudonymiser, patient_key: str) -> list[str]:
    """De-identify `ds` in place; returns what the person sharing it must still check."""
    ds.remove_private_tags()
    _scrub(ds, pseudonyms, pseudonyms.date_shift(patient_key))
    ds.PatientName = ds.PatientID = pseudonyms.name("patient", patient_key)
    age = _capped_age(parse_age(clean_text(ds.get("PatientAge"))))
    if "PatientAge" in ds:
        ds.PatientAge = "" if age is None else f"{int(age):03d}Y"
    ds.PatientIdentityRemoved = "YES"
    ds.LongitudinalTemporalInformationModified = "MODIFIED"
    ds.DeidentificationMethod = "skinapp: PS3.15 E basic; characteristics kept; dates shifted"
    codes = []
    for value, meaning in OPTIONS:
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
    burned_in = (clean_text(ds.get("BurnedInAnnotation")) or "").upper()
    if burned_in == "YES":
        return ["the image has text burned into its pixels (Burned In Annotation = YES); check it before sharing"]
    if burned_in != "NO":
        return ["the file does not say whether text is burned into the image; check it before sharing"]
    return []


@dataclass
class ExportedFile:
    file: str          # name in the output folder
    patient: str       # pseudonym
    warnings: list[str]


def _export_dicom(file: InputFile, out: Path, pseudonyms: Pseudonymiser, row: MetadataRow | None) -> ExportedFile:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with file.opener() as handle:
                ds = pydicom.dcmread(handle)
        except Exception as exc:
            raise UnreadableImage(f"DICOM file is damaged or unreadable ({type(exc).__name__})") from None
        file_patient = clean_text(ds.get("PatientID"))
        patient_key = (row.patient_id if row else None) or (file_patient if file_patient != file.stem else None) or file.stem
        notes = deidentify_dataset(ds, pseudonyms, patient_key)
        name = pseudonyms.name("case", file.name) + ".dcm"
        ds.save_as(out / name, enforce_file_format=True)
    return ExportedFile(name, ds.PatientID, notes)


def _export_image(file: InputFile, out: Path, pseudonyms: Pseudonymiser, row: MetadataRow | None) -> ExportedFile:
    image, _ = read_image(file, max_side=None)
    name = pseudonyms.name("case", file.name) + ".png"
    Image.fromarray(image).save(out / name)  # fresh PNG: no EXIF, no text chunks
    patient = pseudonyms.name("patient", (row.patient_id if row else None) or file.stem)
    return ExportedFile(name, patient, ["ordinary image: check the picture itself for anything identifying"])


def run_deidentify(paths: Sequence[Path], out: Path, metadata_csv: Path | None = None, key: str | None = None) -> int:
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
    for file in expand_inputs(paths, report):
        row = rows.get(file.stem)
        try:
            export = _export_dicom if looks_like_dicom(file) else _export_image
            item = export(file, out, pseudonyms, row)
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
        "method": "DICOM PS3.15 Annex E basic profile; retain patient characteristics; modified dates",
        "files": [vars(item) for item in exported],  # rejected files are only printed: their names may identify
    }, indent=2))
    flagged = sum(1 for item in exported if item.warnings)
    print(f"{len(exported)} file(s) de-identified into {out}; {len(report.rejected)} rejected; "
          f"{flagged} need a look at the pixels before sharing (see export.json)")
    for rejection in report.rejected:
        print(f"skipped {rejection.file}: {rejection.reason}", file=sys.stderr)
    return 0 if exported else 1
