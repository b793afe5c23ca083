"""Where files come from: paths, folders searched recursively, zip archives read in memory, DICOMDIR indexes
and uploaded bytes all become `InputFile`s. Nothing is extracted to disk, so nothing is written anywhere."""

from __future__ import annotations

import io
import stat
import zipfile
import zlib
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import pydicom

from skinapp.io.case import ImportReport, UnreadableImage

MAX_MEMBER_BYTES = 512 << 20      # one archive member may expand to 512 MB (a 6000×4000 raw RGB DICOM is 72 MB)
MAX_ARCHIVE_BYTES = 8 << 30       # all members of one archive together
MAX_COMPRESSION_RATIO = 50        # images barely compress (a raw DICOM of a photo 2-4×); far beyond is a zip bomb
MAX_ARCHIVE_MEMBERS = 20_000
INFLATE_STEP_BYTES = 1 << 20
DICOMDIR_NAME = "DICOMDIR"


def readable_name(name: str) -> str:
    """A file name as text: bytes that are not UTF-8 (kept by Python as lone surrogates, which no report, CSV or
    database can hold) shown as �."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


@dataclass(frozen=True)
class InputFile:
    """One file to import. `name` is what the clinician sees in the report: a path, or `archive.zip/inner/path`."""

    name: str
    opener: Callable[[], BinaryIO]
    size: int | None = None  # bytes, where known before reading

    @property
    def stem(self) -> str:
        return PurePosixPath(self.name.replace("\\", "/")).stem

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name.replace("\\", "/")).suffix.lower()

    def read(self) -> bytes:
        with self.opener() as handle:
            return handle.read()

    @classmethod
    def from_path(cls, path: Path) -> InputFile:
        return cls(readable_name(str(path)), lambda: open(path, "rb"), path.stat().st_size)

    @classmethod
    def from_bytes(cls, name: str, data: bytes) -> InputFile:
        """For uploads: the browser gives a name and the bytes."""
        return cls(name, lambda: io.BytesIO(data), len(data))


def _visible_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _unsafe_member_reason(info: zipfile.ZipInfo) -> str | None:
    name = info.filename.replace("\\", "/")
    parts = PurePosixPath(name).parts
    if name.startswith("/") or (parts and ":" in parts[0]) or ".." in parts:
        return "unsafe path inside the archive (it points outside the archive's folder); not opened"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic link inside the archive; not followed"
    if info.file_size > MAX_MEMBER_BYTES:
        return f"would expand to {info.file_size / 2**20:,.0f} MB, more than the {MAX_MEMBER_BYTES >> 20:,} MB allowed"
    if info.file_size > (1 << 20) and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
        return "compressed far more than any image can be (possible zip bomb); not opened"
    return None


class _OpenArchive:
    """One archive, its directory read once: each member is read from it by offset, so an archive of n members
    costs n reads, not n re-readings of its directory (which made large archives quadratic). It stays open until
    the caller's `ExitStack` closes, when every member has been read."""

    def __init__(self, archive: InputFile):
        self._handle = archive.opener()
        try:
            self.zipped = zipfile.ZipFile(self._handle)
        except Exception:
            self._handle.close()
            raise

    def close(self) -> None:
        self.zipped.close()
        self._handle.close()

    def opener(self, info: zipfile.ZipInfo) -> Callable[[], BinaryIO]:
        def open_member() -> BinaryIO:
            return _inflate_capped(self.zipped, info)
        return open_member


def _inflate_capped(zipped: zipfile.ZipFile, info: zipfile.ZipInfo) -> io.BytesIO:
    """The member's bytes, inflated a small step at a time: one large `read(n)` lets zlib expand the whole
    compressed stream into memory before the header's size is applied, so a member whose header understates its
    size cost gigabytes before it was refused. Headers are not trusted; the bytes actually inflated are counted."""
    inflated = io.BytesIO()
    try:
        with zipped.open(info) as member:
            while chunk := member.read(INFLATE_STEP_BYTES):
                if inflated.write(chunk) and inflated.tell() > MAX_MEMBER_BYTES:
                    raise UnreadableImage(f"expands to more than the {MAX_MEMBER_BYTES >> 20:,} MB allowed; not opened")
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise UnreadableImage("the archive's record of this file does not match its contents (its size or checksum "
                              f"is wrong: {exc}); not opened") from None
    inflated.seek(0)
    return inflated


