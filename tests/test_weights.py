import pytest
import torch

from conftest import write_weights
from skinapp.model.checkpoint import ModelCard, WeightsError, load_ensemble, sha256_of


def test_round_trip(tmp_path):
    folder = write_weights(tmp_path / "w", members=2)
    models, card = load_ensemble(folder)
    assert len(models) == 2 and card.version == "test-untrained"
    assert not torch.equal(models[0].class_logits.weight, models[1].class_logits.weight)
    assert card.members[1].sha256 == sha256_of(folder / "fold1.safetensors")
    assert (folder / "fold0.safetensors").read_bytes()[:8] != b"\x80\x02"  # not a pickle


def test_tampered_file_is_a_clear_error(tmp_path):
    folder = write_weights(tmp_path / "w")
    path = folder / "fold0.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="does not match the model card"):
        load_ensemble(folder)


def test_missing_pieces_are_clear_errors(tmp_path):
    with pytest.raises(WeightsError, match="model_card.json is missing"):
        load_ensemble(tmp_path)
    folder = write_weights(tmp_path / "w")
    (folder / "fold0.safetensors").unlink()
    with pytest.raises(WeightsError, match="missing"):
        load_ensemble(folder)
    (folder / "model_card.json").write_text("{not json")
    with pytest.raises(WeightsError, match="not a valid model card"):
        ModelCard.load(folder)
