"""Issue 28: dermoscopic structures. The head's per-location logits pool to its image logit; the heads travel in a
checked file the card describes; the predictor reports calibrated probabilities and maps that the store keeps and
`predict --format full` writes; the fit measures held out against a baseline and calibrates; the case page lists only
structures measured well enough; the worklist filters by one; the contrast map is not the plain one."""

from __future__ import annotations

import csv
import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import synthetic_lesion
from skinapp.model.card import ModelCard, WeightsError, sha256_of
from skinapp.model.structure_card import StructureFigures, StructureSection
from skinapp.model.structures import LinearStructureHead, load_heads, pooled, save_heads
from skinapp.reporting.structure_text import structure_lines
from skinapp.train.structures import MemberFeatures, StructureLabels, calibration_error, measure, platt
from skinapp.vocab import STRUCTURES


def _random_head(channels: int, seed: int = 0) -> LinearStructureHead:
    rng = np.random.default_rng(seed)
    return LinearStructureHead(rng.normal(size=channels).astype(np.float32),
                               rng.uniform(0.5, 2, channels).astype(np.float32),
                               rng.normal(scale=0.05, size=(len(STRUCTURES), channels)).astype(np.float32),
                               rng.normal(size=len(STRUCTURES)).astype(np.float32))


def _section(file: str, sha256: str, aucs: tuple[float, ...] = (0.8, 0.75, 0.72, 0.9, 0.65, 0.71)) -> StructureSection:
    figures = tuple(StructureFigures(s, (1.0, 0.0), auc, auc - 0.05, auc + 0.05, auc - 0.1, 50, 0.03, auc >= 0.70)
                    for s, auc in zip(STRUCTURES, aucs, strict=True))
    return StructureSection(file, sha256, figures, 746, 5, 3, 0.70, "test labels")


def test_pooling_the_location_logits_gives_the_head_on_the_pooled_features():
    """Why the head can be fitted as a regression on pooled features and still draw a map: the pooling is linear."""
    torch.manual_seed(0)
    features, weights = torch.randn(3, 12, 5, 5), torch.rand(3, 5, 5)
    head = _random_head(12)
    from_map = pooled(head.location_logits(features), weights).numpy()
    from_pooled = head.pooled_logits(pooled(features, weights).numpy())
    np.testing.assert_allclose(from_map, from_pooled, rtol=1e-4, atol=1e-4)


def test_heads_round_trip_and_a_file_for_other_structures_is_refused(tmp_path):
    heads = [_random_head(12, seed) for seed in range(2)]
    save_heads(heads, tmp_path / "s.safetensors")
    loaded = load_heads(tmp_path / "s.safetensors", 2)
    for a, b in zip(heads, loaded, strict=True):
        np.testing.assert_array_equal(a.weight, b.weight)
        np.testing.assert_array_equal(a.bias, b.bias)
    with pytest.raises(ValueError, match="no structure head for member 2"):
        load_heads(tmp_path / "s.safetensors", 3)
    short = [dataclasses.replace(h, weight=h.weight[:4], bias=h.bias[:4]) for h in heads]
    save_heads(short, tmp_path / "short.safetensors")
    with pytest.raises(ValueError, match="reads 4 structures"):
        load_heads(tmp_path / "short.safetensors", 2)


def test_a_section_round_trips_and_must_name_the_structures_in_order():
    section = _section("structures.safetensors", "a" * 64)
    assert StructureSection.from_dict(section.to_dict()) == section
    assert StructureSection.from_dict(None) is None
    assert [f.structure for f in section.shown] == ["pigment_network", "dots_globules", "streaks", "blue_white_veil",
                                                    "vascular"]
    with pytest.raises(ValueError, match="not"):
        dataclasses.replace(section, figures=section.figures[::-1])


