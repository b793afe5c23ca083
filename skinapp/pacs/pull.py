"""Find studies on the PACS (QIDO-RS) and hand their images to the importer as files (WADO-RS, fetched one at a
time as the importer reads them), so a pull is checked, de-duplicated, analysed and reported exactly as an upload.

Real archives hold what their modalities wrote, including the quirks of the SIIM-ISIC files: values wrapped in
double quotes ("ISIC_0095805", "XC") and the image's name in PatientID. So each exact-match value is searched as
given and as quoted, characters a server may not decode in a URL go as the one-character wildcard, and every
answer is checked here against the value asked for, after the same cleaning the file import applies."""

from __future__ import annotations

import datetime as dt
import io
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import pydicom

from skinapp.io.case import UnreadableImage
from skinapp.io.dicom import clean_text
from skinapp.io.sources import InputFile
from skinapp.pacs.connection import PacsError, PacsServer, failure

MAX_STUDIES = 500           # one pull; a wider search is refused with a plea to narrow it
NOT_IMAGES = {"SR", "KO", "PR", "DOC", "REG", "SEG", "RWV", "AU", "ECG"}  # reports and annotations, not pictures
_URL_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")
_STUDY_FIELDS = ("StudyInstanceUID", "PatientID", "PatientName", "StudyDate", "StudyDescription", "ModalitiesInStudy",
                 "NumberOfStudyRelatedInstances", "AccessionNumber", "StudyID")
_INSTANCE_FIELDS = ("SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "Modality", "InstanceNumber", "SeriesNumber",
                    "StudyID", "AccessionNumber")


@dataclass(frozen=True)
class StudyQuery:
    patient_id: str | None = None
    patient_name: str | None = None
    since: dt.date | None = None
    until: dt.date | None = None
    modality: str | None = None            # e.g. "XC": the study must hold images of this modality

    @property
    def empty(self) -> bool:
        return not any((self.patient_id, self.patient_name, self.since, self.until, self.modality))

    def describe(self) -> str:
        parts = [f"patient ID {self.patient_id}" if self.patient_id else "",
                 f"patient name {self.patient_name}" if self.patient_name else "",
                 f"from {self.since}" if self.since else "", f"until {self.until}" if self.until else "",
                 f"modality {self.modality}" if self.modality else ""]
        return ", ".join(p for p in parts if p) or "every study"


@dataclass(frozen=True)
class StudyFound:
    study_uid: str
    patient_id: str | None
    patient_name: str | None
    study_date: str | None                 # YYYY-MM-DD
    description: str | None
    modalities: tuple[str, ...]
    images: int | None                     # instances in the study, as the PACS counts them


@dataclass(frozen=True)
class InstanceFound:
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str | None
    modality: str | None
    label: str                             # what the case will be named: the study's ID or accession, else the UID


def _as_wildcards(value: str) -> str:
    return "".join(c if c in _URL_SAFE else "?" for c in value)


def _variants(value: str) -> list[str]:
    """As given and as the challenge files wrap it in double quotes."""
    plain = _as_wildcards(value.strip())
    return [plain, f"?{plain}?"]


def _value(answer: dict, keyword: str) -> str | None:
    """A value of a DICOM JSON answer, cleaned as the file import cleans it (quotes and padding gone)."""
    tag = f"{pydicom.datadict.tag_for_keyword(keyword):08X}"
    values = answer.get(tag, {}).get("Value") or []
    if not values:
        return None
    first = values[0]
    if isinstance(first, dict):  # a person name
        first = first.get("Alphabetic", "")
    return clean_text(str(first))


def _values(answer: dict, keyword: str) -> tuple[str, ...]:
    tag = f"{pydicom.datadict.tag_for_keyword(keyword):08X}"
    return tuple(v for v in (clean_text(str(x)) for x in answer.get(tag, {}).get("Value") or []) if v)


def _iso(date: str | None) -> str | None:
    return f"{date[:4]}-{date[4:6]}-{date[6:8]}" if date and len(date) >= 8 and date[:8].isdigit() else None


def _date_filter(query: StudyQuery) -> str | None:
    if query.since is None and query.until is None:
        return None
    return f"{query.since:%Y%m%d}" if query.until is None else (
        f"{query.since:%Y%m%d}-{query.until:%Y%m%d}" if query.since else f"-{query.until:%Y%m%d}")


def _matches(study: StudyFound, query: StudyQuery) -> bool:
    if query.patient_id and study.patient_id != query.patient_id.strip():
        return False
    if query.patient_name:
        wanted = query.patient_name.replace("^", " ").casefold().split()
        have = (study.patient_name or "").replace("^", " ").casefold()
        if not all(part in have for part in wanted):
            return False
    return not (query.modality and study.modalities
                and query.modality.upper() not in {m.upper() for m in study.modalities})


