"""`predict --engine ray`: archive scoring on Ray Data. The inputs are listed here (folders searched, as the local
engine does), each file (or zip archive) is decoded by a Ray task, and a pool of predictor actors, one ensemble
each (on a GPU where one is given), analyses them in chunks; the rows come back in input order and are written
to the same CSV, a chunk at a time, as the local engine writes. Rejected files are reported the same way.

Without an address a local Ray is started on 127.0.0.1 with as many CPUs as the workers need; with one, the
inputs, the weights and the metadata CSV must be at the same paths on every node (a shared file system).

Differences from the local engine, by design: each file is decoded on its own, so two inputs named alike in
different folders keep the same case name, a repeated file is not named as a repeat, and a DICOMDIR index is
not checked against its folder (its images are read from the folder as any others)."""

from __future__ import annotations

import csv
import functools
import math
import pickle
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from skinapp.io import ImportReport, iter_cases
from skinapp.io.sources import DICOMDIR_NAME, listed_paths
from skinapp.reporting.prediction_rows import columns_of, csv_row, written_row

DECODE_CPUS = 0.5   # a decode task waits on the disk half the time: two run beside one predictor on a 2-core node


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None        # None: a local Ray on 127.0.0.1
    workers: int = 1                  # predictor actors, one ensemble each
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0


def _decode(batch: dict[str, np.ndarray], metadata_csv: str | None, done: frozenset[str]) -> dict[str, list]:
    """One input file (or archive) → its cases, pickled, or its rejections."""
    names, cases, refused = [], [], []
    for unit in batch["path"]:
        report = ImportReport()
        for case in iter_cases([Path(str(unit))], report, metadata_csv, keep_duplicates=True):
            if case.name not in done:
                names.append(case.name)
                cases.append(pickle.dumps(case))
                refused.append("")
        for rejection in report.rejected:
            names.append("")
            cases.append(b"")
            refused.append(f"{rejection.file}: {rejection.reason}")
    return {"name": names, "case": cases, "refused": refused}


class _Scorer:
    """One ensemble, loaded once per actor; a chunk of decoded cases in, their CSV rows out."""

    def __init__(self, weights: str, tta: bool, output_format: str, site_profile: str | None, threads: int):
        import torch

        from skinapp.inference.assessment import Assessor
        from skinapp.inference.predictor import Predictor
        from skinapp.inference.site import SiteProfile

        torch.set_num_threads(max(1, threads))
        self.predictor = Predictor.from_weights(Path(weights), tta=tta, gradcam=False)
        if site_profile:
            self.predictor.adapt_to_site(SiteProfile.load(Path(site_profile)))
        self.assessor = Assessor.from_weights(Path(weights), self.predictor.card)
        self.output_format = output_format

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        keep = [k for k, blob in enumerate(batch["case"]) if len(blob)]
        cases = [pickle.loads(batch["case"][k]) for k in keep]
        predictions = self.predictor.predict([c.image for c in cases], [c.metadata for c in cases]) if cases else []
        rows = [b""] * len(batch["case"])
        for k, case, prediction in zip(keep, cases, predictions, strict=True):
            flags = self.assessor.assess(prediction, case.image, case.is_dermoscopic) if self.output_format == "full" else []
            rows[k] = pickle.dumps(written_row(csv_row(case, prediction, self.output_format, flags,
                                                       self.predictor.identity), self.output_format))
        return {"row": rows, "refused": list(batch["refused"])}


def _units(paths: Sequence[Path], report: ImportReport) -> list[str]:
    return [str(p) for p in listed_paths(paths, report) if p.name.upper() != DICOMDIR_NAME]


def run_ray_predict(paths: Sequence[Path], out: Path, weights: Path, options: RayOptions, output_format: str = "isic2018",
                    metadata_csv: Path | None = None, tta: bool = True, chunk: int = 16, site_profile: Path | None = None,
                    done: frozenset[str] = frozenset(), append: bool = False) -> tuple[int, int]:
    """(cases analysed, files rejected). The caller handles `--resume` (`done`: names already written, `append`:
    add to `out` rather than start it)."""
    import ray

    report = ImportReport()
    units = _units(paths, report)
    for rejection in report.rejected:
        print(f"skipped {rejection.file}: {rejection.reason}", file=sys.stderr)
    rejected = len(report.rejected)
    started_here = not ray.is_initialized()
    if started_here:
        if options.address:
            ray.init(address=options.address, log_to_driver=False)
        else:
            cpus = math.ceil(options.workers * options.cpus_per_worker + DECODE_CPUS)
            gpus = math.ceil(options.workers * options.gpus_per_worker) or None
            ray.init(num_cpus=cpus, num_gpus=gpus,
                     include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    analysed = 0
    try:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # rows in input order, as the local engine writes them
        context.enable_progress_bars = False
        data = ray.data.from_items([{"path": u} for u in units], override_num_blocks=max(1, min(len(units), 200)))
        decode = functools.partial(_decode, metadata_csv=str(metadata_csv) if metadata_csv else None, done=done)
        decoded = data.map_batches(decode, batch_size=1, num_cpus=DECODE_CPUS)
        scored = decoded.map_batches(
            _Scorer, batch_size=chunk, concurrency=options.workers, num_cpus=options.cpus_per_worker,
            num_gpus=options.gpus_per_worker or None,
            fn_constructor_kwargs={"weights": str(weights), "tta": tta, "output_format": output_format,
                                   "site_profile": str(site_profile) if site_profile else None,
                                   "threads": int(options.cpus_per_worker)})
        with open(out, "a" if append else "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns_of(output_format))
            if not append:
                writer.writeheader()
            for batch in scored.iter_batches(batch_size=chunk, batch_format="numpy"):
                for row, refused in zip(batch["row"], batch["refused"], strict=True):
                    if refused:
                        rejected += 1
                        print(f"skipped {refused}", file=sys.stderr)
                    elif len(row):
                        writer.writerow(pickle.loads(row))
                        analysed += 1
                handle.flush()
    finally:
        if started_here:
            ray.shutdown()
    return analysed, rejected
