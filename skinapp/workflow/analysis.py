"""Import and analyse: inputs → cases in the store, each with the model's prediction and its flags.

The one path from files to a filled worklist, shared by the app's Import page, the tests and the benchmark.
A case that fails anywhere is named in the report; the rest of the batch goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from sqlalchemy.exc import SQLAlchemyError

from skinapp.inference import Prediction
from skinapp.inference.assessment import Assessor
from skinapp.inference.model import LesionModel, ModelUnavailable
from skinapp.io import Case, ImportReport, InputFile, iter_cases
from skinapp.store import InvalidText, Store
from skinapp.store.accounts import Accounts, User

log = logging.getLogger(__name__)
StepProgress = Callable[[float, str], None]  # (fraction done, what is happening)


@dataclass
class ImportResult:
    report: ImportReport
    case_ids: list[int] = field(default_factory=list)   # every case of this import, new or already known
    new_cases: int = 0
    analysed: int = 0

    @property
    def outcome(self) -> tuple[str, str]:
        """("success" | "warning" | "error", the sentence that says how the import went): green only when every
        file came in."""
        rejected = len(self.report.rejected)
        if not self.case_ids:
            return "error", (f"Nothing was imported: {'none of the ' + str(rejected) if rejected else 'no'} file(s) "
                             "could be read as a dermoscopy image or DICOM file. The reasons are listed below.")
        text = (f"{len(self.case_ids)} case(s) in the worklist from this import ({self.new_cases} new, "
                f"{self.analysed} analysed); {rejected} file(s) not imported.")
        return ("warning" if rejected else "success"), text



def database_error(exc: SQLAlchemyError) -> str:
    """What the log keeps of a refused write: the kind of error and its SQL state, never its message (a database
    quotes the refused value there, which may come from a file: a name, an ID)."""
    original = getattr(exc, "orig", None)
    state = getattr(original, "sqlstate", None) or getattr(original, "sqlite_errorname", None)
    return f"{type(original or exc).__name__}" + (f" ({state})" if state else "")

def import_and_analyse(
    inputs: Iterable[str | Path | InputFile], store: Store, predictor: LesionModel, actor: str,
    metadata_csv: str | Path | BinaryIO | None = None, progress: StepProgress | None = None, chunk: int = 8,
    assessor: Assessor | None = None, reanalyse_known: bool = True,
) -> ImportResult:
    """assessor: the flag policy and index shipped with the predictor's weights (loaded here when not given).
    reanalyse_known: a case already analysed by another model is analysed again with this one (False: only new
    cases and cases without a result are analysed; a site profile's import must not replace the results of cases
    already in the worklist)."""
    def tell(fraction: float, text: str) -> None:
        if progress is not None:
            progress(min(max(fraction, 0.0), 1.0), text)

    report = ImportReport()
    result = ImportResult(report)
    assessor = assessor or Assessor.from_weights(predictor.folder, predictor.card)

    def read_progress(done: int, total: int, name: str) -> None:
        tell(done / max(total, 1), f"Reading and analysing file {min(done + 1, total)} of {total}")

    # One chunk of cases in memory at a time: each is stored, analysed and dropped before the next files are read.
    waiting: list[tuple[int, Case]] = []
    filled = left_as_they_were = left_without_new_metadata = 0
    for case in iter_cases(inputs, report, metadata_csv, progress=read_progress):
        try:
            added = store.add_case(case, actor)
        except InvalidText as exc:
            _refuse(report, case, f"not stored: {exc}")
            continue
        except SQLAlchemyError as exc:
            log.error("storing a case failed: %s", database_error(exc))
            _refuse(report, case, "not stored: the database refused it (the error is in the log)")
            continue
        result.case_ids.append(added.id)
        result.new_cases += added.new
        filled += bool(added.filled)
        latest = None if added.new else store.latest_weights(added.id)
        if not reanalyse_known and latest is not None and latest != predictor.identity:
            left_as_they_were += 1
            left_without_new_metadata += added.model_input_changed
        elif added.new or added.model_input_changed or latest != predictor.identity:
            if not added.new:  # a case already known is analysed as it now reads, a reviewer's corrections included
                known = store.case(added.id)
                if known is not None:
                    case.metadata = known.metadata
            waiting.append((added.id, case))
        if len(waiting) >= chunk:
            _analyse_chunk(waiting, store, predictor, assessor, actor, result)
            waiting = []
    if waiting:
        _analyse_chunk(waiting, store, predictor, assessor, actor, result)
    if left_as_they_were:
        report.notes.append(f"{left_as_they_were} case(s) already analysed by another model kept their results: "
                            "this import analyses only cases without one" + (
                                f"; {left_without_new_metadata} of them gained metadata from it that their results "
                                "were made without (import them again with the model as shipped to analyse them "
                                "with it)" if left_without_new_metadata else ""))
    if len(result.case_ids) > result.new_cases:
        report.notes.append(f"{len(result.case_ids) - result.new_cases} case(s) were already in the worklist; what they "
                            f"were stored with was kept, and {filled} gained metadata they lacked")
    tell(1.0, "Done")
    return result


def reanalyse_case(case_id: int, store: Store, predictor: LesionModel, actor: str,
                   assessor: Assessor | None = None) -> int:
    """Analyse a stored case again as it now reads (after a metadata correction); returns the new result's id.
    A decision made on the earlier result stays beside it, and the case is back to review."""
    case = store.case(case_id)
    if case is None:
        raise ValueError(f"there is no case {case_id}")
    image = store.case_image(case_id)
    assessor = assessor or Assessor.from_weights(predictor.folder, predictor.card)
    prediction = predictor.predict([image], [case.metadata])[0]
    return _record(store, case_id, prediction, image, case.is_dermoscopic, predictor, assessor, actor)


def _record(store: Store, case_id: int, prediction: Prediction, image: np.ndarray, is_dermoscopic: bool,
            predictor: LesionModel, assessor: Assessor, actor: str) -> int:
    """The model's result stored with its flags and the identity of the model that made it."""
    flags = assessor.assess(prediction, image, is_dermoscopic)
    return store.add_prediction(case_id, prediction, flags, predictor.identity, actor)


