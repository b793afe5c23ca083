"""Import speed of real DICOMs: the reduced-size decode path against the naive `ds.pixel_array` + resize.

    python bench/bench_ingest.py [--data ../shared/data/siim_isic_2020] [--size 160]

Both paths start from the bytes already in memory (the disk is not measured) and end at the model's square
input. Prints seconds for all files, the ratio, the largest colour difference between the two model inputs,
and the time `load_cases` takes for the same files at display size (what the app does on upload), with and
without the 2048-px zoom copy it keeps of each large image, and that copy's size.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pydicom

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import skinapp.io
from skinapp.io import DISPLAY_MAX_SIDE, load_cases
from skinapp.io.pixels import ZOOM_MAX_SIDE, dicom_frames
from skinapp.model.preprocess import resize_for_model


def _naive(blob: bytes, size: int) -> np.ndarray:
    ds = pydicom.dcmread(io.BytesIO(blob))
    return resize_for_model(ds.pixel_array, size)


def _fast(blob: bytes, size: int) -> np.ndarray:
    ds = pydicom.dcmread(io.BytesIO(blob))
    return resize_for_model(dicom_frames(ds, max_side=2 * size)[0], size)


def _timed(function, blobs: list[bytes], size: int) -> tuple[float, list[np.ndarray]]:
    start = time.perf_counter()
    out = [function(blob, size) for blob in blobs]
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/siim_isic_2020")
    parser.add_argument("--size", type=int, default=160, help="the model's input side")
    args = parser.parse_args()
    files = sorted((args.data / "dicom").glob("*.dcm"))
    if not files:
        sys.exit(f"no DICOM files under {args.data / 'dicom'}")
    blobs = [f.read_bytes() for f in files]
    megapixels = sum(pydicom.dcmread(io.BytesIO(b), stop_before_pixels=True).Rows * pydicom.dcmread(
        io.BytesIO(b), stop_before_pixels=True).Columns for b in blobs) / 1e6
    warnings.simplefilter("ignore")
    naive_s, naive = _timed(_naive, blobs, args.size)
    fast_s, fast = _timed(_fast, blobs, args.size)
    difference = max(float(np.abs(a.astype(int) - b.astype(int)).mean()) for a, b in zip(naive, fast, strict=True))
    start = time.perf_counter()
    cases, report = load_cases(files, metadata_csv=args.data / "metadata.csv")
    display_s = time.perf_counter() - start
    skinapp.io.ZOOM_MAX_SIDE = DISPLAY_MAX_SIDE  # no larger copy than the display image: none is made
    start = time.perf_counter()
    load_cases(files, metadata_csv=args.data / "metadata.csv")
    without_zoom_s = time.perf_counter() - start
    zoom_kb = [len(c.zoom_jpeg) / 1e3 for c in cases if c.zoom_jpeg is not None]
    print(f"{len(files)} real DICOM files, {megapixels:.0f} megapixels in all, model input {args.size}×{args.size}")
    print(f"naive  pixel_array + resize      {naive_s:7.2f} s  ({naive_s / len(files) * 1000:6.0f} ms/file)")
    print(f"fast   reduced-size decode       {fast_s:7.2f} s  ({fast_s / len(files) * 1000:6.0f} ms/file)")
    print(f"ratio  {naive_s / fast_s:.1f}× faster (target ≥ 10×); mean absolute colour difference of the model inputs: "
          f"worst file {difference:.2f} of 255")
    print(f"load_cases at display size (≤{DISPLAY_MAX_SIDE} px, with metadata CSV, from disk): {display_s:.2f} s for "
          f"{len(cases)} cases, {len(report.rejected)} rejected; without the zoom copies {without_zoom_s:.2f} s")
    if zoom_kb:
        print(f"zoom copies (≤{ZOOM_MAX_SIDE} px JPEG): {len(zoom_kb)} of {len(cases)} cases, "
              f"{(display_s - without_zoom_s) / len(zoom_kb) * 1000:.0f} ms and {np.mean(zoom_kb):.0f} kB each on average")


if __name__ == "__main__":
    main()
