"""The `predict` command: cases in, one CSV row per case out, optional binary lesion masks."""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from tqdm import tqdm

from skinapp.inference.assessment import Assessor
from skinapp.inference.prediction import Prediction
from skinapp.inference.predictor import Predictor
from skinapp.inference.site import SiteProfile, SiteProfileError
from skinapp.io import Case, ImportReport, iter_cases
from skinapp.io.passes import chunked, dermoscopy_batches
from skinapp.reporting.prediction_rows import columns_of, csv_row, mask_file_name, written_row

if TYPE_CHECKING:
    from skinapp.distributed.ray_predict import RayOptions


class _Inputs:
    """The inputs read afresh on each pass, one file at a time; each refused file is said once, as it is met."""

    def __init__(self, paths: Sequence[Path], metadata_csv: Path | None, progress: bool | None):
        self.paths, self.metadata_csv, self.progress = paths, metadata_csv, progress
        self.rejected = 0

    def cases(self, say_rejections: bool, what: str) -> Iterator[Case]:
        report = ImportReport()
        bar = tqdm(desc=what, unit="file", file=sys.stderr, disable=None if self.progress is None else not self.progress)
        told = 0

        def moved(done: int, total: int, name: str) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        try:
            for case in iter_cases(self.paths, report, self.metadata_csv, keep_duplicates=True, progress=moved):
                if say_rejections:
                    told = self._tell(report, told)
                yield case
        finally:
            bar.close()
        if say_rejections:
            self._tell(report, told)
            self.rejected = len(report.rejected)

    @staticmethod
    def _tell(report: ImportReport, told: int) -> int:
        for rejection in report.rejected[told:]:
            print(f"skipped {rejection.file}: {rejection.reason}", file=sys.stderr)
        return len(report.rejected)


def _done_rows(out: Path, columns: list[str]) -> set[str]:
    """The images an earlier, interrupted run of the same command already wrote; a row cut off mid-write is
    dropped (the file is cut back to its last whole row). Raises ValueError, the file untouched, when it holds
    another table: a wrong --out never loses a byte."""
    data = out.read_bytes()
    whole = data[:data.rfind(b"\n") + 1]
    rows = list(csv.reader(io.StringIO(whole.decode("utf-8"))))
    if rows and rows[0] != columns:
        raise ValueError(f"{out} holds another table (other columns): it cannot be resumed in this format")
    if len(whole) != len(data):
        with open(out, "r+b") as handle:
            handle.truncate(len(whole))
    return {row[0] for row in rows[1:] if row}


