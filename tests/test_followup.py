"""The same lesion over time: grouping, date order, and the change between two dates."""

import datetime as dt

import cv2
import numpy as np
import pandas as pd
import pytest

from skinapp.inference.measurements import measure_lesion
from skinapp.io.case import Acquisition
from skinapp.store import CaseRecord, StoredCase
from skinapp.store.records import Measurement
from skinapp.vocab import Metadata, Site
from skinapp.workflow.followup import (
    LesionChange,
    LesionKey,
    LesionState,
    case_date,
    interval_text,
    lesion_key,
    lesion_series,
)


def _record(case_id: int, patient=None, lesion=None, site=None, date=None) -> CaseRecord:
    case = StoredCase(id=case_id, name=f"c{case_id}", source="x.png", frame=None, patient_id=patient, lesion_id=lesion,
                      study_date=date, metadata=Metadata(50, "male", site or Site()), is_dermoscopic=True, original_size=(0, 0),
                      pixel_spacing_mm=None, acquisition=Acquisition(), notes=[],
                      imported_at=dt.datetime(2026, 1, case_id, tzinfo=dt.UTC), imported_by="x")
    return CaseRecord(case, None, None, b"")


def test_images_group_by_patient_and_lesion_id_else_by_site_in_date_order_and_single_images_are_left_out():
    records = [
        _record(1, "P1", "L1", date="2025-06-01"), _record(2, "P1", "L1", date="2024-02-10"),
        _record(3, "P2", "L1", date="2025-01-01"),                       # another patient's "L1": another lesion
        _record(4, "P1", None, Site("torso", "back")), _record(5, "P1", None, Site("torso", "back")),
        _record(6, "P1", None, Site("head/neck", "face")),               # alone on the face
        _record(7, None, "HAM_0000118"), _record(8, None, "HAM_0000118"),  # HAM: lesion ids without patients
        _record(9),                                                       # nothing to group by
    ]
    series = lesion_series(records)
    assert {k: [r.case.id for r in v] for k, v in series.items()} == {
        LesionKey("P1", "L1"): [2, 1], LesionKey("P1", "back", by_site=True): [4, 5], LesionKey("", "HAM_0000118"): [7, 8]}
    assert "grouped by site" in LesionKey("P1", "back", True).label and lesion_key(records[-1].case) is None


def _disc_measurements(radius: int, mm_per_pixel: float | None):
    mask = np.zeros((400, 400), np.uint8)
    cv2.circle(mask, (200, 200), radius, 1, -1)
    return measure_lesion(mask.astype(bool), np.full((400, 400, 3), 200, np.uint8), mm_per_pixel)


def test_the_change_between_two_dates_is_in_mm_and_percentage_points():
    earlier = LesionState.of(_record(1, date="2025-01-01"), _disc_measurements(50, 0.1))    # 10 mm across
    later = LesionState.of(_record(2, date="2025-07-01"), _disc_measurements(100, 0.06))    # 12 mm across
    change = LesionChange(earlier, later)
    assert change.days == 181
    span, area, diameter, malignancy = change.describe()
    assert span == "2025-01-01 → 2025-07-01 (6 months)"
    assert area == "Area: 78.5 → 113.1 mm² (+44%)"   # π 5² and π 6², from the pixels of two discs
    assert diameter == "Longest diameter: 10.1 → 12.1 mm (+19%)"   # 101 px × 0.1 mm, 201 px × 0.06 mm
    assert "no model result" in malignancy


def test_time_between_pictures_is_said_in_days_months_or_years():
    assert [interval_text(d) for d in (0, 1, 59, 60, 365, 366, 730, 800)] == [
        "same day", "1 day", "59 days", "2 months", "12 months", "12 months", "2 years", "2 years 2 months"]


def test_an_unknown_capture_date_is_said_and_never_counted_from_the_import_date():
    known, unknown = _record(1, date="2025-01-01"), _record(2)     # imported 2026-01-02, date taken unknown
    assert case_date(unknown) == "date taken unknown (imported 2026-01-02)"
    change = LesionChange(LesionState.of(known, None), LesionState.of(unknown, None))
    assert change.days is None
    assert change.describe()[0] == ("2025-01-01 → date taken unknown (imported 2026-01-02) (time between unknown: the "
                                    "day a picture was taken is not recorded; enter it on its review page)")


def test_a_diameter_measured_by_hand_wins_over_the_outline_and_images_without_scale_are_not_compared():
    record = _record(1, date="2025-01-01")
    by_hand = Measurement(1, 1, dt.datetime.now(dt.UTC), "Dr A", "diameter", ((0, 0), (30, 40)), 6.5)
    state = LesionState.of(record, _disc_measurements(50, 0.1), [by_hand])
    assert state.diameter_mm == 6.5 and state.diameter_source == "measured by Dr A"
    unscaled = LesionState.of(_record(2, date="2025-03-01"), _disc_measurements(60, None))
    lines = LesionChange(state, unscaled).describe()
    assert "cannot be compared" in lines[1] and "cannot be compared" in lines[2]
    by_outline = LesionState.of(_record(3, date="2025-06-01"), _disc_measurements(60, 0.1))
    assert "measured by Dr A then from the model's outline" in LesionChange(state, by_outline).describe()[2]


@pytest.mark.slow
def test_two_images_of_one_ham10000_lesion_are_found_as_one_lesion_after_import(shared_data, shipped_weights, tmp_path):
    from skinapp.inference import Predictor
    from skinapp.store import Store
    from skinapp.workflow.analysis import import_and_analyse

    metadata = pd.read_csv(shared_data / "ham10000" / "HAM10000_metadata.csv")
    counts = metadata.lesion_id.value_counts()
    lesion = counts[counts == 2].index[0]
    pair = metadata[metadata.lesion_id == lesion]
    single = metadata[metadata.lesion_id == counts[counts == 1].index[0]]
    chosen = pd.concat([pair, single])
    chosen.to_csv(tmp_path / "metadata.csv", index=False)
    store = Store.open(f"sqlite:///{tmp_path / 'db.sqlite'}")
    files = [shared_data / "ham10000" / "images" / f"{i}.jpg" for i in chosen.image_id]
    import_and_analyse(files, store, Predictor.from_weights(shipped_weights), "importer", metadata_csv=tmp_path / "metadata.csv")
    series = lesion_series(store.case_records())
    assert list(series) == [LesionKey("", lesion)]
    assert sorted(r.case.name for r in series[LesionKey("", lesion)]) == sorted(pair.image_id)
