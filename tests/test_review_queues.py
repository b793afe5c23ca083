"""Each reviewer's review queue is kept in the database (issue 29): the latest one they entered from the worklist,
theirs alone, on both backends."""

import pytest

from skinapp.store import Store
from skinapp.store.queues import ReviewQueues


def test_the_latest_queue_a_reviewer_entered_is_theirs_and_survives_a_new_connection(db_url):
    queues = ReviewQueues(Store.open(db_url))
    assert queues.latest("dra") is None
    assert queues.enter("dra", [5, 3, 9, 3]) == (5, 3, 9)  # a case once, where it first appears
    queues.enter("drb", [1, 2])
    reopened = ReviewQueues(Store.open(db_url))  # a new session: another connection
    assert reopened.latest("dra") == (5, 3, 9) and reopened.latest("drb") == (1, 2)
    reopened.enter("dra", [9, 5])  # entering again from the worklist keeps a new queue
    assert queues.latest("dra") == (9, 5)


def test_a_queue_needs_a_reviewer(db_url):
    with pytest.raises(ValueError, match="signed-in reviewer"):
        ReviewQueues(Store.open(db_url)).enter("", [1])
