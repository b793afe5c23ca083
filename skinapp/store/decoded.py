"""Predictions decoded once per process. A prediction row is never changed after it is written (the store is
append-only, and guarded so on SQLite and PostgreSQL), so its decoded form can be kept by id: a worklist of
1,000 cases then decodes only the predictions that are new since it was last drawn."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from skinapp.store.codec import PNG_HEADER_BYTES, prediction_from_row
from skinapp.store.records import StoredPrediction
from skinapp.store.schema import cases, predictions

IDS_PER_QUERY = 1000  # bound parameters per query: well under SQLite's and PostgreSQL's limits


def _read_only(prediction: StoredPrediction) -> StoredPrediction:
    """One object serves every session: its arrays refuse in-place changes instead of passing them on."""
    for value in vars(prediction).values():
        if isinstance(value, np.ndarray):
            value.setflags(write=False)
    return prediction


class DecodedPredictions:
    def __init__(self, capacity: int = 20_000):
        """capacity: predictions kept, the least recently read dropped first (about 6 kB each)."""
        self.capacity = capacity
        self._kept: OrderedDict[int, StoredPrediction] = OrderedDict()
        self._lock = threading.Lock()  # one store serves every browser session of the app

    def __len__(self) -> int:
        return len(self._kept)

    def by_id(self, connection: Connection, ids: Iterable[int]) -> dict[int, StoredPrediction]:
        wanted = list(dict.fromkeys(ids))
        with self._lock:
            found = {i: self._kept[i] for i in wanted if i in self._kept}
            for i in found:
                self._kept.move_to_end(i)
        missing = [i for i in wanted if i not in found]
        for start in range(0, len(missing), IDS_PER_QUERY):
            header = func.substr(cases.c.image_png, 1, PNG_HEADER_BYTES).label("image_header")
            rows = connection.execute(select(predictions, header).join(cases, cases.c.id == predictions.c.case_id)
                                      .where(predictions.c.id.in_(missing[start:start + IDS_PER_QUERY])))
            found.update((row["id"], _read_only(prediction_from_row(row, bytes(row["image_header"]))))
                         for row in rows.mappings())
        with self._lock:
            for i in missing:
                if i in found:
                    self._kept[i] = found[i]
            while len(self._kept) > self.capacity:
                self._kept.popitem(last=False)
        return found
