"""The damaged-JPEG check on real DICOMs: how often flipped bytes are caught, and what the strict decoder costs.

    python bench/bench_integrity.py [--data ../shared/data/siim_isic_2020] [--trials 30]

1. Detection: bytes flipped at random inside the entropy-coded data of the first real DICOM's JPEG frame (1 and
   6 flips, `--trials` seeds each); prints the share that `skinapp.io.integrity.check_jpeg` refuses. JPEG has
   no checksum, so a flip that still decodes validly cannot be caught: the figure is below 100 % by nature.
2. Cost: every real DICOM frame decoded at display size by Pillow's draft mode (the reader before the check)
   and by the strict libjpeg-turbo decode the reader uses now; prints both totals and whether the pixels match.
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
from PIL import Image
from pydicom.encaps import generate_frames

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skinapp.io.integrity import DamagedImageData, check_jpeg, decode_jpeg_strict
from skinapp.io.pixels import DISPLAY_MAX_SIDE, fitted_size


def flipped(frame: bytes, count: int, seed: int) -> bytes:
    damaged = bytearray(frame)
    coded = frame.index(b"\xff\xda") + 20
    for position in np.random.default_rng(seed).integers(coded, len(frame) - 4, count):
        damaged[position] ^= 0x5A
    return bytes(damaged)


def caught_share(frame: bytes, count: int, trials: int) -> float:
    caught = 0
    for seed in range(trials):
        try:
            check_jpeg(flipped(frame, count, seed))
        except DamagedImageData:
            caught += 1
    return caught / trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/siim_isic_2020")
    parser.add_argument("--trials", type=int, default=30)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    frames = [next(generate_frames(pydicom.dcmread(f).PixelData, number_of_frames=1))
              for f in sorted((args.data / "dicom").glob("*.dcm"))]
    print(f"{len(frames)} real DICOM frames; flips in the first ({len(frames[0]) / 2**20:.1f} MB)")
    for count in (1, 6):
        print(f"  {count} flipped byte(s): caught in {caught_share(frames[0], count, args.trials):.0%} of {args.trials} trials")

    pillow = strict = 0.0
    same = 0
    for frame in frames:
        start = time.perf_counter()
        image = Image.open(io.BytesIO(frame))
        size = fitted_size(*image.size, DISPLAY_MAX_SIDE)
        image.draft(image.mode, size)
        old = np.asarray(image.convert("RGB"))
        pillow += time.perf_counter() - start
        start = time.perf_counter()
        new = decode_jpeg_strict(frame, size)
        strict += time.perf_counter() - start
        same += old.shape == new.shape and np.array_equal(old, new)
    print(f"decode at display size: Pillow draft {pillow:.2f} s, strict libjpeg-turbo {strict:.2f} s "
          f"({1 - strict / pillow:+.0%} time saved); identical pixels in {same} of {len(frames)} "
          "(the others decode at a finer DCT scale, then are resized)")


if __name__ == "__main__":
    main()
