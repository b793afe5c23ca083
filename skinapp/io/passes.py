"""A batch read in passes (a site profile learns from it, then it is imported; the CLI reads it again to resume):
cases in chunks, each dermoscopy image once, and a metadata CSV that can be read again."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, TypeVar

import numpy as np

from skinapp.io.case import Case
from skinapp.vocab import Metadata

T = TypeVar("T")
MetadataSource = str | Path | BinaryIO | None


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """`items` `size` at a time (the last chunk may be shorter), read only as far as the caller goes."""
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def dermoscopy_batches(cases: Iterable[Case], size: int = 32) -> Iterator[tuple[list[np.ndarray], list[Metadata]]]:
    """The dermoscopy images among `cases` with what is known of each, `size` at a time, each image once: a file
    given twice, or two copies of one image, would weigh double in what is learnt from them (a site profile)."""
    seen: set[str] = set()

    def first_seen(case: Case) -> bool:
        key = case.content_key or str(id(case))
        if not case.is_dermoscopic or key in seen:
            return False
        seen.add(key)
        return True

    for chunk in chunked(filter(first_seen, cases), size):
        yield [c.image for c in chunk], [c.metadata for c in chunk]


def rereadable(metadata_csv: MetadataSource) -> Callable[[], MetadataSource]:
    """The CSV as often as the batch is read: an upload is read once into memory and given out afresh each time; a
    path is given as it is (and a missing file reported by each import as any unreadable CSV is)."""
    if metadata_csv is None or isinstance(metadata_csv, (str, Path)):
        return lambda: metadata_csv
    if hasattr(metadata_csv, "seek"):
        metadata_csv.seek(0)
    data, name = metadata_csv.read(), str(getattr(metadata_csv, "name", "metadata.csv"))

    def again() -> BinaryIO:
        buffer = io.BytesIO(data)
        buffer.name = name  # the name the import report gives the CSV
        return buffer

    return again
