"""The worklist order as a clinician expects it, on records whose numbers are chosen by hand (no model)."""

import datetime as dt

import numpy as np
import pytest

from skinapp.io.case import Acquisition
from skinapp.store import CaseRecord, Decision, StoredCase, StoredPrediction
from skinapp.trust.flags import Flag
from skinapp.vocab import Metadata
from skinapp.workflow.queue import ReviewQueue
from skinapp.workflow.worklist import ORDER_RULE, Filters, apply_filters, build_worklist

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
CHECK = Flag("combined_uncertainty", "unsure", True)
NOTE = Flag("missing_metadata", "age missing", False)


def _record(case_id: int, malignancy: float | None, flags=(), decided=False, patient="P1", seed=0,
            suspicious: bool | None = None, decided_on_earlier_result=False, tier: str | None = None) -> CaseRecord:
    case = StoredCase(case_id, f"case{case_id}", f"case{case_id}.png", None, patient, None, None, Metadata(), True,
                      (100, 100), None, Acquisition(), [], NOW, "importer")
    prediction = None
    if malignancy is not None:
        p = np.array([malignancy, 1 - malignancy, 0, 0, 0, 0, 0])
        embedding = np.random.default_rng(seed).normal(size=8)
        prediction = StoredPrediction(p, p[None], embedding / np.linalg.norm(embedding), np.zeros((4, 4)),
                                      np.zeros((4, 4)), None, (100, 100), "v", Metadata(), suspicious=suspicious, risk_tier=tier,
                                      id=case_id, case_id=case_id, weights_sha256="id", created_at=NOW, flags=list(flags))
    decided_on = prediction.id if prediction is not None else None
    if decided_on_earlier_result:
        decided_on = -1  # an earlier prediction of the case, since replaced by a new analysis
    decision = Decision(case_id, case_id, "Dr A", NOW, "agree", None, "", None, decided_on, "v", "MEL") if decided else None
    return CaseRecord(case, prediction, decision, b"")


def _order(records):
    return [row.case.id for row in build_worklist(records)]


def test_the_order_is_tier_then_malignancy_unreviewed_first_and_flags_do_not_reorder():
    records = [
        _record(1, 0.10, tier="low"),                      # nothing reaches the safety net
        _record(2, 0.55, tier="cannot_exclude"),
        _record(3, 0.40, flags=[CHECK], tier="cannot_exclude"),  # a manual check has its own column, not a place
        _record(4, None),                                  # the model could not analyse it: a person must look first
        _record(5, 0.99, decided=True, tier="high"),       # already reviewed, however malignant
        _record(6, 0.62, tier="high"),
        _record(7, 0.99, tier="high"),                     # the 99 % melanoma is first, not fifth
        _record(8, 0.60, decided=True, decided_on_earlier_result=True, tier="cannot_exclude"),  # analysed again
    ]
    assert _order(records) == [4, 7, 6, 8, 2, 3, 1, 5]
    assert ORDER_RULE.startswith("Order:") and "Flags do not change the order" in ORDER_RULE


def test_ties_keep_import_order():
    records = [_record(1, 0.30, tier="low"), _record(2, 0.30, tier="low"), _record(3, 0.95, tier="high"),
               _record(4, 0.20, flags=[CHECK], tier="low")]
    assert _order(records) == [3, 1, 2, 4]


def test_results_of_a_model_without_tiers_rank_by_the_safety_net_they_had():
    records = [_record(1, 0.90, tier="high"), _record(2, 0.60, flags=[CHECK]), _record(3, 0.25, suspicious=True),
               _record(4, 0.35, suspicious=True, flags=[CHECK]), _record(5, 0.10, suspicious=False)]
    rows = build_worklist(records)
    assert [r.case.id for r in rows] == [1, 4, 3, 2, 5]
    assert [r.risk_tier for r in rows] == ["high", "suspicious", "suspicious", None, "low"]


def test_patient_context_needs_three_analysed_lesions_of_one_patient():
    rows = build_worklist([_record(i, 0.2, seed=i) for i in range(1, 4)] + [_record(9, 0.2, patient="P2")])
    by_id = {row.case.id: row for row in rows}
    assert all(by_id[i].context is not None for i in (1, 2, 3))
    assert by_id[9].context is None or by_id[9].context.ugly_duckling is None


def test_filters():
    rows = build_worklist([_record(1, 0.1), _record(2, 0.6, flags=[CHECK]), _record(3, 0.9, decided=True),
                           _record(4, 0.2, decided=True, decided_on_earlier_result=True)])
    assert [r.case.id for r in apply_filters(rows, Filters(status="reviewed"))] == [3]
    assert [r.case.id for r in apply_filters(rows, Filters(status="to review"))] == [2, 4, 1]
    rows = [r for r in rows if r.case.id != 4]
    assert [r.case.id for r in apply_filters(rows, Filters(flagged_only=True))] == [2]
    assert [r.case.id for r in apply_filters(rows, Filters(diagnosis="MEL"))] == [2, 3]
    graded = build_worklist([_record(1, 0.9, tier="high"), _record(2, 0.3, tier="cannot_exclude"), _record(3, None)])
    assert [r.case.id for r in apply_filters(graded, Filters(tier="high"))] == [1]
    assert [r.case.id for r in apply_filters(graded, Filters(tier="not_analysed"))] == [3]
    assert [r.case.id for r in apply_filters(rows, Filters(text="CASE1"))] == [1]


def test_the_review_queue_follows_its_own_order_and_finds_the_next_case_to_review():
    queue = ReviewQueue((7, 3, 9, 4))
    assert queue.position(9) == 3 and len(queue) == 4
    assert queue.previous(7) is None and queue.next(4) is None and queue.next(3) == 9 and queue.previous(3) == 7
    assert queue.next_unreviewed(3, reviewed={9}) == 4
    assert queue.next_unreviewed(4, reviewed={3}) == 7  # round to the start
    assert queue.next_unreviewed(4, reviewed={7, 3, 9}) is None
    assert queue.including(12).case_ids == (7, 3, 9, 4, 12) and queue.including(3) is queue
    with pytest.raises(ValueError):
        ReviewQueue((1, 2, 1))