def run_predict(paths: Sequence[Path], out: Path, weights: Path, output_format: str = "isic2018",
                masks_dir: Path | None = None, metadata_csv: Path | None = None, tta: bool = True, chunk: int = 16,
                site_profile: Path | None = None, site_adapt: bool = False, save_profile: Path | None = None,
                resume: bool = False, progress: bool | None = None, ray: RayOptions | None = None) -> int:
    """Returns the exit code: 0 if any case was analysed, 1 if none could be, 2 if the site profile asked for
    cannot be used or the output cannot be resumed (nothing is written then). Inputs are read, analysed and written
    a chunk at a time, so memory does not grow with their number. `site_profile`: a profile file to analyse with;
    `site_adapt`: estimate one on the inputs themselves (a first pass over them; at least MIN_SITE_IMAGES), and with
    `save_profile` keep it for later runs. `resume`: keep the rows `out` already holds and analyse only the rest.
    `progress`: a progress bar on standard error (None: where it is a terminal). `ray`: score on Ray Data instead
    (`distributed.ray_predict`), with the same rows."""
    columns = columns_of(output_format)
    done: set[str] = set()
    if resume and out.is_file():
        try:
            done = _done_rows(out, columns)
        except (ValueError, UnicodeDecodeError) as exc:
            print(f"error: {exc}; nothing was analysed", file=sys.stderr)
            return 2
    if ray is not None:
        return _on_ray(paths, out, weights, ray, output_format, masks_dir, metadata_csv, tta, chunk, site_profile,
                       site_adapt, done)
    inputs = _Inputs(paths, metadata_csv, progress)
    predictor = Predictor.from_weights(weights, tta=tta, gradcam=False)
    try:
        if site_profile is not None:
            predictor.adapt_to_site(SiteProfile.load(site_profile))
        elif site_adapt:
            batches = dermoscopy_batches(inputs.cases(False, "Adapting to the site"))
            profile = predictor.estimate_site_profile_from(batches, name=(save_profile.stem if save_profile else "these inputs"))
            if save_profile is not None:
                profile.save(save_profile)
            predictor.adapt_to_site(profile)
    except SiteProfileError as exc:
        print(f"error: {exc}; nothing was analysed", file=sys.stderr)
        return 2
    assessor = Assessor.from_weights(weights, predictor.card)
    if masks_dir is not None:
        masks_dir.mkdir(parents=True, exist_ok=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    analysed = 0
    with open(out, "a" if done else "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        if not done:
            writer.writeheader()
        waiting = (c for c in inputs.cases(True, "Analysing") if c.name not in done)
        for batch in chunked(waiting, chunk):
            predictions = predictor.predict([c.image for c in batch], [c.metadata for c in batch])
            for case, prediction in zip(batch, predictions, strict=True):
                flags = assessor.assess(prediction, case.image, case.is_dermoscopic) if output_format == "full" else []
                writer.writerow(written_row(csv_row(case, prediction, output_format, flags, predictor.identity),
                                            output_format))
                if masks_dir is not None:
                    _write_mask(masks_dir, case, prediction)
            handle.flush()  # an interrupted run keeps every chunk written so far (--resume goes on from there)
            analysed += len(batch)
    if not analysed and not done:
        out.unlink()
        print("error: no input could be read; nothing was analysed", file=sys.stderr)
        return 1
    kept = f"; {len(done)} row(s) kept from before" if done else ""
    print(f"{analysed} case(s) analysed with model {predictor.model_version} → {out}{kept}; "
          f"{inputs.rejected} file(s) skipped")
    return 0


def _on_ray(paths: Sequence[Path], out: Path, weights: Path, options: RayOptions, output_format: str,
            masks_dir: Path | None, metadata_csv: Path | None, tta: bool, chunk: int, site_profile: Path | None,
            site_adapt: bool, done: set[str]) -> int:
    from skinapp.distributed.ray_predict import run_ray_predict

    if masks_dir is not None or site_adapt:
        print("error: with --engine ray, --masks-dir and --site-adapt are not available (adapt with the local engine "
              "and --save-profile, then give --site-profile); nothing was analysed", file=sys.stderr)
        return 2
    if site_profile is not None:
        try:
            SiteProfile.load(site_profile)  # refused here, in words, rather than inside every worker
        except SiteProfileError as exc:
            print(f"error: {exc}; nothing was analysed", file=sys.stderr)
            return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    analysed, rejected = run_ray_predict(paths, out, weights, options, output_format, metadata_csv, tta, chunk,
                                         site_profile, frozenset(done), append=bool(done))
    if not analysed and not done:
        out.unlink(missing_ok=True)
        print("error: no input could be read; nothing was analysed", file=sys.stderr)
        return 1
    kept = f"; {len(done)} row(s) kept from before" if done else ""
    print(f"{analysed} case(s) analysed on Ray ({options.workers} worker(s)) → {out}{kept}; {rejected} file(s) skipped")
    return 0


def _write_mask(masks_dir: Path, case: Case, prediction: Prediction) -> None:
    mask: np.ndarray = prediction.outline.mask.astype(np.uint8) * 255
    if case.original_size[0] and tuple(case.original_size) != (mask.shape[1], mask.shape[0]):
        mask = cv2.resize(mask, case.original_size, interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(str(masks_dir / mask_file_name(case.name)), mask)
