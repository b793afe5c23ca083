"""Issue 27, part 5: adopting a refit of the risk levels. The adopted levels make the installed model another model
(another identity, named in the version), are recorded in the audit trail, apply to the predictor and the flag checks,
and are undone on the record; a refused refit is never adopted, and levels never reach another model."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pytest
from test_clinic_record import HIGH_LEVEL, NET, _synthetic_clinic, data_dir  # noqa: F401  (the app's data folder)

from conftest import synthetic_lesion
from skinapp.inference.postprocess import PostProcessing
from skinapp.model.card import ModelCard, WeightsError
from skinapp.model.clinic_levels import ClinicLevels
from skinapp.store import Store
from skinapp.store.store import CLINIC_LEVELS_ADOPTED, CLINIC_LEVELS_WITHDRAWN
from skinapp.trust.risk import CANNOT_EXCLUDE, HIGH, LOW, RiskTiers
from skinapp.trust.safety_net import SafetyNet
from skinapp.workflow.clinic_record import levels_text, levels_to_adopt, refit_levels


def _graded(card: ModelCard) -> ModelCard:
    """The card with levels of its own (the test weights were never evaluated)."""
    return dataclasses.replace(card, safety_net=SafetyNet(0.2), risk_tiers=RiskTiers(0.7))


def test_adopted_levels_are_another_model_recorded_and_undoable(tmp_path, tiny_weights):
    card = _graded(ModelCard.load(tiny_weights))
    store = Store.open(f"sqlite:///{tmp_path / 'levels.db'}")
    assert store.clinic_levels(card.identity) is None

    refit = refit_levels(_synthetic_clinic(40, 130), NET, HIGH_LEVEL, with_temperature=False)
    assert not refit.refused, refit.verdict
    adopted = store.adopt_clinic_levels(levels_to_adopt(refit, card.identity, "Dr Admin"))
    assert store.clinic_levels(card.identity) == adopted
    assert (adopted.net, adopted.high, adopted.adopted_by) == (refit.net_level, refit.high_level, "Dr Admin")
    assert adopted.malignant == 40 and adopted.benign == 130 and adopted.kept_held_out >= 0.95
    assert store.clinic_levels("f" * 64) is None  # another model is untouched

    clinic = adopted.applied_to(card)
    assert clinic.identity != card.identity and clinic.members == card.members
    assert clinic.version == f"{card.version} with clinic levels of {adopted.adopted_at:%Y-%m-%d}"
    assert clinic.safety_net.threshold == adopted.net and clinic.risk_tiers.high == max(adopted.high, adopted.net)
    # the tiers follow the adopted levels: a lesion between the two nets' levels changes tier
    shipped, own = PostProcessing.from_card(card), PostProcessing.from_card(clinic)
    for malignancy in np.linspace(0.01, 0.99, 99):
        assert own.risk_tiers.tier(malignancy, own.safety_net) == (
            HIGH if malignancy >= clinic.risk_tiers.high else CANNOT_EXCLUDE if malignancy >= adopted.net else LOW)
    assert any(own.risk_tiers.tier(m, own.safety_net) != shipped.risk_tiers.tier(m, shipped.safety_net)
               for m in np.linspace(0.01, 0.99, 99))
    assert "this clinic's levels, adopted by Dr Admin" in levels_text(adopted, 0.2, 0.7)

    store.withdraw_clinic_levels(card.identity, "Dr Admin")
    assert store.clinic_levels(card.identity) is None
    assert "the model card's levels (safety net 20.0 %, High 70.0 %)" in levels_text(None, 0.2, 0.7)
    actions = [e.action for e in store.audit_entries()]
    assert actions[-2:] == [CLINIC_LEVELS_ADOPTED, CLINIC_LEVELS_WITHDRAWN]
    assert store.verify_audit().ok
    # adopted again later: the newest entry rules
    again = store.adopt_clinic_levels(levels_to_adopt(refit, card.identity, "Dr Other"))
    assert store.clinic_levels(card.identity) == again and again.adopted_by == "Dr Other"
    # every adoption stays known, withdrawn or not: the cards earlier results (a site profile's too) were made under
    assert store.clinic_levels_adopted(card.identity) == [adopted, again] and store.clinic_levels_adopted("f" * 64) == []


def test_a_refused_refit_is_never_adopted_and_levels_never_reach_another_model(tiny_weights):
    refused = refit_levels(_synthetic_clinic(20, 150), NET, HIGH_LEVEL, with_temperature=False)
    assert refused.refused
    with pytest.raises(ValueError, match="refused refit cannot be adopted"):
        levels_to_adopt(refused, "a" * 64, "Dr Admin")
    card = _graded(ModelCard.load(tiny_weights))
    levels = ClinicLevels("a" * 64, 0.1, 0.5, "Dr Admin", dt.datetime.now(dt.UTC), 40, 130, 0.97)
    with pytest.raises(WeightsError, match="not for the installed model"):
        levels.applied_to(card)
    with pytest.raises(ValueError, match="not malignancy probabilities"):
        ClinicLevels(card.identity, float("nan"), 0.5, "Dr Admin", dt.datetime.now(dt.UTC), 40, 130, 0.97)


def test_the_predictor_runs_under_the_adopted_levels_with_the_same_weights(tiny_weights):
    from skinapp.inference import Predictor

    predictor = Predictor.from_weights(tiny_weights, tta=False, gradcam=False)
    card = _graded(predictor.card)
    graded = predictor.with_card(card)
    levels = ClinicLevels(card.identity, 0.05, 0.06, "Dr Admin", dt.datetime.now(dt.UTC), 40, 130, 0.97)
    clinic = graded.with_card(levels.applied_to(card))
    assert clinic.models is predictor.models  # the loaded networks are shared, not copied
    assert predictor.identity != graded.identity != clinic.identity
    image, _ = synthetic_lesion(seed=3)
    base, own = graded.predict([image])[0], clinic.predict([image])[0]
    np.testing.assert_allclose(base.probabilities, own.probabilities)  # the same model output …
    assert own.model_version.endswith(levels.label) and own.risk_tier == levels_tier(own.malignancy, levels)
    assert base.risk_tier == card.risk_tiers.tier(base.malignancy, card.safety_net)  # … graded by each card's levels
    other = dataclasses.replace(card, members=[dataclasses.replace(card.members[0], sha256="0" * 64)])
    with pytest.raises(WeightsError, match="other weights"):
        predictor.with_card(other)


def levels_tier(malignancy: float, levels: ClinicLevels) -> str:
    return HIGH if malignancy >= max(levels.high, levels.net) else CANNOT_EXCLUDE if malignancy >= levels.net else LOW


@pytest.mark.slow  # 160 stored cases
def test_an_administrator_adopts_a_refit_on_the_clinic_page_and_returns_to_the_cards_levels(data_dir):  # noqa: F811
    from test_app import REPO, _app, _page, _texts
    from test_clinic_record import _add, _histology, _prediction

    installed = ModelCard.load(REPO / "weights")
    store = Store.open(f"sqlite:///{data_dir / 'skinapp.db'}")
    rng = np.random.default_rng(0)
    for k, value in enumerate(rng.uniform(0.45, 0.98, 40)):
        truth = ("MEL", "BCC", "AKIEC")[k % 3]
        _add(store, k, f"P{k % 60}", _prediction(float(value), truth, truth), _histology(truth), identity=installed.identity)
    for k, value in enumerate(rng.beta(1.5, 5, 120) * 0.7 + 0.02):
        truth = ("NV", "BKL", "DF", "VASC")[k % 4]
        _add(store, 100 + k, f"P{(k * 7) % 60}", _prediction(float(value), truth, truth), _histology(truth),
             identity=installed.identity)
    store.engine.dispose()

    admin = _page(_app("Dr Admin", role="admin"), "clinic_record")
    assert "New analyses use the model card's levels" in _texts(admin)
    admin.button(key="compute_refit").click().run()
    assert not admin.exception and "passes its guards" in _texts(admin)
    assert admin.button(key="adopt_levels").disabled  # not before the figures were read
    admin.checkbox(key="adopt_sure").check().run()
    admin.button(key="adopt_levels").click().run()
    assert not admin.exception
    assert "New analyses use this clinic's levels, adopted by Dr Admin" in _texts(admin)

    store = Store.open(f"sqlite:///{data_dir / 'skinapp.db'}")
    levels = store.clinic_levels(installed.identity)
    assert levels is not None and levels.applied_to(installed).identity != installed.identity
    admin.button(key="withdraw_levels").click().run()
    assert not admin.exception and "New analyses use the model card's levels" in _texts(admin)
    assert store.clinic_levels(installed.identity) is None
    actors = [e.actor for e in store.audit_entries() if e.action in (CLINIC_LEVELS_ADOPTED, CLINIC_LEVELS_WITHDRAWN)]
    assert len(actors) == 2 and all(a.startswith("Dr Admin") for a in actors)
