import dataclasses
import json
from pathlib import Path

import pytest
import torch

from conftest import write_weights
from skinapp.model.card import CARD_SCHEMA, Calibration, ModelCard, WeightsError, sha256_of
from skinapp.model.checkpoint import load_ensemble
from skinapp.model.measured import CardMetrics
from skinapp.model.network import LesionNet, ModelConfig
from skinapp.model.preprocess import ANTIALIASED_RESIZE, Preprocessing
from skinapp.trust.conformal import ConformalSets
from skinapp.trust.decision import DecisionRule
from skinapp.trust.flags import FlagPolicy
from skinapp.trust.safety_net import SafetyNet


def test_round_trip(tmp_path):
    folder = write_weights(tmp_path / "w", members=2)
    models, card = load_ensemble(folder)
    assert len(models) == 2 and card.version == "test-untrained"
    assert not torch.equal(models[0].class_logits.weight, models[1].class_logits.weight)
    assert card.members[1].sha256 == sha256_of(folder / "fold1.safetensors")
    raw = (folder / "fold0.safetensors").read_bytes()
    header_length = int.from_bytes(raw[:8], "little")  # safetensors: 8-byte length, then a JSON header
    header = json.loads(raw[8:8 + header_length])
    assert "class_logits.weight" in header and header["__metadata__"]["config"]


def test_a_pickled_checkpoint_is_refused_even_with_a_matching_card(tmp_path):
    """A plain torch.save file (a pickle inside a zip) under the weights' name is never unpickled."""
    folder = write_weights(tmp_path / "w")
    path = folder / "fold0.safetensors"
    torch.save(LesionNet(ModelConfig(image_size=64), pretrained_encoder=False).state_dict(), path)
    card = ModelCard.load(folder)
    card.members[0].sha256 = sha256_of(path)  # someone also rewrote the card
    card.save(folder)
    with pytest.raises(WeightsError, match="not a safetensors file"):
        load_ensemble(folder)


def test_tampered_file_is_a_clear_error(tmp_path):
    folder = write_weights(tmp_path / "w")
    path = folder / "fold0.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="does not match the model card"):
        load_ensemble(folder)


def test_missing_pieces_are_clear_errors(tmp_path):
    with pytest.raises(WeightsError, match=r"model_card\.json is missing"):
        load_ensemble(tmp_path)
    folder = write_weights(tmp_path / "w")
    (folder / "fold0.safetensors").unlink()
    with pytest.raises(WeightsError, match="missing"):
        load_ensemble(folder)
    (folder / "model_card.json").write_text("{not json")
    with pytest.raises(WeightsError, match="not a valid model card"):
        ModelCard.load(folder)


def test_model_identity_follows_what_changes_outputs_and_not_the_figures(tiny_weights, tmp_path):
    import shutil

    folder = tmp_path / "w"
    shutil.copytree(tiny_weights, folder)
    card = ModelCard.load(folder)
    base = card.identity
    card.metrics = CardMetrics.from_dict(json.loads(SCHEMA_2_CARD.read_text())["metrics"])
    assert card.metrics.evaluated
    assert card.identity == base  # measuring a model does not make it another model
    for change in (dict(calibration=Calibration(0.7)), dict(tta_views=8),
                   dict(decision_rule=DecisionRule((1 / 7,) * 7, 0.5)),
                   dict(preprocessing=Preprocessing(64, "shades_of_gray")),
                   dict(preprocessing=Preprocessing(64, resize=ANTIALIASED_RESIZE)),
                   dict(flag_policy=dataclasses.replace(FlagPolicy.provisional(), check_threshold=0.3)),
                   dict(conformal=ConformalSets(threshold=0.8)), dict(safety_net=SafetyNet(threshold=0.2))):
        changed = dataclasses.replace(ModelCard.load(folder), **change)
        assert changed.identity != base, change
        changed.save(folder / "..")
        assert ModelCard.load(folder / "..").identity == changed.identity  # the identity survives a save


SCHEMA_2_CARD = Path(__file__).parent / "data" / "model_card_0.2.0_schema2.json"  # the 0.2.0 card as it shipped
SCHEMA_2_IDENTITY = "52417f709d5a78e2d8a8fe93702f9888d38edf915db2ab8d5eb7af2f4c33e3dd"  # what its results were stored under


def test_the_schema_2_card_keeps_its_identity_through_the_migration(tmp_path):
    """Results stored under model 0.2.0 stay bound to it: reading its schema-2 card changes no identity."""
    (tmp_path / "model_card.json").write_text(SCHEMA_2_CARD.read_text())
    card = ModelCard.load(tmp_path)
    assert card.schema == CARD_SCHEMA and card.identity == SCHEMA_2_IDENTITY
    raw = json.loads(SCHEMA_2_CARD.read_text())
    assert card.calibration == Calibration(raw["calibration"]["temperature"], raw["calibration"]["method"])
    assert card.metrics.calibration is not None
    assert card.metrics.calibration.ece_after == raw["calibration"]["ece_after"]  # measured figures kept
    card.save(tmp_path)  # and written as schema 3, still the same model
    assert ModelCard.load(tmp_path).identity == SCHEMA_2_IDENTITY


@pytest.mark.parametrize("schema, message", [(CARD_SCHEMA + 1, "newer than this skinapp"), (1, "before typed cards"),
                                             ("3", "schema is not a number")])
def test_a_card_of_an_unknown_schema_is_refused_in_plain_words(tiny_weights, tmp_path, schema, message):
    raw = json.loads((tiny_weights / "model_card.json").read_text())
    raw["schema"] = schema
    (tmp_path / "model_card.json").write_text(json.dumps(raw))
    with pytest.raises(WeightsError, match=message):
        ModelCard.load(tmp_path)


@pytest.mark.slow  # a couple of seconds or more: the full run has it
def test_reading_the_card_does_not_load_torch():
    import subprocess
    import sys

    code = ("import sys; from skinapp.model.card import ModelCard; import skinapp.inference.postprocess, "
            "skinapp.store, skinapp.reporting.model_card, skinapp.workflow.reports; "
            "ModelCard.load('weights') if __import__('pathlib').Path('weights/model_card.json').is_file() else None; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_a_card_with_another_class_order_or_metadata_encoding_is_refused(tiny_weights, tmp_path):
    import json
    import shutil

    for field, value in (("classes", ["NV", "MEL", "BCC", "AKIEC", "BKL", "DF", "VASC"]),
                         ("metadata_encoding", {"dim": 3, "layout": ["age"]})):
        folder = tmp_path / field
        shutil.copytree(tiny_weights, folder)
        raw = json.loads((folder / "model_card.json").read_text())
        raw[field] = value
        (folder / "model_card.json").write_text(json.dumps(raw))
        with pytest.raises(WeightsError, match=r"classes|metadata encoding"):
            ModelCard.load(folder)


@pytest.mark.parametrize("field, value, message", [
    ("tta_views", 5, "test-time views"),
    ("preprocessing", {"colour_constancy": "retinex"}, "not a valid model card: unknown colour constancy"),
    ("decision_rule", {"prior": [0.5, 0.5], "tau": 1.0}, "one prior per class"),
])
def test_a_malformed_card_is_refused_with_the_reason(tiny_weights, tmp_path, field, value, message):
    import shutil

    folder = tmp_path / "w"
    shutil.copytree(tiny_weights, folder)
    raw = json.loads((folder / "model_card.json").read_text())
    raw[field] = value
    (folder / "model_card.json").write_text(json.dumps(raw))
    with pytest.raises(WeightsError, match=message):
        ModelCard.load(folder)
