"""The result of one reviewed case as a DICOM Comprehensive SR (TID 1500 Measurement Report, built with highdicom),
for the PACS to keep and show beside the image it describes.

One measurement group (TID 1410 planar ROI) holds: the lesion outline as a polyline in the source image's pixels,
the model's probabilities (malignancy as DCM "Probability of cancer", each class under the private scheme below),
area and longest diameter in millimetres where the image is calibrated, and as qualitative evaluations the model's
call, its risk tier, each warning (with its reason as text), each member of the set of possible diagnoses, and the
reviewer's decision and diagnosis. The document's observers are the reviewer (person) and the model (device, whose
model name is the version and whose UID is derived from the model's identity).

Codes come from SNOMED CT and DCM where pydicom's code dictionary has the concept; the rest use the private
scheme SKINAPP_SCHEME, listed in `PRIVATE_CODES` and in the README. The report copies the patient and study
attributes from the source image and nothing else about the patient: the reviewer's free-text note is not sent."""

from __future__ import annotations

import re
from dataclasses import dataclass

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from skinapp.io.dicom import clean_text
from skinapp.store import Decision, StoredCase, StoredPrediction
from skinapp.store.records import DECISIONS
from skinapp.trust.risk import TIER_NAMES
from skinapp.vocab import CLASS_NAMES, CLASSES

SKINAPP_SCHEME = "99SKINAPP"
MANUFACTURER = "skinapp"
SERIES_DESCRIPTION = "skinapp result (decision support)"
SR_SERIES_NUMBER = 9901

UNIT_NONE = hd.sr.CodedConcept("1", "UCUM", "no units")
UNIT_MM = hd.sr.CodedConcept("mm", "UCUM", "millimeter")
UNIT_MM2 = hd.sr.CodedConcept("mm2", "UCUM", "square millimeter")


def private(value: str, meaning: str) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value, SKINAPP_SCHEME, meaning)


MODEL_CALL = private("MODEL-DX", "Model's diagnosis")
RISK_TIER = private("RISK-TIER", "Malignancy risk tier")
WARNING = private("WARNING", "Model warning")
WARNING_REASON = private("WARNING-REASON", "Model warning reason")
POSSIBLE_DIAGNOSIS = private("SET-DX", "In the set of possible diagnoses")
REVIEW_DECISION = private("REVIEW-DECISION", "Reviewer's decision")
REVIEW_DIAGNOSIS = private("REVIEW-DX", "Reviewer's diagnosis")
MODEL_IDENTITY = private("MODEL-ID", "Model identity")

# The seven classes: SNOMED CT where pydicom knows the concept exactly, else private.
DIAGNOSIS_CODES: dict[str, hd.sr.CodedConcept] = {
    c: private(c, CLASS_NAMES[c]) for c in CLASSES
} | {"MEL": hd.sr.CodedConcept.from_code(codes.SCT.MalignantMelanoma)}


def probability_name(cls: str) -> hd.sr.CodedConcept:
    return private(f"P-{cls}", f"Probability of {CLASS_NAMES[cls].lower()}")


PRIVATE_CODES: dict[str, str] = {
    **{c.value: c.meaning for c in (MODEL_CALL, RISK_TIER, WARNING, WARNING_REASON, POSSIBLE_DIAGNOSIS,
                                    REVIEW_DECISION, REVIEW_DIAGNOSIS, MODEL_IDENTITY)},
    **{c: CLASS_NAMES[c] for c in CLASSES if c != "MEL"},
    **{f"P-{c}": f"Probability of {CLASS_NAMES[c].lower()}" for c in CLASSES},
    **{f"TIER-{t}": name for t, name in TIER_NAMES.items()},
    **{f"DECISION-{d}": label for d, label in DECISIONS.items()},
}


@dataclass(frozen=True)
class ReviewedResult:
    """What the report says: the case, the prediction its reviewer saw, the decision, and the model's outline and
    measurements in the source image's own pixels."""

    case: StoredCase
    prediction: StoredPrediction
    decision: Decision
    outline: tuple[tuple[float, float], ...]   # (column, row) in the source image's pixels, subpixel
    area_mm2: float | None
    longest_diameter_mm: float | None


def _reviewer(label: str) -> tuple[str, str | None]:
    """A reviewer label "Dr A. Meyer (dr.meyer)" as (name, login)."""
    found = re.fullmatch(r"(.*\S)\s*\(([^()]+)\)", label.strip())
    return (found.group(1), found.group(2)) if found else (label.strip(), None)


