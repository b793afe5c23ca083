import torch

from skinapp.model.network import LesionNet, ModelConfig, attention_pool
from skinapp.vocab import METADATA_DIM, Metadata, encode_metadata

CONFIG = ModelConfig(image_size=64)


def _net() -> LesionNet:
    torch.manual_seed(0)
    return LesionNet(CONFIG, pretrained_encoder=False).eval()


def test_output_shapes_with_and_without_metadata():
    net = _net()
    image = torch.randn(3, 3, 64, 64)
    known = torch.tensor([encode_metadata(Metadata.parse(60, "male", "back"))] * 3)
    unknown = torch.tensor([encode_metadata(Metadata())] * 3)
    with torch.no_grad():
        for metadata in (known, unknown):
            out = net(image, metadata)
            assert out.logits.shape == (3, 7)
            assert out.mask_logits.shape == (3, 1, 8, 8)
            assert out.location_logits.shape == (3, 7, 8, 8)
            assert out.refined_mask.shape == (3, 7, 8, 8)
            assert out.embedding.shape == (3, CONFIG.embedding_dim)
            assert torch.allclose(out.embedding.norm(dim=1), torch.ones(3), atol=1e-5)
        assert not torch.allclose(net(image, known).logits, net(image, unknown).logits)


def test_logits_are_attention_pooled_location_logits():
    net = _net()
    with torch.no_grad():
        out = net(torch.randn(2, 3, 64, 64), torch.zeros(2, METADATA_DIM))
    weights = torch.sigmoid(out.mask_logits)
    expected = (weights * out.location_logits).sum(dim=(2, 3)) / weights.sum(dim=(2, 3))
    assert torch.allclose(out.logits, expected, atol=1e-5)
    assert torch.allclose(out.refined_mask.sum(dim=(2, 3)) / weights.sum(dim=(2, 3)), out.logits, atol=1e-5)


def test_attention_learns_from_the_classification_loss_alone():
    net = _net().train()
    out = net(torch.randn(2, 3, 64, 64), torch.zeros(2, METADATA_DIM))
    torch.nn.functional.cross_entropy(out.logits, torch.tensor([0, 3])).backward()
    assert net.mask_decoder.out.weight.grad.abs().sum() > 0


def test_attention_pool_weights_locations():
    values = torch.tensor([[[[1.0, 3.0]]]])
    assert attention_pool(values, torch.tensor([[[[1.0, 0.0]]]])).item() == 1.0
    assert attention_pool(values, torch.tensor([[[[1.0, 1.0]]]])).item() == 2.0