def find_studies(server: PacsServer, query: StudyQuery, client=None) -> list[StudyFound]:
    """The studies that match, newest first. Raises PacsError (a refused password, an unreachable server, or a
    search so wide it would fetch more than MAX_STUDIES studies)."""
    client = client or server.client()
    exact: list[list[tuple[str, str]]] = []
    if query.patient_id:
        exact.append([("PatientID", v) for v in _variants(query.patient_id)])
    if query.modality:
        exact.append([("ModalitiesInStudy", v) for v in _variants(query.modality.upper())])
    common: dict[str, str] = {}
    if query.patient_name:
        common["PatientName"] = "*" + "*".join(_as_wildcards(p) for p in query.patient_name.replace("^", " ").split()) + "*"
    date = _date_filter(query)
    if date:
        common["StudyDate"] = date
    found: dict[str, StudyFound] = {}
    try:
        for combination in itertools.product(*exact) if exact else [()]:
            answers = client.search_for_studies(search_filters={**common, **dict(combination)},
                                                fields=list(_STUDY_FIELDS), limit=MAX_STUDIES + 1)
            for answer in answers:
                uid = _value(answer, "StudyInstanceUID")
                if uid is None or uid in found:
                    continue
                count = _value(answer, "NumberOfStudyRelatedInstances")
                found[uid] = StudyFound(uid, _value(answer, "PatientID"), _value(answer, "PatientName"),
                                        _iso(_value(answer, "StudyDate")), _value(answer, "StudyDescription"),
                                        _values(answer, "ModalitiesInStudy"), int(count) if count and count.isdigit() else None)
    except Exception as exc:
        raise failure(exc, server) from None
    studies = [s for s in found.values() if _matches(s, query)]
    if len(studies) > MAX_STUDIES:
        raise PacsError(f"more than {MAX_STUDIES} studies match {query.describe()}: narrow the search (a patient or "
                        "a shorter date range)")
    return sorted(studies, key=lambda s: (s.study_date or "", s.study_uid), reverse=True)


def images_in(server: PacsServer, studies: Iterable[StudyFound], modality: str | None = None,
              client=None) -> tuple[list[InstanceFound], int]:
    """The image instances of the studies (reports, presentation states and other non-pictures left out), and how
    many instances were left out."""
    client = client or server.client()
    images: list[InstanceFound] = []
    left_out = 0
    try:
        for study in studies:
            answers = client.search_for_instances(study_instance_uid=study.study_uid, fields=list(_INSTANCE_FIELDS))
            kept = []
            for answer in answers:
                kind = (_value(answer, "Modality") or "").upper()
                if kind in NOT_IMAGES or (modality and kind and kind != modality.upper()):
                    left_out += 1
                    continue
                kept.append(answer)
            for k, answer in enumerate(sorted(kept, key=_acquisition_order)):
                sop = _value(answer, "SOPInstanceUID")
                series = _value(answer, "SeriesInstanceUID")
                if sop is None or series is None:
                    left_out += 1
                    continue
                label = _value(answer, "StudyID") or _value(answer, "AccessionNumber") or sop
                images.append(InstanceFound(study.study_uid, series, sop, _value(answer, "SOPClassUID"),
                                            _value(answer, "Modality"), label if len(kept) == 1 else f"{label}-{k + 1}"))
    except Exception as exc:
        raise failure(exc, server) from None
    return images, left_out


def _acquisition_order(answer: dict) -> tuple[int, int, str]:
    """Series, then instance number (as numbers: "10" after "2"), then UID; a missing number sorts last."""
    def number(keyword: str) -> int:
        value = _value(answer, keyword) or ""
        return int(value) if value.lstrip("-").isdigit() else 1 << 31
    return number("SeriesNumber"), number("InstanceNumber"), _value(answer, "SOPInstanceUID") or ""


def _file_name(server: PacsServer, image: InstanceFound) -> str:
    label = "".join(c if c.isalnum() or c in "._-" else "_" for c in image.label)[:64]
    return f"{urlsplit(server.shown).netloc}/{label}.dcm"


def image_files(server: PacsServer, images: Iterable[InstanceFound], client=None,
                fetched: Callable[[InstanceFound], None] | None = None) -> list[InputFile]:
    """One file to import per image, fetched (WADO-RS) when the importer reads it: one image in memory at a time. A
    fetch that fails is that file's rejection in the import report, with the reason in words."""
    client = client or server.client()

    def opener(image: InstanceFound) -> Callable[[], io.BytesIO]:
        def fetch() -> io.BytesIO:
            try:
                dataset = client.retrieve_instance(image.study_uid, image.series_uid, image.sop_uid)
            except Exception as exc:
                raise UnreadableImage(f"could not be fetched: {failure(exc, server)}") from None
            data = io.BytesIO()
            pydicom.dcmwrite(data, dataset)  # as received: elements never read are written back byte for byte
            if fetched is not None:
                fetched(image)
            data.seek(0)
            return data
        return fetch

    return [InputFile(_file_name(server, image), opener(image)) for image in images]