def _observers(result: ReviewedResult) -> hd.sr.ObservationContext:
    name, login = _reviewer(result.decision.reviewer)
    # the account's display name is one free-text component ("Dr A. Meyer"): a trailing caret says so in a PN
    person = hd.sr.ObserverContext(
        observer_type=codes.DCM.Person,
        observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(
            name=name.replace("^", " ")[:64] + "^", login_name=login))
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=model_device_uid(result.prediction.weights_sha256), name=MANUFACTURER,
            manufacturer_name=MANUFACTURER, model_name=result.prediction.model_version[:64]))
    return hd.sr.ObservationContext(observer_person_context=person, observer_device_context=device)


def model_device_uid(identity: str) -> str:
    """One UID per model identity, the same every time."""
    return generate_uid(entropy_srcs=["skinapp model", identity])


def _source_reference(source: pydicom.Dataset, frame: int | None) -> hd.sr.SourceImageForRegion:
    sop_class = clean_text(source.get("SOPClassUID"))
    sop = clean_text(source.get("SOPInstanceUID"))
    if not sop_class or not sop:
        raise ValueError("the source image has no SOP Class or SOP Instance UID")
    frames = [frame + 1] if frame is not None and int(source.get("NumberOfFrames", 1) or 1) > 1 else None
    return hd.sr.SourceImageForRegion(sop_class, sop, referenced_frame_numbers=frames)


def _measurements(result: ReviewedResult) -> list[hd.sr.Measurement]:
    prediction = result.prediction
    found = [hd.sr.Measurement(name=codes.DCM.ProbabilityOfCancer, value=round(prediction.malignancy, 6), unit=UNIT_NONE)]
    found += [hd.sr.Measurement(name=probability_name(c), value=round(p, 6), unit=UNIT_NONE)
              for c, p in prediction.class_probabilities().items()]
    if result.area_mm2 is not None:
        found.append(hd.sr.Measurement(name=codes.SCT.Area, value=round(result.area_mm2, 2), unit=UNIT_MM2))
    if result.longest_diameter_mm is not None:
        found.append(hd.sr.Measurement(name=codes.SCT.LongAxis, value=round(result.longest_diameter_mm, 2), unit=UNIT_MM))
    return found


def _evaluations(result: ReviewedResult) -> list[hd.sr.QualitativeEvaluation]:
    prediction, decision = result.prediction, result.decision
    found = [hd.sr.QualitativeEvaluation(MODEL_CALL, DIAGNOSIS_CODES[prediction.predicted_class])]
    if prediction.risk_tier is not None:
        found.append(hd.sr.QualitativeEvaluation(
            RISK_TIER, private(f"TIER-{prediction.risk_tier}", TIER_NAMES[prediction.risk_tier])))
    found += [hd.sr.QualitativeEvaluation(POSSIBLE_DIAGNOSIS, DIAGNOSIS_CODES[c]) for c in prediction.prediction_set or ()]
    found += [hd.sr.QualitativeEvaluation(WARNING, private(f"FLAG-{flag.code}", flag.code.replace("_", " ")[:64]))
              for flag in prediction.flags]
    found.append(hd.sr.QualitativeEvaluation(
        REVIEW_DECISION, private(f"DECISION-{decision.decision}", DECISIONS.get(decision.decision, decision.decision))))
    if decision.diagnosis in DIAGNOSIS_CODES:
        found.append(hd.sr.QualitativeEvaluation(REVIEW_DIAGNOSIS, DIAGNOSIS_CODES[decision.diagnosis]))
    return found


def _warning_reasons(result: ReviewedResult) -> list[hd.sr.TextContentItem]:
    items = [hd.sr.TextContentItem(name=WARNING_REASON, value=flag.reason[:1024],
                                   relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
             for flag in result.prediction.flags]
    items.append(hd.sr.TextContentItem(name=MODEL_IDENTITY, value=result.prediction.weights_sha256,
                                       relationship_type=hd.sr.RelationshipTypeValues.CONTAINS))
    return items


_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID",
           "AccessionNumber", "ReferringPhysicianName")
_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")


def _evidence(source: pydicom.Dataset) -> pydicom.Dataset:
    """The source image's patient and study attributes as the PACS holds them (quoted values too, so that the
    report files under the same patient and study), empty where it has none, and its UIDs cleaned: nothing else
    about the patient reaches the report."""
    kept = pydicom.Dataset()
    for keyword in _COPIED:
        if keyword in source:
            kept[keyword] = source[keyword]
        else:
            setattr(kept, keyword, "")
    for keyword in _UIDS:
        value = clean_text(source.get(keyword))
        if value is None:
            raise ValueError(f"the source image has no {keyword}")
        setattr(kept, keyword, value)
    return kept


