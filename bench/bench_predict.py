"""Latency and throughput of `Predictor.predict` against a bare forward pass of the same encoder.

    python bench/bench_predict.py [--weights weights] [--data ../shared/data/ham10000] [--repeats 5] [--members 5]

Prints one row per configuration (1, 4 or 8 test-time views, with and without Grad-CAM): milliseconds per
image, images per second, and the ratio to the bare encoder forward at the same batch size. `--members N`
times an N-member ensemble by repeating the shipped members (speed depends on the architecture, not on the
trained values), so the cost of a full ensemble can be measured before all its members exist; likewise
`--encoder lite2 --image-size 224` times untrained members of another architecture, so that a wider recipe's cost
per case is known before it is trained. Runs on the CPU, and on CUDA too when a GPU is present.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skinapp.inference import Predictor
from skinapp.model.batch import model_input
from skinapp.model.checkpoint import load_ensemble
from skinapp.model.network import create_model


def _images(data: Path | None, count: int) -> list[np.ndarray]:
    if data is not None and (data / "images").is_dir():
        import cv2

        paths = sorted((data / "images").glob("*.jpg"))[:count]
        decoded = [cv2.imread(str(p)) for p in paths]
        return [cv2.cvtColor(image, cv2.COLOR_BGR2RGB) for image in decoded if image is not None]
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (150, 200, 3), dtype=np.uint8) for _ in range(count)]


def _timed(fn, repeats: int, sync) -> float:
    fn()  # warm-up
    sync()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - started)
    return best


def bench(weights: Path, data: Path | None, device: torch.device, repeats: int, members: int | None,
          batches: tuple[int, ...], encoder: str | None = None, image_size: int | None = None) -> None:
    models, card = load_ensemble(weights, device)
    if encoder or image_size:  # another architecture: untrained members (the speed is the architecture's)
        config = dataclasses.replace(card.config, encoder=encoder or card.config.encoder,
                                     image_size=image_size or card.config.image_size)
        card = dataclasses.replace(card, config=config, preprocessing=dataclasses.replace(
            card.preprocessing, image_size=config.image_size), version=f"untrained {config.encoder} at {config.image_size} px")
        models = [create_model(config, pretrained_encoder=False).to(device).eval() for _ in models]
    if members:
        models = [models[k % len(models)] for k in range(members)]
    net = models[0]
    size = card.config.image_size
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    print(f"\n{card.version} on {device} ({torch.get_num_threads()} CPU threads), input {size}×{size}, "
          f"{len(models)} ensemble member(s); best of {repeats}")
    print(f"{'configuration':44s} {'batch':>5s} {'ms/image':>9s} {'images/s':>9s} {'× bare':>7s}")
    configs: list[tuple[str, dict[str, Any]]] = [
        (f"predict: {views} view{'s' if views > 1 else ''} + mask" + (" + Grad-CAM" if gradcam else ""),
         dict(tta=views > 1, views=views if views > 1 else None, gradcam=gradcam))
        for views in (8, 4, 1) for gradcam in (True, False)
    ]
    for batch in batches:
        images = _images(data, batch)
        x = model_input(card.preprocessing, images).to(device)

        def bare(x: torch.Tensor = x) -> None:
            with torch.no_grad():
                net.encode(x)

        bare_s = _timed(bare, repeats, sync) / batch
        print(f"{'bare encoder forward (preprocessed input)':44s} {batch:5d} {bare_s * 1e3:9.2f} {1 / bare_s:9.1f} {1.0:7.2f}")
        for name, options in configs:
            predictor = Predictor(models, card, device=device, batch_size=32, **options)
            seconds = _timed(lambda p=predictor, i=images: p.predict(i), repeats, sync) / batch
            print(f"{name:44s} {batch:5d} {seconds * 1e3:9.2f} {1 / seconds:9.1f} {seconds / bare_s:7.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=Path(__file__).resolve().parents[1] / "weights")
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "ham10000")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--members", type=int, help="time an ensemble of this many members (repeating the shipped ones)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--encoder", choices=["lite0", "lite1", "lite2"], help="time untrained members of this encoder")
    parser.add_argument("--image-size", type=int, help="time untrained members at this input size")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for device in devices:
        bench(args.weights, args.data, device, args.repeats, args.members, tuple(args.batches), args.encoder,
              args.image_size)


if __name__ == "__main__":
    main()
