"""The model service against the model in process (issue 31): latency per case, and an app's first analysis.

    python bench/bench_service.py [--images 24] [--repeats 12] [--cpus 2]

Starts `python -m skinapp serve` (a local Ray, one replica with `--cpus` cores) with the installed weights, then
prints, for real ISIC 2017 `val` images analysed as the app analyses them (test-time views and Grad-CAM):
- latency per case at batch 1: one app session asking for one case at a time, through the service and in process
  (`--cpus` torch threads), median and 90th percentile;
- under 4 concurrent app sessions, each asking for one case at a time: latency per case and cases per second, through
  the service (whose dynamic batching analyses calls that arrive together as one batch) and in process (4 sessions
  of one app process share its one model, as Streamlit's sessions do);
- an app process's first analysis: a fresh interpreter signs in, opens the Import page and imports one image
  (AppTest, no browser), timed from the interpreter's start; with the service the process never imports torch.
Both modes run on the same machine; the service's figures include the HTTP round trip on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"

FIRST_ANALYSIS = """
import os, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, {repo!r})
from streamlit.testing.v1 import AppTest
from skinapp.store import Store
from skinapp.store.accounts import Accounts
os.environ["SKINAPP_DATA_DIR"] = tempfile.mkdtemp()
store = Store.open(f"sqlite:///{{Path(os.environ['SKINAPP_DATA_DIR']) / 'skinapp.db'}}")
Accounts(store).add("bench", "Bench", "a long bench password", "reviewer", actor="bench")
store.engine.dispose()
app = AppTest.from_file({app!r}, default_timeout=600).run()
app.text_input(key="sign_in_username").input("bench")
app.text_input(key="sign_in_password").input("a long bench password")
app.button(key="FormSubmitter:sign_in_form-Sign in").click().run()
app.switch_page("pages/1_Import.py").run()
image = Path({image!r})
app.get("file_uploader")[0].set_value([(image.name, image.read_bytes(), "image/jpeg")])
app.run()
app.button(key="import_button").click().run()
assert "1 analysed" in app.success[0].value, [e.value for e in app.error]
print("torch" in sys.modules)
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_service(cpus: int, secret_file: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "skinapp", "serve", "--port", str(port), "--cpus-per-replica",
                                str(cpus), "--secret-file", str(secret_file)], cwd=REPO, start_new_session=True,
                               stdout=log.open("w"), stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(REPO)})
    while "is ready at" not in log.read_text():
        if process.poll() is not None:
            raise SystemExit(f"the service did not start:\n{log.read_text()[-2000:]}")
        time.sleep(1)
    return process, f"http://127.0.0.1:{port}"


def sessions(ask: Callable[[int], object], count: int, repeats: int) -> tuple[list[float], float]:
    """`count` sessions, each asking for `repeats` cases one at a time: every latency, and cases per second."""
    latencies: list[float] = []
    lock = threading.Lock()

    def session(k: int) -> None:
        for r in range(repeats):
            start = time.perf_counter()
            ask(k * repeats + r)
            took = time.perf_counter() - start
            with lock:
                latencies.append(took)

    start = time.perf_counter()
    threads = [threading.Thread(target=session, args=(k,)) for k in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, count * repeats / (time.perf_counter() - start)


def describe(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    return f"median {statistics.median(ordered):5.2f} s  p90 {ordered[int(0.9 * (len(ordered) - 1))]:5.2f} s"


def first_analysis(image: Path, env: dict[str, str]) -> tuple[float, bool]:
    script = FIRST_ANALYSIS.format(repo=str(REPO), app=str(REPO / "app.py"), image=str(image))
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr[-2000:])
    return time.perf_counter() - start, out.stdout.strip().endswith("True")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=12, help="cases each session asks for")
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.cpus)
    import torch

    from skinapp.config import weights_dir
    from skinapp.distributed.model_client import ModelClient
    from skinapp.inference.predictor import Predictor
    from skinapp.io.images import read_image
    from skinapp.io.sources import InputFile
    from skinapp.model.card import ModelCard

    torch.set_num_threads(args.cpus)
    paths = sorted((SHARED / "isic2017" / "images").glob("ISIC_*.jpg"))[:args.images]
    images = [read_image(InputFile.from_path(p))[0] for p in paths]
    weights = weights_dir()
    with tempfile.TemporaryDirectory() as scratch:
        secret_file = Path(scratch) / "secret"
        secret = secrets.token_urlsafe(24)
        secret_file.write_text(secret + "\n")
        service, url = start_service(args.cpus, secret_file, Path(scratch) / "service.log")
        try:
            client = ModelClient.connect(url, ModelCard.load(weights), weights, secret=secret)
            local = Predictor.from_weights(weights)
            lock = threading.Lock()  # the app's sessions take turns on its one model

            def in_process(k: int) -> object:
                with lock:
                    return local.predict([images[k % len(images)]])

            def through_service(k: int) -> object:
                return client.predict([images[k % len(images)]])

            for warm in (in_process, through_service):
                warm(0)
            print(f"one case at a time, {len(images)} ISIC 2017 val images, {args.cpus} cores, "
                  f"{local.card.tta_views} views + Grad-CAM")
            for label, ask in (("in process", in_process), ("service", through_service)):
                latencies, _ = sessions(ask, 1, args.repeats)
                print(f"  batch 1, 1 session       {label:>10}: {describe(latencies)}")
            for label, ask in (("in process", in_process), ("service", through_service)):
                latencies, rate = sessions(ask, 4, args.repeats)
                print(f"  4 concurrent sessions    {label:>10}: {describe(latencies)}  {rate:4.2f} cases/s")
            env = {**os.environ, "PYTHONPATH": str(REPO)}
            env.pop("SKINAPP_MODEL_URL", None)
            took, torch_loaded = first_analysis(paths[0], env)
            print(f"  first analysis of a fresh app process, in process: {took:5.1f} s (torch imported: {torch_loaded})")
            took, torch_loaded = first_analysis(paths[0], {**env, "SKINAPP_MODEL_URL": url,
                                                           "SKINAPP_MODEL_SECRET_FILE": str(secret_file)})
            print(f"  first analysis of a fresh app process, service:    {took:5.1f} s (torch imported: {torch_loaded})")
        finally:
            os.killpg(service.pid, signal.SIGTERM)
            service.wait(timeout=120)


if __name__ == "__main__":
    main()