@pytest.fixture
def weights_with_structures(tiny_weights, tmp_path) -> Path:
    folder = tmp_path / "weights"
    shutil.copytree(tiny_weights, folder)
    card = ModelCard.load(folder)
    from skinapp.model.checkpoint import load_member
    from skinapp.model.structures import structure_features

    net = load_member(folder, card.members[0], card.config)
    with torch.no_grad():
        channels = structure_features(net.encode(torch.zeros(1, 3, 64, 64))).shape[1]
    save_heads([_random_head(channels)], folder / "structures.safetensors")
    card.structures = _section("structures.safetensors", sha256_of(folder / "structures.safetensors"))
    card.save(folder)
    return folder


def test_the_predictor_reports_calibrated_structures_and_maps_that_the_store_keeps(weights_with_structures, tiny_weights,
                                                                                      tmp_path):
    from skinapp.inference import Predictor
    from skinapp.store import Store

    assert ModelCard.load(weights_with_structures).identity != ModelCard.load(tiny_weights).identity
    predictor = Predictor.from_weights(weights_with_structures, gradcam=False)
    image, _ = synthetic_lesion(seed=4)
    prediction = predictor.predict([image])[0]
    assert prediction.structures is not None and prediction.structures.shape == (len(STRUCTURES),)
    assert ((prediction.structures > 0) & (prediction.structures < 1)).all()
    assert prediction.structure_grids is not None and prediction.structure_grids.shape[0] == len(STRUCTURES)
    assert prediction.structure_grids.min() >= 0 and prediction.structure_grids.max() <= 1
    seen = prediction.structure_map("streaks")
    assert seen is not None and seen.shape == image.shape[:2]
    # the same image turned: the views are mapped back, so the probabilities barely move
    turned = predictor.predict([np.ascontiguousarray(np.rot90(image))])[0]
    np.testing.assert_allclose(turned.structures, prediction.structures, atol=0.05)

    store = Store.open(f"sqlite:///{tmp_path / 's.db'}")
    from skinapp.io.case import Case

    case_id = store.add_case(Case(name="s", image=image, source="s.png", image_name="s"), "tester").id
    store.add_prediction(case_id, prediction, [], predictor.identity, "tester")
    stored = store.latest_prediction(case_id)
    np.testing.assert_allclose(stored.structures, prediction.structures)
    np.testing.assert_allclose(stored.structure_grids, prediction.structure_grids)

    plain = Predictor.from_weights(tiny_weights, gradcam=False).predict([image])[0]
    assert plain.structures is None and plain.structure_probabilities() == {}


