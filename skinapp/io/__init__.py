"""Ingestion: files and folders → typed `Case`s plus an `ImportReport`. A bad file never stops a batch."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from skinapp.io.case import Case, ImportReport, Rejection
from skinapp.io.dicom import is_dicom, read_dicom
from skinapp.io.images import IMAGE_SUFFIXES, UnreadableImage, read_image
from skinapp.io.sidecar import SidecarRow, read_sidecar

__all__ = ["Case", "ImportReport", "Rejection", "UnreadableImage", "expand_paths", "load_cases", "read_image"]


def expand_paths(paths: Iterable[str | Path], report: ImportReport) -> list[Path]:
    """Files as given, folders searched recursively (hidden files skipped); missing paths are reported."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not found:
                report.reject(path, "folder contains no files")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            report.reject(path, "no such file or folder")
    return files


def _read(path: Path) -> list[Case]:
    if is_dicom(path) or path.suffix.lower() == ".dcm":
        return [
            Case(
                case_id=path.stem if f.frame is None else f"{path.stem}#{f.frame}",
                image=f.image, source=path, metadata=f.metadata, patient_id=f.patient_id,
                study_date=f.study_date, is_dermoscopic=f.is_dermoscopic,
            )
            for f in read_dicom(path)
        ]
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return [Case(case_id=path.stem, image=read_image(path), source=path)]
    raise UnreadableImage("not an image or DICOM file")


def _apply_sidecar(case: Case, row: SidecarRow) -> None:
    """The sidecar fills or overrides what the file says; a field the sidecar leaves empty keeps the file's value."""
    file_meta, side = case.metadata, row.metadata
    case.metadata = type(file_meta)(
        age=side.age if side.age is not None else file_meta.age,
        sex=side.sex or file_meta.sex,
        site=side.site if side.site.region is not None else file_meta.site,
    )
    case.patient_id = row.patient_id or case.patient_id


def load_cases(paths: Iterable[str | Path], sidecar: str | Path | None = None) -> tuple[list[Case], ImportReport]:
    report = ImportReport()
    rows: dict[str, SidecarRow] = {}
    if sidecar is not None:
        try:
            rows = read_sidecar(Path(sidecar))
        except ValueError as exc:
            report.reject(Path(sidecar), str(exc))
    cases: list[Case] = []
    for path in expand_paths(paths, report):
        try:
            found = _read(path)
        except UnreadableImage as exc:
            report.reject(path, str(exc))
            continue
        for case in found:
            row = rows.get(case.case_id.split("#")[0])
            if row is not None:
                _apply_sidecar(case, row)
            cases.append(case)
            report.imported.append(case.case_id)
    return cases, report