def _refuse(report: ImportReport, case: Case, reason: str) -> None:
    report.reject(case.source, reason)
    if case.name in report.imported:
        report.imported.remove(case.name)


def _analyse_chunk(items: Sequence[tuple[int, Case]], store: Store, predictor: LesionModel, assessor: Assessor,
                   actor: str, result: ImportResult) -> None:
    try:
        predictions = predictor.predict([c.image for _, c in items], [c.metadata for _, c in items])
    except ModelUnavailable as exc:  # the model service: trying the images one by one would not help
        log.error("analysis not possible: %s", exc)
        for _, case in items:
            result.report.reject(case.source, f"not analysed: {exc}; the case is in the worklist without a prediction, "
                                              "and importing the same file again once the model answers analyses it")
        return
    except Exception:
        if len(items) > 1:  # find the one that fails, analyse the others
            for item in items:
                _analyse_chunk([item], store, predictor, assessor, actor, result)
            return
        log.exception("analysis failed for stored case %s", items[0][0])  # the internal id only: no patient data
        result.report.reject(items[0][1].source, "the model could not analyse this image; it is in the worklist "
                                                 "without a prediction")
        return
    for (case_id, case), prediction in zip(items, predictions, strict=True):
        try:
            _record(store, case_id, prediction, case.image, case.is_dermoscopic, predictor, assessor, actor)
        except SQLAlchemyError as exc:
            log.error("storing the prediction of case %s failed: %s", case_id, database_error(exc))
            result.report.reject(case.source, "the model's result could not be stored (the error is in the log); the "
                                              "case is in the worklist without it")
            continue
        result.analysed += 1


def model_in_force(store: Store, predictor: LesionModel, assessor: Assessor) -> tuple[LesionModel, Assessor]:
    """The model as this clinic runs it: with the risk levels its administrator adopted for this model, if any
    (another identity, and the safety net the flags read); else as shipped. The Import page's model, for scripts."""
    levels = store.clinic_levels(predictor.card.identity)
    if levels is None:
        return predictor, assessor
    card = levels.applied_to(predictor.card)
    return predictor.with_card(card), assessor.under(card)


class AccountRefused(Exception):
    """The account named for an import does not exist or is disabled."""


@dataclass(frozen=True)
class Importer:
    """What a scripted import needs: the store, the enabled account it is recorded for, and the model this clinic
    runs. `import`, `pacs pull` and the DICOM listener analyse and record with it exactly as the Import page does."""

    store: Store
    user: User
    predictor: LesionModel
    assessor: Assessor

    def run(self, inputs: Iterable[str | Path | InputFile], metadata_csv: str | Path | None = None,
            progress: StepProgress | None = None) -> ImportResult:
        return import_and_analyse(inputs, self.store, self.predictor, self.user.label, metadata_csv=metadata_csv,
                                  progress=progress, assessor=self.assessor)


def account_for_import(store: Store, name: str) -> User:
    user = Accounts(store).get(name.strip().lower())
    if user is None or user.disabled:
        raise AccountRefused(f"there is no enabled account named {name!r}; imports are recorded in a user's name")
    return user


def importer(database: str | None, account_name: str, weights: Path) -> Importer:
    """Raises AccountRefused before the model is loaded, so a wrong name costs nothing."""
    store = Store.open(database)
    user = account_for_import(store, account_name)
    from skinapp.inference.predictor import Predictor  # torch: only where a script runs the model in process

    loaded = Predictor.from_weights(weights)
    predictor, assessor = model_in_force(store, loaded, Assessor.from_weights(weights, loaded.card))
    return Importer(store, user, predictor, assessor)