def _archive_files(archive: InputFile, report: ImportReport, archives: ExitStack) -> list[InputFile]:
    try:
        opened = _OpenArchive(archive)
        archives.callback(opened.close)
        infos = opened.zipped.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        report.reject(archive.name, f"zip archive is damaged or unreadable ({exc})")
        return []
    if len(infos) > MAX_ARCHIVE_MEMBERS:
        report.reject(archive.name, f"zip archive holds {len(infos):,} entries, more than the {MAX_ARCHIVE_MEMBERS:,} allowed")
        return []
    files: list[InputFile] = []
    rejected = len(report.rejected)
    total = 0
    for info in infos:
        name = f"{archive.name}/{info.filename}"
        reason = _unsafe_member_reason(info)  # first: an unsafe name is reported, whatever else it looks like
        hidden = any(part not in (".", "..") and (part.startswith(".") or part == "__MACOSX")
                     for part in PurePosixPath(info.filename.replace("\\", "/")).parts)
        if reason is None and (info.is_dir() or hidden):  # folders, and what macOS and version control leave behind
            continue
        if reason is None and info.filename.lower().endswith(".zip"):
            reason = "archive inside an archive; unpack it first"
        if reason is None and total + info.file_size > MAX_ARCHIVE_BYTES:
            reason = f"the archive expands to more than {MAX_ARCHIVE_BYTES >> 30} GB in all; the rest was not opened"
        if reason is not None:
            report.reject(name, reason)
            continue
        total += info.file_size
        files.append(InputFile(name, opened.opener(info), info.file_size))
    if not files and len(report.rejected) == rejected:
        report.reject(archive.name, "zip archive contains no files")
    return files


def _dicomdir_references(dicomdir: InputFile) -> list[str] | None:
    """Relative paths (POSIX) of the files a DICOMDIR lists, or None when it is not a readable DICOMDIR."""
    try:
        with dicomdir.opener() as handle:
            ds = pydicom.dcmread(handle, force=True)
        records = ds.DirectoryRecordSequence
    except Exception:
        return None
    return [
        "/".join(record.ReferencedFileID) if record["ReferencedFileID"].VM > 1 else str(record.ReferencedFileID)
        for record in records
        if "ReferencedFileID" in record
    ]


def _resolve_dicomdirs(files: list[InputFile], report: ImportReport) -> list[InputFile]:
    """A DICOMDIR is an index, not an image: the files it lists are checked to be present and it is dropped."""
    def is_index(file: InputFile) -> bool:
        return PurePosixPath(file.name.replace("\\", "/")).name.upper() == DICOMDIR_NAME

    present = {f.name.replace("\\", "/").lower() for f in files}
    for index in filter(is_index, files):
        references = _dicomdir_references(index)
        if references is None:
            report.reject(index.name, "DICOMDIR index could not be read; the files beside it are imported anyway")
            continue
        folder = str(PurePosixPath(index.name.replace("\\", "/")).parent)
        for reference in references:
            if f"{folder}/{reference}".lower() not in present:
                report.reject(f"{folder}/{reference}", "listed in the DICOMDIR but missing from the folder")
    return [f for f in files if not is_index(f)]


def _is_archive(file: InputFile) -> bool:
    return file.suffix == ".zip"


def listed_paths(inputs: Iterable[str | Path], report: ImportReport) -> list[Path]:
    """Files as given and folders searched recursively (hidden files skipped); missing paths and empty folders are
    reported. Archives are not opened here."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_file() and path.name.upper() == DICOMDIR_NAME:
            path = path.parent  # a DICOMDIR stands for the folder it indexes
        if path.is_dir():
            inside = _visible_files(path)
            if not inside:
                report.reject(readable_name(str(path)), "folder contains no files")
            found += inside
        elif path.is_file():
            found.append(path)
        else:
            report.reject(readable_name(str(path)), "no such file or folder")
    return found


def expand_inputs(inputs: Iterable[str | Path | InputFile], report: ImportReport, archives: ExitStack) -> list[InputFile]:
    """Files as given, folders searched recursively (hidden files skipped), zip archives opened in memory,
    DICOMDIR indexes checked. Missing paths, empty folders and unsafe archive members are reported. The archives
    stay open, for their members to be read, until `archives` closes."""
    files: list[InputFile] = []
    for item in inputs:
        files += [item] if isinstance(item, InputFile) else [InputFile.from_path(p) for p in listed_paths([item], report)]
    expanded: list[InputFile] = []
    for file in files:
        expanded += _archive_files(file, report, archives) if _is_archive(file) else [file]
    return _resolve_dicomdirs(expanded, report)
