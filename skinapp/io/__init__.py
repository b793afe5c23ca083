"""Ingestion: image files, DICOM files, folders, zip archives and uploads → typed `Case`s plus an `ImportReport`.

A bad file never stops a batch: it gets a line in the report naming it and the reason in plain words. Nothing
is written to disk (archives are read in memory). Images are kept at display size; the full-resolution array
is made only when asked (`max_side=None`).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

from skinapp.io.case import Acquisition, Case, ImportReport, Rejection
from skinapp.io.dicom import PATIENT_ID_IS_IMAGE_NAME, looks_like_dicom, read_dicom
from skinapp.io.images import IMAGE_SUFFIXES, NotAnImage, UnreadableImage, read_image
from skinapp.io.pixels import DISPLAY_MAX_SIDE
from skinapp.io.sidecar import SidecarRow, read_sidecar
from skinapp.io.sources import InputFile, expand_inputs
from skinapp.vocab import Metadata

__all__ = [
    "DISPLAY_MAX_SIDE", "Acquisition", "Case", "ImportReport", "InputFile", "Rejection", "UnreadableImage",
    "load_cases", "read_image",
]

MAX_FILE_BYTES = 2 << 30
FileProgress = Callable[[int, int, str], None]  # (files done, files in all, file name)


def read_file(file: InputFile, max_side: int | None) -> list[Case]:
    """One file → its cases. DICOM is recognised by content, not by name; raises UnreadableImage with a reason."""
    if looks_like_dicom(file):
        return read_dicom(file, max_side)
    try:
        image, original = read_image(file, max_side)
    except NotAnImage:
        if file.suffix in IMAGE_SUFFIXES:
            raise
        return read_dicom(file, max_side)  # a DICOM dataset written without the preamble, or not an image at all
    return [Case(case_id=file.stem, image=image, source=file.name, image_name=file.stem, original_size=original)]


def _apply_sidecar(case: Case, row: SidecarRow) -> Case:
    """The sidecar fills or overrides what the file says; a field the sidecar leaves empty keeps the file's value."""
    file_meta, side = case.metadata, row.metadata
    metadata = Metadata(
        age=side.age if side.age is not None else file_meta.age,
        sex=side.sex or file_meta.sex,
        site=side.site if side.site.region is not None else file_meta.site,
    )
    notes = [n for n in case.notes if not (row.patient_id and n == PATIENT_ID_IS_IMAGE_NAME)]
    return replace(case, metadata=metadata, patient_id=row.patient_id or case.patient_id,
                   lesion_id=row.lesion_id or case.lesion_id, notes=notes)


def _unique_id(case_id: str, taken: set[str]) -> str:
    candidate, n = case_id, 1
    while candidate in taken:
        n += 1
        candidate = f"{case_id} ({n})"
    return candidate


def load_cases(
    paths: Iterable[str | Path | InputFile],
    sidecar: str | Path | BinaryIO | None = None,
    *,
    max_side: int | None = DISPLAY_MAX_SIDE,
    progress: FileProgress | None = None,
    keep_duplicates: bool = False,
) -> tuple[list[Case], ImportReport]:
    """Import files, folders (recursively, DICOMDIR-aware), zip archives and uploads (`InputFile.from_bytes`).

    sidecar: a metadata CSV (ISIC 2020 `train.csv` or HAM10000 style) matched by image name; it fills or
    overrides the files' metadata and gives the patient grouping. Duplicate files and duplicate DICOM SOP
    Instance UIDs are imported once and reported; with `keep_duplicates` (the `predict` command, which owes a
    row to every input) each copy becomes its own case with a note naming the file it repeats.
    """
    report = ImportReport()
    rows: dict[str, SidecarRow] = {}
    sidecar_digest = None
    if sidecar is not None:
        sidecar_name = str(getattr(sidecar, "name", sidecar))
        try:
            sidecar_bytes = Path(sidecar).read_bytes() if isinstance(sidecar, (str, Path)) else sidecar.read()
            sidecar_digest = hashlib.sha256(sidecar_bytes).hexdigest()
            rows = read_sidecar(io.BytesIO(sidecar_bytes), name=sidecar_name)
        except OSError as exc:
            report.reject(sidecar_name, f"metadata CSV could not be read ({exc.strerror or exc})")
        except ValueError as exc:
            report.reject(sidecar_name, str(exc))
    files = expand_inputs(paths, report)
    cases: list[Case] = []
    seen_content: dict[str, str] = {}
    seen_uid: dict[str, str] = {}
    matched_rows: set[str] = set()
    taken: set[str] = set()  # case ids given out so far
    for done, file in enumerate(files):
        if progress is not None:
            progress(done, len(files), file.name)
        if file.size is not None and file.size > MAX_FILE_BYTES:
            report.reject(file.name, f"file is {file.size / 2**30:.1f} GB, larger than any dermoscopy image; not opened")
            continue
        try:
            data = file.read()
            digest = hashlib.sha256(data).hexdigest()
            if digest == sidecar_digest:  # the metadata CSV may sit in the folder it describes
                continue
            repeats = seen_content.get(digest)
            if repeats is not None and not keep_duplicates:
                report.reject(file.name, f"same file as {repeats}; imported once")
                continue
            seen_content.setdefault(digest, file.name)
            found = read_file(InputFile.from_bytes(file.name, data), max_side)
            if repeats is not None:
                found = [replace(c, notes=[*c.notes, f"same file as {repeats}"]) for c in found]
        except UnreadableImage as exc:
            report.reject(file.name, str(exc))
            continue
        except MemoryError:
            report.reject(file.name, "not enough memory to open this file")
            continue
        except Exception as exc:  # the last guard: one odd file must not stop the batch
            report.reject(file.name, f"could not be read ({type(exc).__name__}: {exc})")
            continue
        uid = found[0].sop_instance_uid
        if uid is not None and uid in seen_uid and not keep_duplicates:
            report.reject(file.name, f"same image as {seen_uid[uid]} (identical DICOM SOP Instance UID); imported once")
            continue
        if uid is not None:
            seen_uid.setdefault(uid, file.name)
        for case in found:
            row = rows.get(case.image_name)
            if row is not None:
                case = _apply_sidecar(case, row)
                matched_rows.add(case.image_name)
            case.case_id = _unique_id(case.case_id, taken)
            taken.add(case.case_id)
            cases.append(case)
            report.imported.append(case.case_id)
    if progress is not None:
        progress(len(files), len(files), "")
    if rows and not matched_rows and cases:
        report.notes.append("the metadata CSV matched none of the imported images by name")
    return cases, report
