"""Each reviewer's review queue, kept in the database: the worklist's order when they last entered it from the
worklist. A reload, a new browser session or the next day finds the same queue, so "next case still to review"
follows what the reviewer set out to do, not where the cases sort now. Entering again from the worklist keeps a new
queue; the older ones stay (insert only)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import insert, select

from skinapp.store.schema import review_queues
from skinapp.store.store import Store

MAX_QUEUE = 100_000  # more case ids than any worklist holds: a larger list is a mistake, not a queue


class ReviewQueues:
    def __init__(self, store: Store) -> None:
        self.store = store

    def enter(self, username: str, case_ids: Sequence[int]) -> tuple[int, ...]:
        """Keep `case_ids` (in the order the reviewer saw them) as `username`'s queue; returns it."""
        queue = tuple(dict.fromkeys(int(c) for c in case_ids))  # a case once, where it first appears
        if not username or len(queue) > MAX_QUEUE:
            raise ValueError("a review queue needs a signed-in reviewer and at most 100,000 cases")
        with self.store.write_transaction() as connection:
            connection.execute(insert(review_queues).values(username=username, case_ids=list(queue),
                                                            entered_at=dt.datetime.now(dt.UTC)))
        return queue

    def latest(self, username: str) -> tuple[int, ...] | None:
        """The queue `username` last entered from the worklist; None if they never did."""
        with self.store.engine.connect() as connection:
            ids = connection.execute(select(review_queues.c.case_ids).where(review_queues.c.username == username)
                                     .order_by(review_queues.c.id.desc()).limit(1)).scalar()
        return tuple(int(c) for c in ids) if ids else None
