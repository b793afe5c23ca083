"""Peak memory and throughput of `predict` against the number of inputs (issue 31): with inputs read, analysed and
written a chunk at a time, peak memory must stay flat (≤ 1.2× from 300 to 3,000 images).

    python bench/bench_scale.py [--images 300 3000] [--side 768] [--tta] [--engines local ray] [--cores 2] \
        [--ray-workers 1 2]

Writes distinct synthetic dermoscopy-like JPEGs (a brown blob on skin tone, `--side` px wide) into a scratch
folder, runs `python -m skinapp predict` on them in a fresh process with the installed weights (one view unless
--tta), and prints per engine and run: the images, the wall time, images per second and the peak resident memory
of the command's process (on Ray, the driver's only: the workers are Ray's processes, not its children). At equal cores:
the local engine uses `--cores` torch threads, the Ray engine `--ray-workers` workers sharing them (a local Ray;
each count is run in turn, so scaling over workers shows at a fixed number of cores).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
_PEAK = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
         "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def write_images(folder: Path, count: int, side: int) -> None:
    height = side * 3 // 4
    yy, xx = np.mgrid[0:height, 0:side]
    for k in range(count):
        rng = np.random.default_rng(k)
        skin = np.array([225, 185, 160]) + rng.normal(0, 6, 3)
        cy, cx = height * rng.uniform(0.35, 0.65), side * rng.uniform(0.35, 0.65)
        radius = side * rng.uniform(0.12, 0.25)
        inside = ((yy - cy) ** 2 + (xx - cx) ** 2 * rng.uniform(0.6, 1.4)) < radius ** 2
        image = np.broadcast_to(skin, (height, side, 3)).copy()
        image[inside] = np.array([120, 80, 55]) + rng.normal(0, 8, 3)
        image += rng.normal(0, 4, image.shape)
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(folder / f"lesion{k:05d}.jpg", quality=90)


def run(folder: Path, tta: bool, engine: str, cores: int, workers: int = 1) -> tuple[float, int]:
    out = folder.parent / f"{folder.name}-{engine}{workers}.csv"
    command = [sys.executable, "-m", "skinapp", "predict", str(folder), "--out", str(out), "--format", "full"]
    if engine == "ray":
        command += ["--engine", "ray", "--workers", str(workers), "--cpus-per-worker", str(max(1, cores // workers))]
    if not tta:
        command.append("--no-tta")
    start = time.perf_counter()
    peak_kb = subprocess.run([sys.executable, "-c", _PEAK, *command], cwd=REPO, check=True, capture_output=True,
                             text=True).stdout.split()[-1]
    return time.perf_counter() - start, int(peak_kb)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, nargs="+", default=[300, 3000])
    parser.add_argument("--side", type=int, default=768)
    parser.add_argument("--tta", action="store_true")
    parser.add_argument("--engines", nargs="+", choices=["local", "ray"], default=["local", "ray"])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--ray-workers", type=int, nargs="+", default=[1])
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.cores)
    print(f"predict, {args.side}-px JPEGs, {'4 views' if args.tta else 'one view'}, {args.cores} cores")
    print(f"{'engine':>6} {'images':>7} {'seconds':>8} {'images/s':>9} {'peak MB':>8}")
    with tempfile.TemporaryDirectory() as scratch:
        folders = {}
        for count in args.images:
            folders[count] = Path(scratch) / f"in{count}"
            folders[count].mkdir()
            write_images(folders[count], count, args.side)
        runs = [(engine, workers) for engine in args.engines for workers in (args.ray_workers if engine == "ray" else [1])]
        for engine, workers in runs:
            name = engine if engine == "local" else f"ray×{workers}"
            peaks = []
            for count, folder in folders.items():
                seconds, peak_kb = run(folder, args.tta, engine, args.cores, workers)
                peaks.append(peak_kb)
                print(f"{name:>6} {count:>7} {seconds:>8.1f} {count / seconds:>9.2f} {peak_kb / 1024:>8.0f}", flush=True)
            if len(peaks) > 1:
                print(f"{name:>6} peak memory, largest run over smallest: {peaks[-1] / peaks[0]:.2f}× (target ≤ 1.2×)")


if __name__ == "__main__":
    main()
