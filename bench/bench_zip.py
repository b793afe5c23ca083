"""Import time of zip archives against their member count: should grow linearly (it grew quadratically when each
member re-read the archive's directory; issue 11 reported 2,000 members in 18 s and 5,000 in 2 min 12 s).

    python bench/bench_zip.py [--members 500 1000 2000 3000]

Each archive holds distinct small PNG lesions (64×48), stored as a clinic's export would be. Prints, per archive,
the seconds `load_cases` takes (reading, decoding, metadata) and the milliseconds per member; linear time shows as
a flat ms-per-member column.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skinapp.io import InputFile, load_cases


def archive(members: int) -> bytes:
    rng = np.random.default_rng(members)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zipped:
        for k in range(members):
            image = np.full((48, 64, 3), (220, 180, 160), np.uint8)
            image[12:36, 16:48] = rng.integers(40, 120, 3)
            image[0, 0] = (k % 256, k // 256 % 256, 0)  # every member distinct: no duplicate is skipped
            png = io.BytesIO()
            Image.fromarray(image).save(png, "PNG")
            zipped.writestr(f"export/patient{k % 50:02d}/IMG_{k:05d}.png", png.getvalue())
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, nargs="+", default=[500, 1000, 2000, 3000])
    args = parser.parse_args()
    print(f"{'members':>8} {'MB':>6} {'seconds':>8} {'ms/member':>10}")
    for members in args.members:
        blob = archive(members)
        start = time.perf_counter()
        cases, report = load_cases([InputFile.from_bytes("export.zip", blob)])
        seconds = time.perf_counter() - start
        assert len(cases) == members and not report.rejected, report.summary()
        print(f"{members:8d} {len(blob) / 2**20:6.1f} {seconds:8.2f} {1000 * seconds / members:10.2f}")


if __name__ == "__main__":
    main()
