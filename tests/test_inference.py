import numpy as np
import pytest

from conftest import synthetic_lesion
from skinapp.inference import Predictor
from skinapp.inference.outline import lesion_outline
from skinapp.vocab import Metadata


@pytest.fixture(scope="module")
def predictor(tiny_weights):
    return Predictor.from_weights(tiny_weights, device="cpu")


def test_prediction_contents(predictor):
    images = [synthetic_lesion(90, 120, seed=s)[0] for s in range(3)]
    results = predictor.predict(images, [Metadata.parse(40, "female", "back"), None, None])
    assert len(results) == 3
    for result in results:
        assert np.isclose(result.probabilities.sum(), 1, atol=1e-5)
        assert result.view_probabilities.shape == (4, 7)
        assert np.allclose(result.view_probabilities.mean(axis=0), result.probabilities, atol=1e-5)
        assert 0 <= result.malignancy <= 1
        assert result.attention_map().shape == (90, 120)
        assert result.refined_mask().shape == (90, 120)
        cam = result.gradcam()
        assert cam.shape == (90, 120) and cam.min() >= 0 and cam.max() <= 1
        assert result.outline.mask.shape == (90, 120)
        assert np.isclose(np.linalg.norm(result.embedding), 1, atol=1e-5)
        assert result.model_version == "test-untrained"


# Each test-time view as numpy does it to an (H, W, …) image, and how a map seen in that view is mapped back.
NUMPY_VIEWS = {
    "identity": (lambda a: a, lambda m: m),
    "hflip": (lambda a: a[:, ::-1], lambda m: m[:, ::-1]),
    "vflip": (lambda a: a[::-1], lambda m: m[::-1]),
    "transpose": (lambda a: a.swapaxes(0, 1), lambda m: m.T),
    "rot90": (lambda a: np.rot90(a, 1), lambda m: np.rot90(m, -1)),
    "rot180": (lambda a: np.rot90(a, 2), lambda m: np.rot90(m, 2)),
    "rot270": (lambda a: np.rot90(a, -1), lambda m: np.rot90(m, 1)),
    "anti-transpose": (lambda a: np.rot90(a, 2).swapaxes(0, 1), lambda m: np.rot90(m, 2).T),
}


@pytest.mark.parametrize("count", [4, 8])
def test_tta_maps_are_mapped_back_to_the_image(tiny_weights, count):
    """Averaging the views inside one batch equals running each view alone and undoing it by hand."""
    image = synthetic_lesion(64, 64, seed=4)[0]
    single = Predictor.from_weights(tiny_weights, device="cpu", tta=False, gradcam=False)
    combined_predictor = Predictor.from_weights(tiny_weights, device="cpu", gradcam=False, views=count)
    names = [v.name for v in combined_predictor.views]
    assert len(names) == count == len(set(names))
    alone = {name: single.predict([np.ascontiguousarray(NUMPY_VIEWS[name][0](image))])[0] for name in names}
    manual = np.mean([NUMPY_VIEWS[name][1](alone[name].attention_grid) for name in names], axis=0)
    manual_p = np.mean([alone[name].probabilities for name in names], axis=0)
    combined = combined_predictor.predict([image])[0]
    assert combined.view_probabilities.shape == (count, 7)
    assert np.allclose(combined.attention_grid, manual, atol=1e-4)
    assert np.allclose(combined.probabilities, manual_p, atol=1e-5)


def test_batches_do_not_leak_into_each_other(predictor):
    images = [synthetic_lesion(80, 100, seed=s)[0] for s in range(3)]
    together = predictor.predict(images)
    alone = predictor.predict(images[1:2])[0]
    assert np.allclose(together[1].probabilities, alone.probabilities, atol=1e-5)


def test_gradcam_for_a_chosen_class(predictor):
    image = synthetic_lesion(70, 90)[0]
    cam = predictor.explain_class(image, "BCC")
    assert cam.shape == (70, 90) and cam.min() >= 0 and cam.max() <= 1


def test_metadata_count_must_match(predictor):
    with pytest.raises(ValueError, match="metadata"):
        predictor.predict([synthetic_lesion()[0]], [None, None])


def test_outline_finds_a_blob():
    yy, xx = np.mgrid[:20, :20]
    attention = np.where(((yy - 10) ** 2 + (xx - 8) ** 2) < 25, 0.9, 0.1)
    outline = lesion_outline(attention, 200, 200)
    x, y, w, h = outline.bbox
    assert abs(x + w / 2 - 85) < 12 and abs(y + h / 2 - 105) < 12 and 70 < w < 120
    assert 0.1 < outline.area_fraction < 0.25
    assert len(outline.contour) > 4
    flat = lesion_outline(np.full((20, 20), 0.5), 100, 100)
    assert flat.bbox is None and not flat.mask.any()
