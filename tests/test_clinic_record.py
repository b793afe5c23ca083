"""Issue 27, parts 4 and 5: the model's record at this clinic (risk tiers, calls, flags, reliability and the reviewers'
decisions against what each verified lesion turned out to be, with Wilson intervals; its CSV and PDF), and the guarded
refit of the risk levels to the clinic's verified lesions. A synthetic clinic: cases, stored predictions and outcomes
in a SQLite store, figures known by construction."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from pypdf import PdfReader

from conftest import synthetic_lesion
from skinapp.inference.prediction import Prediction
from skinapp.io.case import Case
from skinapp.outcomes import HISTOPATHOLOGY, NOT_EXCISED, STABLE
from skinapp.store import OutcomeEntry, Store
from skinapp.trust.flags import Flag
from skinapp.trust.risk import CANNOT_EXCLUDE, HIGH, LOW, RiskTiers
from skinapp.trust.safety_net import SafetyNet
from skinapp.vocab import CLASSES, Metadata, Site
from skinapp.workflow.clinic_record import (
    JUDGE_MIN_MALIGNANT,
    REFIT_MIN_BENIGN,
    REFIT_MIN_MALIGNANT,
    Proportion,
    VerifiedCase,
    clinic_record,
    clinic_record_csv,
    clinic_record_pdf,
    refit_levels,
    wilson_interval,
)

DAY = dt.date(2025, 3, 4)
MODEL, OTHER_MODEL = "a" * 64, "b" * 64
NET, HIGH_LEVEL = 0.30, 0.60                 # the installed model's levels in this synthetic clinic
TIERS, SAFETY_NET = RiskTiers(HIGH_LEVEL), SafetyNet(NET)
MALIGNANT_CODE = {"MEL": ("MEL_INV", 0.8), "BCC": ("BCC", None), "AKIEC": ("AK", None)}
BENIGN_CODE = {"NV": "DN", "BKL": "SK", "DF": "DF", "VASC": "VASC"}


def _probabilities(malignancy: float, truth: str) -> np.ndarray:
    """Calibrated probabilities whose malignancy (MEL + BCC + AKIEC) is `malignancy`."""
    p = np.zeros(len(CLASSES))
    malignant_part = {"MEL": (0.8, 0.1, 0.1), "BCC": (0.1, 0.8, 0.1), "AKIEC": (0.1, 0.1, 0.8)}.get(truth, (0.6, 0.2, 0.2))
    benign_part = {"NV": (0.85, 0.05, 0.05, 0.05), "BKL": (0.05, 0.85, 0.05, 0.05), "DF": (0.05, 0.05, 0.85, 0.05),
                   "VASC": (0.05, 0.05, 0.05, 0.85)}.get(truth, (0.7, 0.2, 0.05, 0.05))
    for c, share in zip(("MEL", "BCC", "AKIEC"), malignant_part, strict=True):
        p[CLASSES.index(c)] = malignancy * share
    for c, share in zip(("NV", "BKL", "DF", "VASC"), benign_part, strict=True):
        p[CLASSES.index(c)] = (1 - malignancy) * share
    return p


def _prediction(malignancy: float, truth: str, call: str, graded: bool = True, temperature: float = 1.5) -> Prediction:
    probabilities = _probabilities(malignancy, truth)
    return Prediction(
        probabilities=probabilities, view_probabilities=probabilities[None, :], embedding=np.ones(4) / 2,
        attention_grid=np.full((4, 4), 0.5), refined_grid=np.zeros((4, 4)), gradcam_grid=None, image_size=(90, 120),
        model_version="0.3.0-test", temperature=temperature, decision_scores=np.eye(len(CLASSES))[CLASSES.index(call)],
        suspicious=bool(SAFETY_NET.suspicious(malignancy)), risk_tier=TIERS.tier(malignancy, SAFETY_NET) if graded else None)


def _case(number: int, patient: str) -> Case:
    image, _ = synthetic_lesion(seed=10_000 + number)
    return Case(name=f"lesion{number:03d}", image=image, source=f"lesion{number:03d}.png", image_name=f"lesion{number:03d}",
                patient_id=patient, metadata=Metadata(60, "male", Site("torso", "back")), original_size=(120, 90))


def _store(tmp_path: Path) -> Store:
    return Store.open(f"sqlite:///{tmp_path / 'clinic.db'}")


def _add(store: Store, number: int, patient: str, prediction: Prediction, outcome: OutcomeEntry | None,
         flagged: bool = False, identity: str = MODEL, decision: tuple[str, str | None] | None = None) -> int:
    case_id = store.add_case(_case(number, patient), "importer").id
    flags = [Flag("views_disagree", "the views disagree", True)] if flagged else []
    prediction_id = store.add_prediction(case_id, prediction, flags, identity, "importer")
    if outcome is not None:
        store.record_outcomes([dataclasses.replace(outcome, case_id=case_id)], "Dr Path")
    if decision is not None:
        store.record_decision(case_id, "Dr Review", decision[0], seen_prediction_id=prediction_id, diagnosis=decision[1])
    return case_id


def _histology(truth: str) -> OutcomeEntry:
    if truth in MALIGNANT_CODE:
        code, breslow = MALIGNANT_CODE[truth]
        return OutcomeEntry(0, HISTOPATHOLOGY, DAY, code, breslow)
    return OutcomeEntry(0, HISTOPATHOLOGY, DAY, BENIGN_CODE[truth])


# ------------------------------------------------------------------------------------------ Wilson intervals


@pytest.mark.parametrize("count, total, low, high", [
    (81, 263, 0.2553, 0.3662),   # Newcombe (1998), Statistics in Medicine 17:857, table I, method 3
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0000, 0.1611),
    (1, 29, 0.0061, 0.1718),
    (8, 10, 0.4902, 0.9433),
    (10, 10, 0.7225, 1.0000),
])
def test_wilson_intervals_match_published_values(count, total, low, high):
    found = wilson_interval(count, total)
    assert found == pytest.approx((low, high), abs=5e-5)
    assert Proportion(count, total).interval == found


def test_a_proportion_says_its_count_share_and_interval():
    assert Proportion(8, 10).text() == "8 of 10, 80 % (95 % CI 49–94 %)"
    assert Proportion(8, 10).share_text == "80 % (49–94 %)"
    assert Proportion(0, 0).value is None and Proportion(0, 0).share_text == "—"
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


# ------------------------------------------------------------------------------------------ the record


def _small_clinic(store: Store) -> dict[str, int]:
    """A clinic with 12 verified malignant lesions (too few to judge), and what should not count."""
    ids = {}
    malignant = [("MEL", 0.90, "MEL", False), ("MEL", 0.70, "NV", True), ("MEL", 0.45, "MEL", False),
                 ("MEL", 0.20, "NV", True), ("BCC", 0.80, "BCC", False), ("BCC", 0.40, "BKL", True),
                 ("BCC", 0.65, "BCC", False), ("AKIEC", 0.50, "AKIEC", False), ("AKIEC", 0.10, "BKL", False),
                 ("MEL", 0.95, "MEL", False), ("BCC", 0.35, "BCC", True), ("AKIEC", 0.75, "MEL", True)]
    for k, (truth, malignancy, call, flagged) in enumerate(malignant):
        decision = ("biopsy", None) if malignancy >= 0.5 else ("follow_up", None)
        ids[f"m{k}"] = _add(store, k, f"P{k % 6}", _prediction(malignancy, truth, call), _histology(truth), flagged,
                            decision=decision)
    benign = [("NV", 0.05, "NV", False), ("NV", 0.10, "NV", False), ("NV", 0.62, "MEL", True), ("NV", 0.35, "NV", False),
              ("BKL", 0.15, "BKL", False), ("BKL", 0.40, "BCC", True), ("DF", 0.08, "DF", False),
              ("VASC", 0.02, "VASC", False)]
    for k, (truth, malignancy, call, flagged) in enumerate(benign, start=20):
        decision = ("disagree", "SK") if truth == "BKL" else ("biopsy", None) if malignancy >= 0.5 else None
        ids[f"b{k}"] = _add(store, k, f"P{k % 6}", _prediction(malignancy, truth, call), _histology(truth), flagged,
                            decision=decision)
    # benign by a clinical outcome: stable at follow-up, without a diagnosis and with one
    ids["stable"] = _add(store, 40, "P1", _prediction(0.12, "NV", "NV"), OutcomeEntry(0, STABLE, DAY))
    ids["not_excised"] = _add(store, 41, "P2", _prediction(0.33, "BKL", "BKL"), OutcomeEntry(0, STABLE, DAY, "SK"))
    # not counted: histopathology "other" (malignancy unknown), no outcome, another model's result
    _add(store, 42, "P3", _prediction(0.50, "NV", "NV"),
         OutcomeEntry(0, HISTOPATHOLOGY, DAY, "OTHER", diagnosis_text="pigmented poroma"))
    _add(store, 43, "P3", _prediction(0.50, "NV", "NV"), None)
    _add(store, 44, "P4", _prediction(0.91, "MEL", "MEL"), _histology("MEL"), identity=OTHER_MODEL)
    return ids


def test_the_clinic_record_counts_each_tier_call_flag_and_decision_against_the_outcome(tmp_path):
    store = _store(tmp_path)
    _small_clinic(store)
    record = clinic_record(store.case_records(), installed_identity=MODEL)
    assert record.pool is not None and record.pool.identity == MODEL and record.pool.installed
    assert [p.identity for p in record.other_pools] == [OTHER_MODEL]
    assert "not pooled" in record.model_text and "0.3.0-test" in record.model_text
    assert (len(record.cases), record.malignant, record.benign, record.by_histopathology) == (22, 12, 10, 20)

    # below 20 verified malignant lesions: said plainly, and the counts are still there
    assert record.malignant < JUDGE_MIN_MALIGNANT and not record.judgeable
    assert "cannot be judged yet" in record.judgement_text and "Only 12 verified malignant" in record.judgement_text

    tiers = {row.tier: row for row in record.tiers}
    # malignant ≥ 0.60 → High: 0.90 0.70 0.80 0.65 0.95 0.75 (6); 0.30–0.60: 0.45 0.40 0.50 0.35 (4); < 0.30: 0.20 0.10
    assert tiers[HIGH].malignant_found == Proportion(6, 12) and tiers[CANNOT_EXCLUDE].malignant_found == Proportion(4, 12)
    assert tiers[LOW].malignant_found == Proportion(2, 12)
    # benign: High 0.62 (1); Cannot exclude 0.35 0.40 0.33 (3); Low the other 6
    assert tiers[HIGH].benign_marked == Proportion(1, 10) and tiers[CANNOT_EXCLUDE].benign_marked == Proportion(3, 10)
    assert tiers[LOW].benign_marked == Proportion(6, 10) and tiers[HIGH].malignant_share == Proportion(6, 7)
    assert record.kept_by_net == Proportion(10, 12) and None not in tiers
    assert tiers[HIGH].malignant_found.interval == pytest.approx(wilson_interval(6, 12))

    # the call against the outcome's class: the clinical "stable" outcome has no class
    confusion = record.confusion
    assert confusion.without_class == 1 and sum(map(sum, confusion.counts)) == 21
    mel, nv = CLASSES.index("MEL"), CLASSES.index("NV")
    assert confusion.counts[mel][mel] == 3 and confusion.counts[mel][nv] == 2
    assert confusion.right == Proportion(14, 21)  # wrong: 2 MEL→NV, BCC→BKL, AKIEC→BKL, AKIEC→MEL, NV→MEL, BKL→BCC

    # flags: 7 flagged calls, 6 of them wrong; 14 unflagged, 1 wrong (AKIEC 0.10 called BKL, unflagged and Low)
    flags = record.flags
    assert flags.wrong_when_flagged == Proportion(6, 7) and flags.wrong_when_unflagged == Proportion(1, 14)
    assert flags.wrong_calls_flagged == Proportion(6, 7) and flags.low_malignant_flagged == Proportion(1, 2)

    # reliability: bins of 10 % with their counts
    bins = {round(b.low, 1): b for b in record.reliability}
    assert sum(b.count for b in record.reliability) == 22 and len(record.reliability) == 10
    assert bins[0.9].count == 2 and bins[0.9].observed == Proportion(2, 2)
    assert bins[0.3].count == 3 and bins[0.3].observed == Proportion(1, 3)    # 0.35 malignant; 0.35 and 0.33 benign
    assert bins[0.0].count == 3 and bins[0.0].observed == Proportion(0, 3)

    # the reviewers' latest decisions beside the model's High on the same cases
    reviewers = record.reviewers
    assert reviewers.decided == 15 and reviewers.model_mark == "High"   # every malignant lesion, 3 benign ones
    assert reviewers.biopsy_malignant == Proportion(7, 12) and reviewers.biopsy_benign == Proportion(1, 3)
    assert reviewers.model_malignant == Proportion(6, 12) and reviewers.model_benign == Proportion(1, 3)
    assert {(d.decision, d.malignant, d.benign) for d in reviewers.counts} == {
        ("biopsy", 7, 1), ("follow_up", 5, 0), ("disagree", 0, 2)}
    # two disagreements naming seborrheic keratosis on BKL lesions: both right; the model called one of them right
    assert reviewers.own_diagnosis_right == Proportion(2, 2) and reviewers.model_right_on_them == Proportion(1, 2)

    # only the other model's result when asked for it
    other = clinic_record(store.case_records(), installed_identity=MODEL, identity=OTHER_MODEL)
    assert len(other.cases) == 1 and other.pool is not None and not other.pool.installed
    assert "not the installed model" in other.model_text


def test_the_record_exports_a_row_per_case_and_a_pdf_that_reads_back(tmp_path):
    store = _store(tmp_path)
    _small_clinic(store)
    record = clinic_record(store.case_records(), installed_identity=MODEL)
    rows = list(csv.DictReader(io.StringIO(clinic_record_csv(record).decode("utf-8-sig"))))
    assert len(rows) == 22 and {r["model_id"] for r in rows} == {MODEL}
    first = next(r for r in rows if r["case"] == "lesion001")
    assert (first["risk_tier"], first["malignancy"], first["call"], first["manual_check"], first["malignant"]) == (
        HIGH, "0.7", "NV", "true", "malignant")
    assert first["call_right"] == "false" and first["outcome"].startswith("Histopathology result: Invasive melanoma")
    assert first["verified_by"] == "histopathology" and first["reviewer_decision"] == "Needs biopsy or excision"
    stable = next(r for r in rows if r["case"] == "lesion040")
    assert (stable["malignant"], stable["outcome_class"], stable["call_right"], stable["verified_by"]) == (
        "benign", "", "", "clinical outcome")

    pdf = clinic_record_pdf(record, "Dr Q (drq)", dt.datetime(2025, 6, 1, 9, 30, tzinfo=dt.UTC))
    reader = PdfReader(io.BytesIO(pdf))
    text = " ".join(" ".join(page.extract_text().split()) for page in reader.pages)
    for expected in ("The model's record at this clinic", "cannot be judged yet", "Risk tiers against the outcome",
                     "6 of 12, 50 % (95 % CI 25–75 %)", "The call against the outcome", "Manual-check flags",
                     "Malignancy probability against the outcome", "The reviewers' decisions", "stable at follow-up",
                     "Dr Q (drq)", "0.3.0-test"):
        assert expected in text, expected


# ------------------------------------------------------------------------------------------ the refit


def _verified(number: int, malignancy: float, malignant: bool, patient: str, truth: str | None = None) -> VerifiedCase:
    """A verified case as the record reads it from the store (the refit needs nothing else)."""
    truth = truth or ("MEL" if malignant else "NV")
    tier = TIERS.tier(malignancy, SAFETY_NET)
    return VerifiedCase(
        case_id=number, case_name=f"lesion{number}", patient_id=patient, identity=MODEL, model_version="0.3.0-test",
        probabilities=_probabilities(malignancy, truth), temperature=1.5, malignancy=malignancy, tier=tier, graded=True,
        call=truth, flagged=False, flag_reasons=(), malignant=malignant, histopathology=True, outcome_class=truth,
        outcome_text="", decision=None, decision_label="", decision_class=None)


def _synthetic_clinic(malignant: int, benign: int, seed: int = 0, low_outliers: int = 0) -> list[VerifiedCase]:
    """Malignant lesions' malignancy spread over 0.45–0.98, benign over 0.02–0.70; 80 patients with up to a few lesions
    each. `low_outliers` malignant lesions of one patient sit at 0.01–0.03: lesions the model misses."""
    rng = np.random.default_rng(seed)
    cases = [_verified(k, float(v), True, f"P{k % 80}", ("MEL", "BCC", "AKIEC")[k % 3])
             for k, v in enumerate(rng.uniform(0.45, 0.98, malignant))]
    cases += [_verified(1000 + k, float(v), False, f"P{(k * 7) % 80}", ("NV", "BKL", "DF", "VASC")[k % 4])
              for k, v in enumerate(rng.beta(1.5, 5, benign) * 0.7 + 0.02)]
    cases += [_verified(2000 + k, 0.01 + 0.005 * k, True, "P-missed") for k in range(low_outliers)]
    return cases


def test_the_refit_is_refused_below_the_minimum_counts():
    for malignant, benign in ((REFIT_MIN_MALIGNANT - 1, 150), (40, REFIT_MIN_BENIGN - 1)):
        refit = refit_levels(_synthetic_clinic(malignant, benign), NET, HIGH_LEVEL, with_temperature=False)
        assert refit.refused and refit.net_level is None and refit.folds == ()
        assert f"at least {REFIT_MIN_MALIGNANT} verified malignant and {REFIT_MIN_BENIGN} verified benign" in refit.verdict
        assert f"there are {malignant} and {benign}" in refit.verdict
        assert refit.current_kept.total == malignant  # the current levels' figures are still shown


def test_the_refit_is_refused_when_held_out_patients_would_lose_malignant_lesions():
    """Six melanomas of one patient that the model scores near zero: fitted on the other patients, no level keeps them,
    so held out by patient fewer than 95 % of the malignant lesions stay in High or Cannot exclude, even with the net
    fitted to keep them all; fitted on all cases in one go the net would look fine."""
    cases = _synthetic_clinic(34, 120, seed=1, low_outliers=6)
    refit = refit_levels(cases, NET, HIGH_LEVEL, with_temperature=False)
    assert refit.refused and refit.target == 1.0
    assert refit.cv_kept.total == 40 and refit.cv_kept.count <= 34 and refit.cv_kept.value < 0.95
    assert "fewer than 95 %" in refit.verdict and "High or Cannot exclude" in refit.verdict
    assert refit.net_level is not None and np.mean([c.malignancy >= refit.net_level for c in cases if c.malignant]) >= 0.95
    assert len(refit.folds) == 5


def test_a_refit_on_a_large_enough_clinic_passes_cross_validated_by_patient():
    cases = _synthetic_clinic(40, 130, seed=0)
    refit = refit_levels(cases, NET, HIGH_LEVEL)
    assert not refit.refused, refit.verdict
    assert refit.cv_kept.value >= 0.95 and refit.cv_kept.total == 40 and refit.cv_benign_high.total == 130
    assert refit.target is not None and 0.95 <= refit.target <= 1.0
    assert len(refit.folds) == 5 and sum(f.kept.total for f in refit.folds) == 40
    assert sum(f.benign_high.total for f in refit.folds) == 130
    patients = {c.group for c in cases}
    assert sum(f.patients for f in refit.folds) == len(patients)  # each patient held out once
    malignancy = np.asarray([c.malignancy for c in cases])
    malignant = np.asarray([c.malignant for c in cases])
    assert refit.net_level is not None and refit.high_level is not None
    assert (malignancy[malignant] >= refit.net_level).mean() >= refit.target
    assert (malignancy[~malignant] >= refit.high_level).mean() <= 0.10
    # beside the current levels, with their own Wilson intervals
    assert refit.current_net == NET and refit.current_high == HIGH_LEVEL
    assert refit.current_kept == Proportion(40, 40) and refit.current_benign_high.total == 130
    assert refit.cv_kept.interval is not None and refit.cv_kept.interval[0] < refit.cv_kept.value
    # the temperature: un-tempered with the stored 1.5 and refitted; the synthetic outcomes are mostly the most
    # probable class, so a sharper one fits them better, also held out by patient
    assert refit.temperature is not None and refit.temperature.refit is not None and refit.temperature.cases == 170
    assert refit.temperature.refit_loss is not None and refit.temperature.current_loss is not None
    assert refit.temperature.refit_loss < refit.temperature.current_loss
    assert "passes its guards" in refit.verdict


# ------------------------------------------------------------------------------------------ the page


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """A fresh data folder for the app, as tests/test_app.py makes it."""
    monkeypatch.setenv("SKINAPP_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SKINAPP_DATABASE_URL", raising=False)
    st.cache_resource.clear()
    st.cache_data.clear()
    yield tmp_path
    st.cache_resource.clear()


def test_the_clinic_page_opens_for_a_signed_in_user(data_dir):
    from test_app import REPO, _app, _page, _texts

    from skinapp.model.card import ModelCard

    installed = ModelCard.load(REPO / "weights").identity
    store = Store.open(f"sqlite:///{data_dir / 'skinapp.db'}")
    _add(store, 1, "P1", _prediction(0.8, "MEL", "MEL"), _histology("MEL"), identity=installed)
    _add(store, 2, "P1", _prediction(0.1, "NV", "NV"), _histology("NV"), identity=installed)
    store.engine.dispose()

    reviewer = _page(_app("Dr Clinic"), "clinic_record")
    texts = _texts(reviewer)
    assert "The model's record at this clinic" in texts and "cannot be judged yet" in texts
    assert "the installed model" in texts and len(reviewer.dataframe) >= 3
    assert not any(b.label == "Compute a refit" for b in reviewer.button)  # administrators only

    admin = _page(_app("Dr Admin", role="admin"), "clinic_record")
    admin.button(key="compute_refit").click().run()
    assert not admin.exception and "The refit is refused" in _texts(admin)



def test_not_excised_is_a_decision_and_verifies_nothing_unless_it_names_a_malignancy():
    import datetime as dt

    from skinapp.store.records import Outcome
    from skinapp.workflow.clinic_record import verified_malignancy

    def outcome(kind, diagnosis):
        return Outcome(1, 1, kind, dt.date(2026, 1, 5), diagnosis, None, None, None, "", "Dr A",
                       dt.datetime(2026, 1, 6, tzinfo=dt.UTC), None)

    assert verified_malignancy(outcome(NOT_EXCISED, None)) is None
    assert verified_malignancy(outcome(NOT_EXCISED, "SK")) is None       # a benign-looking lesion left in place
    assert verified_malignancy(outcome(NOT_EXCISED, "BCC")) is True      # a known carcinoma left in place
    assert verified_malignancy(outcome(STABLE, None)) is False
    assert verified_malignancy(outcome(HISTOPATHOLOGY, "MIS")) is True
