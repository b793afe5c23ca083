"""How long a clinician waits: from uploading 20 real DICOMs to a filled worklist, and for the case-review page.

    python bench/bench_app.py [--data ../shared/data/siim_isic_2020] [--repeats 5]

Runs the real app under Streamlit's AppTest (same scripts, same cached model and database as in a browser,
without the network and the browser's drawing) against a fresh database in a temporary folder. The model is
loaded before the clock starts, as it is once per app process. Prints seconds per step.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/siim_isic_2020")
    parser.add_argument("--repeats", type=int, default=5, help="renders of the case-review page")
    args = parser.parse_args()
    files = sorted((args.data / "dicom").glob("*.dcm"))
    if not files:
        sys.exit(f"no DICOM files under {args.data / 'dicom'}")
    os.environ["SKINAPP_DATA_DIR"] = tempfile.mkdtemp(prefix="skinapp-bench-")
    os.environ.pop("SKINAPP_DATABASE_URL", None)

    import torch
    from streamlit.testing.v1 import AppTest

    from app_shared import _load_predictor

    _load_predictor()  # once per process, before any clinician arrives
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=600).run()
    app.text_input(key="reviewer_name_input").input("bench")
    app.button(key="FormSubmitter:reviewer_form-Start reviewing").click().run()
    app.switch_page("pages/1_Import.py").run()
    uploaders = app.get("file_uploader")
    uploaders[1].set_value([(f"dicom/{f.name}", f.read_bytes(), "application/dicom") for f in files])
    uploaders[2].set_value(("metadata.csv", (args.data / "metadata.csv").read_bytes(), "text/csv"))
    app.run()

    start = time.perf_counter()
    app.button(key="import_button").click().run()
    app.switch_page("app.py").run()
    to_worklist = time.perf_counter() - start
    rows = len(app.dataframe[0].value)
    assert not app.exception and rows == len(files), (app.exception, rows)

    renders = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        app.switch_page("pages/2_Case_review.py").run()
        renders.append(time.perf_counter() - start)
        assert not app.exception
    device = "CUDA" if torch.cuda.is_available() else f"CPU ({torch.get_num_threads()} threads)"
    print(f"{len(files)} real DICOM files ({sum(f.stat().st_size for f in files) / 2**20:.0f} MB), model on {device}")
    print(f"upload → filled worklist (decode, analyse with TTA + Grad-CAM, store, render): {to_worklist:.1f} s "
          f"({to_worklist / len(files) * 1000:.0f} ms per case)")
    print(f"case-review page render: median {statistics.median(renders) * 1000:.0f} ms, "
          f"worst {max(renders) * 1000:.0f} ms over {len(renders)} renders")


if __name__ == "__main__":
    main()
