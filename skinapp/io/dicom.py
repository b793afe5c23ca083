"""DICOM files → one Case per frame, with the patient and lesion metadata parsed tolerantly: values wrapped in
quotes, the image name in PatientID, ages such as '045Y', the site in BodyPartExamined or as a SNOMED CT code."""

from __future__ import annotations

import functools
import logging
import math
import warnings
from dataclasses import replace

import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.uid import MediaStorageDirectoryStorage

from skinapp.io.capture_date import dicom_date_text
from skinapp.io.case import Acquisition, Case
from skinapp.io.images import UnreadableImage
from skinapp.io.integrity import DamagedImageData
from skinapp.io.pixels import MAX_FRAMES, MAX_PIXELS, MAX_TOTAL_PIXELS, decode_dicom, frame_count, zoom_side
from skinapp.io.sources import InputFile
from skinapp.vocab import Metadata, Site, parse_age, parse_sex, parse_site

log = logging.getLogger(__name__)
_DICOM_SUFFIXES = {".dcm", ".dicom", ".dic", ""}
PATIENT_ID_IS_IMAGE_NAME = "the file's Patient ID is the image name, not a patient; group lesions with a metadata CSV"


def clean_text(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip().strip('"').strip()
    return text or None


def _text(ds: pydicom.Dataset, keyword: str) -> str | None:
    try:
        return clean_text(ds.get(keyword))
    except Exception:  # a malformed value must not cost the whole file
        return None


def _number(value: object) -> float | None:
    try:
        number = float(clean_text(value) or "")
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def looks_like_dicom(file: InputFile) -> bool:
    try:
        with file.opener() as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def _open(file: InputFile) -> pydicom.Dataset:
    try:
        with file.opener() as handle:
            return pydicom.dcmread(handle)
    except InvalidDicomError:
        if file.suffix not in _DICOM_SUFFIXES:
            raise UnreadableImage("not an image or DICOM file") from None
    except Exception as exc:  # pydicom raises many types on damaged files
        raise UnreadableImage(f"DICOM file is damaged or truncated ({type(exc).__name__}: {exc})") from None
    try:  # a DICOM dataset without the 128-byte preamble and 'DICM' marker
        with file.opener() as handle:
            ds = pydicom.dcmread(handle, force=True)
        if "SOPClassUID" not in ds and "PixelData" not in ds:
            raise ValueError
        return ds
    except Exception:
        raise UnreadableImage("not an image or DICOM file") from None


@functools.cache
def _snomed_meanings() -> dict[str, str]:
    from pydicom.sr._concepts_dict import concepts  # pydicom's copy of the DICOM code tables

    meanings: dict[str, str] = {}
    snomed: dict[str, dict[str, tuple[str, object]]] = concepts["SCT"]  # type: ignore[assignment]  # untyped table
    for entry in snomed.values():
        for code, (meaning, _) in entry.items():
            meanings.setdefault(code, meaning)
    return meanings


def _code_meaning(item: pydicom.Dataset) -> str | None:
    """The code's own meaning, or the standard meaning of its SNOMED CT code where the file leaves it out."""
    meaning = clean_text(item.get("CodeMeaning"))
    if meaning is None and (clean_text(item.get("CodingSchemeDesignator")) or "").upper() in {"SCT", "SRT"}:
        meaning = _snomed_meanings().get(clean_text(item.get("CodeValue")) or "")
    return meaning


def _site(ds: pydicom.Dataset) -> Site:
    """The most specific of BodyPartExamined and the Anatomic Region Sequence (SNOMED CT)."""
    candidates = [parse_site(_text(ds, "BodyPartExamined"))]
    try:
        for item in ds.get("AnatomicRegionSequence") or []:
            candidates.append(parse_site(_code_meaning(item)))
    except Exception:
        pass
    for site in candidates:
        if site.fine is not None:
            return site
    return next((site for site in candidates if site.region is not None), Site())


# When the picture was taken, most precise first: a study can span visits, a series or an image cannot.
TAKEN_ON_KEYWORDS = ("AcquisitionDateTime", "AcquisitionDate", "ContentDate", "SeriesDate", "StudyDate")


def _taken_on(ds: pydicom.Dataset) -> str | None:
    for keyword in TAKEN_ON_KEYWORDS:
        date = dicom_date_text(_text(ds, keyword))
        if date:
            return date
    return None


MAX_MM_PER_PIXEL = 5.0  # coarser than any photograph of skin: a larger spacing is a wrong value, not a size
SPACING_REFUSED = ("the file's pixel spacing is not a real size (not a finite number between 0 and "
                   f"{MAX_MM_PER_PIXEL:g} mm); it is ignored: calibrate the image on its ruler to measure in mm")


def _pixel_spacing(ds: pydicom.Dataset) -> tuple[float, float] | None:
    """mm per pixel (row, column) in the stored image, from the first place the file gives it. Raises ValueError
    for a spacing that cannot be a size (infinite, not a number, absurdly large)."""
    places = [ds]
    try:
        shared = ds.get("SharedFunctionalGroupsSequence")
        if shared:
            places += list(shared[0].get("PixelMeasuresSequence") or [])
    except Exception:
        pass
    for place in places:
        for keyword in ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing"):
            try:
                value = place.get(keyword)
            except Exception:
                continue
            spacing = [_number(v) for v in value] if isinstance(value, (list, tuple, MultiValue)) else []
            if len(spacing) == 2:
                row, column = spacing
                if row and column:
                    if not all(math.isfinite(v) and v <= MAX_MM_PER_PIXEL for v in (row, column)):
                        raise ValueError(SPACING_REFUSED)
                    return row, column
    return None


def _acquisition(ds: pydicom.Dataset) -> Acquisition:
    def words(keyword: str) -> str | None:
        text = _text(ds, keyword)
        return text.replace("_", " ").lower() if text else None

    return Acquisition(
        light_source_polarization=words("LightSourcePolarization"),
        contact_method=words("ContactMethod"),
        immersion_medium=words("ImmersionMedia"),
        optical_magnification=_number(ds.get("OpticalMagnificationFactor")),
    )


def _decode_failure(ds: pydicom.Dataset, exc: Exception) -> str:
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    name = getattr(syntax, "name", None) or str(syntax or "not stated")
    detail = str(exc)
    log.info("decoding failed (%s): %s", name, detail)
    if "less than expected" in detail or "truncated" in detail.lower():
        return "image data is shorter than the header says; the file is probably truncated"
    if "no pixel data handler" in detail.lower() or "no available" in detail.lower() or "not supported" in detail.lower():
        return f"image is stored in a form (transfer syntax {name}) that no installed decoder can read"
    return f"image data is damaged or inconsistent with its header and could not be decoded (transfer syntax {name})"


def _cut_short(ds: pydicom.Dataset, size: int | None) -> bool:
    """Whether the file stops inside its data: pydicom keeps what it could read and says nothing, so look at where
    the last element it read should end (a complete file ends exactly there)."""
    if len(ds) == 0:
        return True  # nothing after the file header
    last = ds.get_item(max(ds.keys()))
    tell, length = getattr(last, "value_tell", None), getattr(last, "length", None)
    if size is None or tell is None or length is None or length == 0xFFFFFFFF:
        return False  # a sequence of undefined length: its end is not known without reading it
    return tell + length != size


def read_dicom(file: InputFile, max_side: int | None, zoom_max_side: int | None = None) -> list[Case]:
    """One case per frame, fitted within max_side. A single frame with more pixels than that also gets a zoom copy
    fitted within zoom_max_side (JPEG), made from the same decode; several frames get none (at zoom size they
    could hold gigabytes at once). Raises UnreadableImage with the reason in plain words."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # real files break VR rules (quoted UIDs); what matters is handled here
        return _read_dicom(file, max_side, zoom_max_side)


def _read_dicom(file: InputFile, max_side: int | None, zoom_max_side: int | None) -> list[Case]:
    ds = _open(file)
    if clean_text(ds.get("SOPClassUID")) == MediaStorageDirectoryStorage:
        raise UnreadableImage("DICOMDIR index, not an image (the files it lists are imported from the folder)")
    if "PixelData" not in ds:
        if _cut_short(ds, file.size):
            raise UnreadableImage("DICOM file is truncated: it ends before its image data (cut off while copying?)")
        if "Rows" in ds and "Columns" in ds:
            raise UnreadableImage("DICOM file describes an image but holds no image data: it is probably truncated "
                                  "(cut off while copying?)")
        raise UnreadableImage("DICOM file holds no image (no pixel data)")
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
    except Exception:
        raise UnreadableImage("DICOM file does not say how large its image is (no Rows/Columns)") from None
    frames = frame_count(ds)
    if frames > MAX_FRAMES:
        raise UnreadableImage(f"DICOM file holds {frames:,} frames; at most {MAX_FRAMES} are imported from one file "
                              "(a dermoscopy image is one frame, a series a few)")
    if rows * columns > MAX_PIXELS or rows * columns * frames > MAX_TOTAL_PIXELS:
        raise UnreadableImage(
            f"image is {columns:,}×{rows:,} pixels × {frames} frame(s), too large to open safely (possible decompression bomb)"
        )
    zoom = zoom_side((columns, rows), max_side, zoom_max_side) if frames == 1 else None
    try:
        decoded = decode_dicom(ds, zoom or max_side)
        if zoom is None:
            images, zoom_jpeg = [d.copy(max_side) for d in decoded], None
        else:
            image, zoom_jpeg = decoded[0].copies(max_side, zoom)
            images = [image]
    except DamagedImageData as exc:
        raise UnreadableImage(f"image data is damaged: {exc}. Not imported, as a damaged picture must not be "
                              "diagnosed; ask for the original file") from None
    except Exception as exc:
        raise UnreadableImage(_decode_failure(ds, exc)) from None

    photometric = _text(ds, "PhotometricInterpretation") or ""
    dermoscopic = int(ds.get("SamplesPerPixel", 1) or 1) == 3 and not photometric.startswith("MONOCHROME")
    notes = [] if dermoscopic else ["greyscale or palette image: not a colour dermoscopy photograph"]
    patient_id = _text(ds, "PatientID")
    if patient_id is not None and patient_id in {file.stem, _text(ds, "StudyID"), _text(ds, "SOPInstanceUID")}:
        notes.append(PATIENT_ID_IS_IMAGE_NAME)
        patient_id = None
    try:
        spacing = _pixel_spacing(ds)
    except ValueError as refused:
        spacing = None
        notes.append(str(refused))
    base = Case(
        name=file.stem, image=images[0], source=file.name, image_name=file.stem,
        metadata=Metadata(parse_age(_text(ds, "PatientAge")), parse_sex(_text(ds, "PatientSex")), _site(ds)),
        patient_id=patient_id, study_date=_taken_on(ds), is_dermoscopic=dermoscopic,
        original_size=(columns, rows), acquisition=_acquisition(ds),
        sop_instance_uid=_text(ds, "SOPInstanceUID"), notes=notes, zoom_jpeg=zoom_jpeg,
    )
    cases = []
    for index, (image, frame) in enumerate(zip(images, decoded, strict=True)):
        scale = columns / image.shape[1]
        cases.append(replace(
            base, image=image, notes=list(notes), content_key=frame.content_key,
            name=base.name if frames == 1 else f"{base.name}#{index + 1}",
            frame=None if frames == 1 else index + 1,
            pixel_spacing_mm=None if spacing is None else (spacing[0] * scale, spacing[1] * scale),
        ))
    return cases
