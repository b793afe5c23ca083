"""Send a reviewed case's result to the PACS: the SR (`structured_report`) stored over STOW-RS in the source image's
study. Only a case with a reviewer's decision and a source image the PACS holds is sent. Each attempt is audited:
"result sent to PACS" with the SR's UID only after the PACS confirmed it stored the SR, otherwise "result not sent
to PACS" with the reason; the case counts as sent only by the first. Passing failures are tried again."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pydicom
from sqlalchemy import select

from skinapp.inference.measurements import measured_outline
from skinapp.pacs.connection import PacsError, PacsServer, failure, is_transient
from skinapp.pacs.structured_report import ReviewedResult, structured_report
from skinapp.store import Store
from skinapp.store.schema import audit_log

PACS_SENT = "result sent to PACS"
PACS_NOT_SENT = "result not sent to PACS"
ATTEMPTS = 3


class NotSendable(Exception):
    """Why this case's result cannot go to the PACS, in words."""


@dataclass(frozen=True)
class SendOutcome:
    case_id: int
    case_name: str
    sent: bool
    message: str
    sr_sop_instance_uid: str | None = None


@dataclass(frozen=True)
class SentRecord:
    case_id: int
    decision_id: int
    sr_sop_instance_uid: str
    pacs: str


def reviewed_result(store: Store, case_id: int) -> ReviewedResult:
    case = store.case(case_id)
    if case is None:
        raise NotSendable(f"there is no case {case_id}")
    if case.sop_instance_uid is None:
        raise NotSendable("the image did not come from DICOM, so the PACS holds nothing to attach the result to")
    decision = store.latest_decision(case_id)
    if decision is None:
        raise NotSendable("no reviewer has decided on it yet: a result goes to the PACS after a decision")
    prediction = store.prediction(decision.prediction_id) if decision.prediction_id is not None else None
    if prediction is None:
        raise NotSendable("the decision was made without a model result, so there is no result to send")
    image = store.case_image(case_id)
    outline, measured = measured_outline(prediction, image, case.mm_per_pixel)
    height, width = image.shape[:2]
    across, down = (case.original_size[0] or width) / width, (case.original_size[1] or height) / height
    # pixel centres on the stored image → subpixel positions on the source image, (0, 0) its top-left corner
    points = tuple(((x + 0.5) * across, (y + 0.5) * down) for x, y in outline.contour.tolist())
    return ReviewedResult(case, prediction, decision, points,
                          measured.area_mm2 if measured else None, measured.longest_diameter_mm if measured else None)


def _source_metadata(client, sop_uid: str) -> pydicom.Dataset:
    found = client.search_for_instances(search_filters={"SOPInstanceUID": sop_uid},
                                        fields=["StudyInstanceUID", "SeriesInstanceUID"])
    if not found:
        raise NotSendable(f"the PACS does not hold the source image (SOP Instance UID {sop_uid})")
    located = pydicom.Dataset.from_json(found[0])
    metadata = client.retrieve_instance_metadata(str(located.StudyInstanceUID), str(located.SeriesInstanceUID), sop_uid)
    return pydicom.Dataset.from_json(metadata, bulk_data_uri_handler=lambda *_: b"")


def _stored(receipt: pydicom.Dataset, sop_uid: str) -> bool:
    failed = receipt.get("FailedSOPSequence") or []
    stored = {str(item.ReferencedSOPInstanceUID) for item in receipt.get("ReferencedSOPSequence") or []}
    return not failed and sop_uid in stored


def send_result(server: PacsServer, store: Store, case_id: int, actor: str, client=None,
                attempts: int = ATTEMPTS, pause_s: float = 2.0, sleep: Callable[[float], None] = time.sleep) -> SendOutcome:
    """Build and store the SR for one case; audited either way. Never raises for a PACS or case problem: the
    outcome says what happened."""
    case = store.case(case_id)
    name = case.name if case is not None else str(case_id)
    try:
        result = reviewed_result(store, case_id)
        client = client or server.client()
        source = _with_retries(lambda: _source_metadata(client, str(result.case.sop_instance_uid)), attempts, pause_s, sleep)
        report = structured_report(source, result)
        uid = str(report.SOPInstanceUID)
        receipt = _with_retries(lambda: client.store_instances([report]), attempts, pause_s, sleep)
        if not _stored(receipt, uid):
            raise PacsError(f"the PACS at {server.shown} did not confirm that it stored the result")
    except (NotSendable, PacsError, ValueError) as exc:
        reason = str(exc)
    except Exception as exc:
        reason = str(failure(exc, server))
    else:
        with store.write_transaction() as connection:
            store.append_audit(connection, actor, PACS_SENT, case_id, pacs=server.shown, sr_sop_instance_uid=uid,
                               study_instance_uid=str(report.StudyInstanceUID), decision_id=result.decision.id,
                               prediction_id=result.prediction.id)
        return SendOutcome(case_id, name, True, f"sent to the PACS at {server.shown}", uid)
    if case is not None:
        with store.write_transaction() as connection:
            store.append_audit(connection, actor, PACS_NOT_SENT, case_id, pacs=server.shown, reason=reason)
    return SendOutcome(case_id, name, False, reason)


def _with_retries(call: Callable, attempts: int, pause_s: float, sleep: Callable[[float], None]):
    for attempt in range(attempts):
        try:
            return call()
        except NotSendable:
            raise
        except Exception as exc:
            if attempt == attempts - 1 or not is_transient(exc):
                raise
            sleep(pause_s * 2 ** attempt)
    raise AssertionError("unreachable")


def sent_results(store: Store, case_ids: Iterable[int] | None = None) -> dict[int, SentRecord]:
    """Each case's latest confirmed send."""
    query = select(audit_log.c.case_id, audit_log.c.details).where(audit_log.c.action == PACS_SENT).order_by(audit_log.c.id)
    if case_ids is not None:
        query = query.where(audit_log.c.case_id.in_(list(case_ids)))
    with store.engine.connect() as connection:
        return {int(r.case_id): SentRecord(int(r.case_id), int(r.details["decision_id"]), r.details["sr_sop_instance_uid"],
                                           r.details["pacs"]) for r in connection.execute(query)}


def unsent_cases(store: Store, case_ids: Iterable[int]) -> list[int]:
    """Of `case_ids`, those whose latest decision has not been sent (a changed decision is sent again)."""
    wanted = list(case_ids)
    sent = sent_results(store, wanted)
    unsent = []
    for case_id in wanted:
        latest = store.latest_decision(case_id)
        if latest is not None and (case_id not in sent or sent[case_id].decision_id != latest.id):
            unsent.append(case_id)
    return unsent
