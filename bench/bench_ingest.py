"""Import speed of real DICOMs: the import path (one strict decode per file at the zoom copy's size, the display image
and the zoom copy made from it) against a naive decode (`ds.pixel_array` + resize to the display size).

    python bench/bench_ingest.py [--data ../shared/data/siim_isic_2020] [--size 160] [--repeat 3]

Both start from the bytes already in memory (the disk is not measured) and run on the 6000×4000 files; the naive
path once (about 1.5 s a file), the import path --repeat times (the median pass counts). The import path does more
than the naive one: it also makes the 2048-px zoom copy (JPEG), the content key and the metadata.
Prints seconds for all files, the ratio (target ≥ 20×), the largest colour difference between the model inputs made
from the two, and the time per file `load_cases` takes from disk at display size (what the app does on upload) on
the 6000×4000 files and on the ten largest files, with and without the zoom copies (median of --repeat runs). Each
time is given on the wall clock and in CPU seconds of this process: on a machine busy with other work the wall clock
counts that work too.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
import pydicom

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import skinapp.io
from skinapp.io import DISPLAY_MAX_SIDE, InputFile, load_cases, read_file
from skinapp.io.pixels import ZOOM_MAX_SIDE, fitted_size

TARGET_RATIO = 20.0
_T = TypeVar("_T")


def _square(image: np.ndarray, size: int) -> np.ndarray:
    """A model's square input, area-averaged (skinapp.model.preprocess's antialiased resize, kept apart so that
    this bench measures the importer alone)."""
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


def _naive(name: str, blob: bytes) -> np.ndarray:
    ds = pydicom.dcmread(io.BytesIO(blob))
    full = ds.pixel_array
    size = fitted_size(full.shape[1], full.shape[0], DISPLAY_MAX_SIDE)
    return cv2.resize(full, size, interpolation=cv2.INTER_AREA)


def _imported(name: str, blob: bytes) -> np.ndarray:
    (case,) = read_file(InputFile.from_bytes(name, blob), DISPLAY_MAX_SIDE)
    assert case.zoom_jpeg is not None
    return case.image


class _Clock:
    """Wall-clock and CPU seconds (this process, all its threads) together: on a machine busy with other work the
    wall clock counts their time too, the CPU time does not."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def add(self, function: Callable[[], _T]) -> _T:
        wall, cpu = time.perf_counter(), time.process_time()
        result = function()
        self.wall += time.perf_counter() - wall
        self.cpu += time.process_time() - cpu
        return result

    def per_file(self, files: int) -> str:
        return f"{self.wall / files * 1000:.0f} ms/file ({self.cpu / files * 1000:.0f} ms CPU)"


def _median_pass(function: Callable[[], _T], repeat: int) -> tuple[_Clock, _T]:
    """The pass of median wall-clock time among `repeat` (other work on the machine only ever adds time; the
    median is not the luckiest pass)."""
    passes = []
    for _ in range(repeat):
        clock = _Clock()
        passes.append((clock, clock.add(function)))
    passes.sort(key=lambda run: run[0].wall)
    return passes[len(passes) // 2]


def _load_cases_clock(files: list[Path], metadata_csv: Path, repeat: int) -> _Clock:
    clock, (cases, report) = _median_pass(lambda: load_cases(files, metadata_csv=metadata_csv), repeat)
    if report.rejected or len(cases) != len(files):
        sys.exit(f"load_cases rejected files: {report.summary()}")
    return clock


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/siim_isic_2020")
    parser.add_argument("--size", type=int, default=160, help="the model's input side")
    parser.add_argument("--repeat", type=int, default=3,
                        help="passes of the import path and of load_cases; the median is reported")
    args = parser.parse_args()
    files = sorted((args.data / "dicom").glob("*.dcm"))
    if not files:
        sys.exit(f"no DICOM files under {args.data / 'dicom'}")
    headers = {f: pydicom.dcmread(f, stop_before_pixels=True) for f in files}
    largest = [f for f in files if (int(headers[f].Columns), int(headers[f].Rows)) == (6000, 4000)]
    if not largest:
        sys.exit("no 6000×4000 DICOM among the files")
    ten_largest = sorted(files, key=lambda f: f.stat().st_size)[-10:]
    blobs = {f.name: f.read_bytes() for f in largest}
    metadata_csv = args.data / "metadata.csv"
    warnings.simplefilter("ignore")
    _imported(*next(iter(blobs.items())))  # imports and first-call set-up out of the timings

    imported_clock, imported = _median_pass(lambda: [_imported(name, blob) for name, blob in blobs.items()], args.repeat)
    naive_clock = _Clock()
    naive = naive_clock.add(lambda: [_naive(name, blob) for name, blob in blobs.items()])  # one pass: ~1.5 s a file
    difference = max(float(np.abs(_square(a, args.size).astype(int) - _square(b, args.size)).mean())
                     for a, b in zip(naive, imported, strict=True))
    ratio, cpu_ratio = naive_clock.wall / imported_clock.wall, naive_clock.cpu / imported_clock.cpu
    count = len(blobs)
    print(f"{count} real 6000×4000 DICOM files (JPEG baseline), {count * 24} megapixels in all")
    print(f"naive   pixel_array + resize to {DISPLAY_MAX_SIDE} px:              {naive_clock.per_file(count)}")
    print(f"import  one decode → display + {ZOOM_MAX_SIDE}-px zoom copy + key: {imported_clock.per_file(count)}")
    print(f"ratio   {ratio:.1f}× faster ({cpu_ratio:.1f}× in CPU time); target ≥ {TARGET_RATIO:.0f}× on both: "
          f"{'met' if min(ratio, cpu_ratio) >= TARGET_RATIO else 'NOT met'}")
    print(f"mean absolute colour difference of the {args.size}-px model inputs made from the two: worst file "
          f"{difference:.2f} of 255")

    for label, group in ((f"{len(largest)} files of 6000×4000", largest), ("the ten largest files", ten_largest)):
        with_zoom = _load_cases_clock(group, metadata_csv, args.repeat)
        skinapp.io.ZOOM_MAX_SIDE = DISPLAY_MAX_SIDE  # no larger copy than the display image: none is made
        try:
            without_zoom = _load_cases_clock(group, metadata_csv, args.repeat)
        finally:
            skinapp.io.ZOOM_MAX_SIDE = ZOOM_MAX_SIDE
        print(f"load_cases, {label} (from disk, metadata CSV, ≤{DISPLAY_MAX_SIDE} px, median of {args.repeat}): "
              f"{with_zoom.per_file(len(group))} with the zoom copies, {without_zoom.per_file(len(group))} without")
    cases, _ = load_cases(largest)
    zoom_kb = [len(c.zoom_jpeg) / 1e3 for c in cases if c.zoom_jpeg is not None]
    print(f"zoom copies (≤{ZOOM_MAX_SIDE} px JPEG): {len(zoom_kb)} of {len(cases)} cases, {np.mean(zoom_kb):.0f} kB each "
          "on average")


if __name__ == "__main__":
    main()
