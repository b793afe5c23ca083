"""The PACS seen from the app and the command line: studies pulled and imported as an upload is (one recipe for
the Import page and `pacs pull`), and what the case page says about sending a result back. No Streamlit here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from skinapp.pacs.connection import PacsServer
from skinapp.pacs.pull import StudyFound, image_files, images_in
from skinapp.pacs.send import sent_results
from skinapp.store import Store, StoredCase
from skinapp.workflow.analysis import ImportResult, StepProgress, import_and_analyse

if TYPE_CHECKING:
    from skinapp.inference.assessment import Assessor
    from skinapp.inference.model import LesionModel


@dataclass(frozen=True)
class PullResult:
    imported: ImportResult
    fetched: int            # images fetched from the PACS and put through the importer
    already_stored: int     # images already in the worklist (by SOP Instance UID) with this model's result: not fetched
    left_on_pacs: int       # reports and other non-images of these studies

    def summary(self) -> str:
        return (f"{self.fetched} image(s) fetched from the PACS; {self.already_stored} already in the worklist; "
                f"{self.left_on_pacs} report(s) or other non-image object(s) left on the PACS.")


def study_labels(studies: Sequence[StudyFound]) -> dict[str, StudyFound]:
    """One line per study for the clinician to pick from, numbered (so two alike studies stay two)."""
    def line(number: int, study: StudyFound) -> str:
        images = f"{study.images} image(s)" if study.images is not None else "images not counted"
        what = study.description or ", ".join(study.modalities) or "no description"
        return (f"{number}. {study.study_date or 'no date'} · patient {study.patient_id or 'unknown'} · "
                f"{study.patient_name or 'no name'} · {what} · {images}")
    return {line(k + 1, s): s for k, s in enumerate(studies)}


def pull_studies(server: PacsServer, studies: Sequence[StudyFound], store: Store, predictor: LesionModel, actor: str,
                 assessor: Assessor, modality: str | None = None, progress: StepProgress | None = None,
                 client=None) -> PullResult:
    """Fetch the studies' images one at a time and import them as an upload is: the same checks, report,
    de-duplication, analysis and audit (in `actor`'s name). Raises PacsError when the PACS refuses the listing;
    an image that cannot be fetched is a rejection in the report."""
    client = client or server.client()
    images, left_out = images_in(server, studies, modality, client)
    known = store.known_sop_instance_uids((i.sop_uid for i in images), analysed_by=predictor.identity)
    wanted = [i for i in images if i.sop_uid not in known]
    imported = import_and_analyse(image_files(server, wanted, client), store, predictor, actor, progress=progress,
                                  assessor=assessor)
    return PullResult(imported, len(wanted), len(images) - len(wanted), left_out)


class SendState(NamedTuple):
    text: str          # what the case page says about the PACS copy of the result
    sendable: bool     # a decided case from DICOM: the Send button is offered


def send_state(store: Store, case: StoredCase) -> SendState:
    if case.sop_instance_uid is None:
        return SendState("This image did not come from DICOM: there is no PACS study to send the result to.", False)
    latest = store.latest_decision(case.id)
    if latest is None:
        return SendState("The result can be sent to the PACS once a decision is saved.", False)
    sent = sent_results(store, [case.id]).get(case.id)
    if sent is None:
        return SendState("The result has not been sent to the PACS yet.", True)
    if sent.decision_id != latest.id:
        return SendState("The decision changed after the result was sent: send it again so the PACS holds the latest.",
                         True)
    return SendState(f"The result with the latest decision is in the PACS ({sent.pacs}).", True)