def _finding(result: ReviewedResult, evidence: pydicom.Dataset):
    """The lesion's measurement group: a planar region where the model outlined it, else the whole image."""
    common = dict(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=generate_uid(entropy_srcs=["skinapp lesion", evidence.SOPInstanceUID, str(result.case.frame)]),
            identifier=f"Lesion {result.case.name}"[:64]),
        finding_type=codes.SCT.SkinLesion,
        algorithm_id=hd.sr.AlgorithmIdentification(name=MANUFACTURER, version=result.prediction.model_version[:64]),
        measurements=_measurements(result),
        qualitative_evaluations=_evaluations(result),
    )
    source = _source_reference(evidence, result.case.frame)
    outline = np.asarray(result.outline, dtype=np.float32).reshape(-1, 2)
    if len(outline) < 3:
        return hd.sr.MeasurementsAndQualitativeEvaluations(
            **common, source_images=[hd.sr.SourceImageForMeasurementGroup(
                source.ReferencedSOPSequence[0].ReferencedSOPClassUID,
                source.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)])
    closed = np.vstack([outline, outline[:1]])  # a polyline region is closed by repeating its first point
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        **common, referenced_region=hd.sr.ImageRegion(graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
                                                      graphic_data=closed, source_image=source))


def structured_report(source: pydicom.Dataset, result: ReviewedResult, *, institution: str | None = None,
                      instance_number: int = 1) -> hd.sr.ComprehensiveSR:
    """The SR for `result`, in the source image's study. `source`: that image's attributes as the PACS holds them
    (its metadata; no pixels needed)."""
    evidence = _evidence(source)
    group = _finding(result, evidence)
    group[0].ContentSequence.extend(_warning_reasons(result))
    report = hd.sr.MeasurementReport(
        observation_context=_observers(result),
        procedure_reported=codes.SCT.DermoscopicPhotography,
        imaging_measurements=[group],
    )
    document = hd.sr.ComprehensiveSR(
        evidence=[evidence], content=report[0],
        series_instance_uid=generate_uid(), series_number=SR_SERIES_NUMBER,
        sop_instance_uid=generate_uid(), instance_number=instance_number,
        manufacturer=MANUFACTURER, institution_name=institution, is_complete=True, is_final=False,
    )
    document.SeriesDescription = SERIES_DESCRIPTION
    return document


@dataclass(frozen=True)
class ReportSaid:
    """What an SR made here says, as read back with highdicom."""

    source_sop_instance_uid: str
    outline: np.ndarray | None                 # (N, 2) closed polyline in the source image's pixels
    evaluations: frozenset[tuple[str, str]]    # (concept code, value code)
    measurements: dict[str, float]             # concept code → value
    texts: frozenset[tuple[str, str]]          # (concept code, text)


def read_back(report: pydicom.Dataset) -> ReportSaid:
    parsed = hd.sr.ComprehensiveSR.from_dataset(report)
    content: hd.sr.MeasurementReport = parsed.content  # type: ignore[assignment]  # made here: a TID 1500 report
    region_groups = content.get_planar_roi_measurement_groups()
    if region_groups:
        group: hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations | hd.sr.MeasurementsAndQualitativeEvaluations
        group = region_groups[0]
        region = group.roi
        image = region.ContentSequence[0] if region is not None else None
    else:
        group = content.get_image_measurement_groups()[0]
        region, image = None, group.source_images[0]
    if image is None:
        raise ValueError("the report's lesion region names no image")
    return ReportSaid(
        source_sop_instance_uid=str(image.ReferencedSOPSequence[0].ReferencedSOPInstanceUID),
        outline=np.asarray(region.value) if region is not None else None,
        # highdicom types an evaluation's value as a number too; a QualitativeEvaluation's is always a code
        evaluations=frozenset((e.name.value, e.value.value) for e in group.get_qualitative_evaluations()),  # type: ignore[union-attr]
        measurements={m.name.value: float(m.value) for m in group.get_measurements()},
        texts=frozenset((item.ConceptNameCodeSequence[0].CodeValue, str(item.TextValue))
                        for item in group[0].ContentSequence if item.ValueType == "TEXT"),
    )
