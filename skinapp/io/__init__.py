"""Ingestion: image files, DICOM files, folders, zip archives and uploads → typed `Case`s plus an `ImportReport`.

A bad file never stops a batch: it gets a line in the report naming it and the reason in plain words. Nothing
is written to disk (archives are read in memory). Images are kept at display size; the full-resolution array
is made only when asked (`max_side=None`). Each file is decoded once; every copy of an image comes from that decode.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

from skinapp.io.case import Acquisition, Case, ImportReport, Rejection
from skinapp.io.dicom import PATIENT_ID_IS_IMAGE_NAME, looks_like_dicom, read_dicom
from skinapp.io.images import IMAGE_SUFFIXES, NotAnImage, UnreadableImage, decode_image, read_image
from skinapp.io.metadata_csv import MetadataRow, read_metadata_csv
from skinapp.io.pixels import DISPLAY_MAX_SIDE, ZOOM_MAX_SIDE, zoom_side
from skinapp.io.sources import InputFile, expand_inputs
from skinapp.vocab import Metadata

__all__ = [
    "DISPLAY_MAX_SIDE", "Acquisition", "Case", "ImportReport", "InputFile", "Rejection", "UnreadableImage",
    "iter_cases", "load_cases", "read_image",
]

MAX_FILE_BYTES = 2 << 30
FileProgress = Callable[[int, int, str], None]  # (files done, files in all, file name)


def read_file(file: InputFile, max_side: int | None) -> list[Case]:
    """One file → its cases. DICOM is recognised by content, not by name; raises UnreadableImage with a reason.
    Each file is decoded once: a single image larger than max_side also gets a zoom copy (up to ZOOM_MAX_SIDE, as
    JPEG), made from the same decode as its display image. A case's identity is its `content_key`, taken from the
    file's stored data, so how the pixels are decoded and resized does not change it."""
    return _read_file(file, max_side, ZOOM_MAX_SIDE)


def _read_file(file: InputFile, max_side: int | None, zoom_max_side: int | None) -> list[Case]:
    if looks_like_dicom(file):
        return read_dicom(file, max_side, zoom_max_side)
    try:
        decoded = decode_image(file, max_side, zoom_max_side)
    except NotAnImage:
        if file.suffix in IMAGE_SUFFIXES:
            raise
        return read_dicom(file, max_side, zoom_max_side)  # a DICOM dataset without the preamble, or not an image at all
    image, zoom_jpeg = decoded.copies(max_side, zoom_side(decoded.size, max_side, zoom_max_side))
    return [Case(name=file.stem, image=image, source=file.name, image_name=file.stem, original_size=decoded.size,
                 content_key=decoded.content_key, zoom_jpeg=zoom_jpeg, study_date=decoded.taken_on)]


def _apply_metadata_row(case: Case, row: MetadataRow) -> Case:
    """The metadata CSV fills or overrides what the file says; a field the metadata CSV leaves empty keeps the file's value."""
    file_meta, side = case.metadata, row.metadata
    metadata = Metadata(
        age=side.age if side.age is not None else file_meta.age,
        sex=side.sex or file_meta.sex,
        site=side.site if side.site.region is not None else file_meta.site,
    )
    notes = [n for n in case.notes if not (row.patient_id and n == PATIENT_ID_IS_IMAGE_NAME)]
    return replace(case, metadata=metadata, patient_id=row.patient_id or case.patient_id,
                   lesion_id=row.lesion_id or case.lesion_id, notes=notes)


def _unique_id(name: str, taken: set[str]) -> str:
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name} ({n})"
    return candidate


def load_cases(
    paths: Iterable[str | Path | InputFile],
    metadata_csv: str | Path | BinaryIO | None = None,
    *,
    max_side: int | None = DISPLAY_MAX_SIDE,
    progress: FileProgress | None = None,
    keep_duplicates: bool = False,
) -> tuple[list[Case], ImportReport]:
    """Import files, folders (recursively, DICOMDIR-aware), zip archives and uploads (`InputFile.from_bytes`).

    metadata_csv: a CSV (ISIC 2020 `train.csv` or HAM10000 style) matched by image name; it fills or
    overrides the files' metadata and gives the patient grouping. Duplicate files and duplicate DICOM SOP
    Instance UIDs are imported once and reported; with `keep_duplicates` (the `predict` command, which owes a
    row to every input) each copy becomes its own case with a note naming the file it repeats.
    All cases are held in memory: a large batch goes through `iter_cases` instead.
    """
    report = ImportReport()
    cases = list(iter_cases(paths, report, metadata_csv, max_side=max_side, progress=progress,
                            keep_duplicates=keep_duplicates))
    return cases, report


def iter_cases(
    paths: Iterable[str | Path | InputFile],
    report: ImportReport,
    metadata_csv: str | Path | BinaryIO | None = None,
    *,
    max_side: int | None = DISPLAY_MAX_SIDE,
    progress: FileProgress | None = None,
    keep_duplicates: bool = False,
) -> Iterator[Case]:
    """`load_cases` one file at a time: the cases of a file are made when the caller asks for them, so memory
    holds what the caller keeps, not the batch. `report` fills as the files are read."""
    rows: dict[str, MetadataRow] = {}
    csv_digest = None
    if metadata_csv is not None:
        csv_name = str(getattr(metadata_csv, "name", metadata_csv))
        try:
            csv_bytes = Path(metadata_csv).read_bytes() if isinstance(metadata_csv, (str, Path)) else metadata_csv.read()
            csv_digest = hashlib.sha256(csv_bytes).hexdigest()
            rows = read_metadata_csv(io.BytesIO(csv_bytes), name=csv_name)
        except OSError as exc:
            report.reject(csv_name, f"metadata CSV could not be read ({exc.strerror or exc})")
        except ValueError as exc:
            report.reject(csv_name, str(exc))
    with ExitStack() as archives:  # open until the last file is read, or the caller stops early
        files = expand_inputs(paths, report, archives)
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
                if not data:
                    report.reject(file.name, "the file is empty (0 bytes): nothing to import. It may not have finished "
                                             "copying; export or copy it again")
                    continue
                digest = hashlib.sha256(data).hexdigest()
                if digest == csv_digest:  # the metadata CSV may sit in the folder it describes
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
                    case = _apply_metadata_row(case, row)
                    if case.image_name not in matched_rows:  # each bad value once, for the image it belongs to
                        report.notes += [f"metadata CSV, image {case.image_name}: {p}" for p in row.problems]
                    matched_rows.add(case.image_name)
                case.name = _unique_id(case.name, taken)
                taken.add(case.name)
                report.imported.append(case.name)
                yield case
        if progress is not None:
            progress(len(files), len(files), "")
        if rows and not matched_rows and report.imported:
            report.notes.append("the metadata CSV matched none of the imported images by name")
