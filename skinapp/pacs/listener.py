"""A DICOM Storage SCP (pynetdicom) for dermatoscopes and PACS that push images: each C-STORE is imported exactly as
an upload is (same checks, de-duplication, analysis, audit in the listener's account). Associations are accepted
only from the calling AE titles allowed, and only when they call this listener by its own AE title; a refused
association stores nothing. Images are analysed one at a time (one model in memory); the sender waits for the
answer, which is Success, or a failure status when the file is refused, so that the device knows."""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable

import pydicom
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.presentation import StoragePresentationContexts
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from skinapp.io.sources import InputFile
from skinapp.workflow.analysis import Importer

log = logging.getLogger(__name__)

SUCCESS = 0x0000
CANNOT_UNDERSTAND = 0xC000   # a storage failure: the object was not imported (its reason is in the log)
OUT_OF_RESOURCES = 0xA700


def _ae_title(title: str) -> str:
    cleaned = title.strip()
    if not cleaned or len(cleaned) > 16 or not cleaned.isascii() or "\\" in cleaned:
        raise ValueError(f"{title!r} is not a DICOM AE title (1 to 16 plain characters)")
    return cleaned


class StorageListener:
    def __init__(self, importer: Importer, ae_title: str, allowed: set[str], host: str = "127.0.0.1",
                 port: int = 11112, tell: Callable[[str], None] | None = None):
        """tell: where each arrival's outcome is said (the operator's terminal); reasons never go to the log,
        as they may quote the file."""
        if not allowed:
            raise ValueError("no calling AE title is allowed: name at least one device or PACS")
        self.importer = importer
        self.ae = AE(ae_title=_ae_title(ae_title))
        self.ae.require_called_aet = True
        self.ae.require_calling_aet = sorted(_ae_title(a) for a in allowed)
        for storage in StoragePresentationContexts:  # compressed pictures as they come: the importer decodes them
            self.ae.add_supported_context(str(storage.abstract_syntax), ALL_TRANSFER_SYNTAXES)
        self.ae.add_supported_context(Verification)
        self._tell = tell or (lambda line: None)
        self._lock = threading.Lock()  # one analysis at a time
        self.imported: list[int] = []   # case ids, in arrival order
        server = self.ae.start_server((host, port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)])
        assert server is not None  # not blocking: the server is returned
        self._server = server
        self.port = int(server.server_address[1])

    def _store(self, event) -> int:
        try:
            dataset = event.dataset
            dataset.file_meta = event.file_meta
            data = io.BytesIO()
            pydicom.dcmwrite(data, dataset, enforce_file_format=True)
        except Exception:
            log.warning("a C-STORE could not be written back as a DICOM file; not imported")
            self._tell(f"refused from {event.assoc.requestor.ae_title}: not a complete DICOM object")
            return CANNOT_UNDERSTAND
        sop = str(dataset.get("SOPInstanceUID", "unknown"))
        name = f"{event.assoc.requestor.ae_title}/{sop}.dcm"
        try:
            with self._lock:
                result = self.importer.run([InputFile.from_bytes(name, data.getvalue())])
        except MemoryError:
            return OUT_OF_RESOURCES
        except Exception as exc:  # the device is answered and the listener goes on; no file content reaches the log
            log.error("a C-STORE could not be imported (%s)", type(exc).__name__)
            self._tell("refused: the import failed (the kind of error is in the log)")
            return CANNOT_UNDERSTAND
        for rejected in result.report.rejected:
            self._tell(f"refused {rejected.file}: {rejected.reason}")
        if not result.case_ids:
            log.info("a C-STORE was refused by the import checks")
            return CANNOT_UNDERSTAND
        self.imported.extend(result.case_ids)
        self._tell(f"imported {name} as case {', '.join(map(str, result.case_ids))}")
        return SUCCESS

    def serve_forever(self) -> None:
        threading.Event().wait()

    def stop(self) -> None:
        self._server.shutdown()