def test_an_altered_heads_file_is_refused(weights_with_structures):
    from skinapp.inference import Predictor

    path = weights_with_structures / "structures.safetensors"
    path.write_bytes(path.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(WeightsError, match="does not match"):
        Predictor.from_weights(weights_with_structures)


def test_predict_full_writes_a_probability_column_per_structure(weights_with_structures, tmp_path):
    from skinapp.cli.main import main

    image, _ = synthetic_lesion(seed=5)
    import cv2

    cv2.imwrite(str(tmp_path / "lesion.png"), image[:, :, ::-1])
    out = tmp_path / "out.csv"
    assert main(["predict", str(tmp_path / "lesion.png"), "--weights", str(weights_with_structures), "--format", "full",
                 "--out", str(out)]) == 0
    (row,) = list(csv.DictReader(out.open()))
    for s in STRUCTURES:
        assert 0 < float(row[f"structure_{s}"]) < 1
    assert "shape_asymmetric_axes" in row and "asymmetric_axes" not in row


def _synthetic_features(n: int = 240, seed: int = 0) -> tuple[MemberFeatures, StructureLabels]:
    """Two members, two views. The lesion-weighted features carry each structure's signal; the plain ones none."""
    rng = np.random.default_rng(seed)
    present = rng.random((n, len(STRUCTURES))) < 0.3
    signal = present.astype(float) * 1.5
    weighted = rng.normal(size=(2, n, 2, 16))
    weighted[..., :len(STRUCTURES)] += signal[None, :, None, :]
    plain = rng.normal(size=(2, n, 2, 8))
    return MemberFeatures(weighted, plain), StructureLabels([f"img{k}" for k in range(n)], present)


@pytest.mark.slow  # a couple of seconds or more: the full run has it
def test_the_fit_is_measured_held_out_against_the_baseline_and_calibrated():
    features, labels = _synthetic_features()
    measures = measure(features, labels, seeds=(0, 1))
    for m in measures:
        assert m.auc > 0.85 and m.auc_low < m.auc < m.auc_high and len(m.auc_by_seed) == 2
        assert abs(m.baseline_auc - 0.5) < 0.12  # the baseline's features carry nothing
        assert m.ece_after < 0.08 and m.ece_after < m.ece_before  # Platt makes the balanced head's output a probability
        assert m.shown
    logits = np.linspace(-3, 3, 50)
    assert calibration_error(platt(logits, 1.0, 0.0), (logits > 0).astype(float)) < 0.5


def test_only_structures_measured_well_enough_are_listed_and_the_rest_are_named():
    from skinapp.inference.prediction import Prediction

    probabilities = np.array([0.9, 0.2, 0.6, 0.1, 0.95, 0.3])
    prediction = Prediction(probabilities=np.full(7, 1 / 7), view_probabilities=np.full((1, 7), 1 / 7),
                            embedding=np.ones(4), attention_grid=np.ones((4, 4)), refined_grid=np.zeros((4, 4)),
                            gradcam_grid=None, image_size=(40, 40), model_version="t", structures=probabilities)
    lines, caption = structure_lines(prediction, _section("f", "a" * 64))
    assert [line.structure for line in lines] == ["pigment_network", "streaks", "vascular", "dots_globules",
                                                  "blue_white_veil"]  # regression (AUC 0.65) left out
    assert [line.likely for line in lines] == [True, True, False, False, False]
    assert lines[0].probability == "90 %" and "measured AUC 0.80" in lines[0].auc
    assert "Regression structures" in caption and "below 0.70" in caption and "not a 7-point" in caption
    assert structure_lines(prediction, None) == ([], "")


def test_the_worklist_filters_by_a_structure_the_model_sees():
    from skinapp.workflow.worklist import structure_seen

    class Result:
        def __init__(self, values):
            self.values = values

        def structure_probabilities(self):
            return self.values

    assert structure_seen(Result({"streaks": 0.5}), "streaks")
    assert not structure_seen(Result({"streaks": 0.49}), "streaks")
    assert not structure_seen(Result({}), "streaks") and not structure_seen(None, "streaks")


def test_the_contrast_map_differs_from_the_plain_map(tiny_weights):
    from skinapp.inference import Predictor

    predictor = Predictor.from_weights(tiny_weights)
    image, _ = synthetic_lesion(seed=6)
    prediction = predictor.predict([image])[0]
    top, runner_up = prediction.predicted_class, prediction.runner_up_class
    assert top != runner_up
    plain = predictor.explain_class(image, top)
    contrast = predictor.explain_class(image, top, against=runner_up)
    assert plain.shape == contrast.shape == image.shape[:2]
    assert not np.allclose(plain, contrast, atol=1e-3)


def test_the_structure_layer_offers_only_structures_shown_to_clinicians(tiny_weights):
    from types import SimpleNamespace

    from skinapp.reporting.overlay import STRUCTURE_LAYER
    from skinapp.workflow import case_view as view

    card = ModelCard.load(tiny_weights)
    card.structures = _section("f", "a" * 64)
    result = SimpleNamespace(structures=np.full(len(STRUCTURES), 0.5), weights_sha256=card.identity)
    shown = view.shown_structures(result, card, None)
    assert "regression" not in shown and len(shown) == 5  # AUC 0.65: not offered on the image either
    assert STRUCTURE_LAYER in view.layers_of(result, shown)
    assert view.shown_structures(SimpleNamespace(structures=result.structures, weights_sha256="b" * 64), card, None) == ()
    assert STRUCTURE_LAYER not in view.layers_of(result, ())
