import json

import pytest
import torch

from conftest import write_weights
from skinapp.model.checkpoint import ModelCard, WeightsError, load_ensemble, sha256_of
from skinapp.model.network import LesionNet, ModelConfig


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
    card.metrics = {"with_metadata": {"balanced_accuracy": 0.5}}
    assert card.identity == base  # measuring a model does not make it another model
    for change in (lambda c: c.calibration.update(temperature=0.7), lambda c: setattr(c, "tta_views", 8),
                   lambda c: c.decision_rule.update(tau=0.5, prior=[1 / 7] * 7),
                   lambda c: c.preprocessing.update(colour_constancy="shades_of_gray"),
                   lambda c: c.flag_policy.update(check_threshold=0.3)):
        changed = ModelCard.load(folder)
        change(changed)
        assert changed.identity != base


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
    ("preprocessing", {"colour_constancy": "retinex"}, "not valid"),
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
