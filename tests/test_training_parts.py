import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from conftest import synthetic_lesion
from skinapp.train.augment import AugmentConfig, augment
from skinapp.train.data import BENIGN_INDICES, BENIGN_UNSPECIFIED, make_folds, siim2020_label
from skinapp.train.losses import batch_hard_triplet_loss, focal_loss, mask_loss, partial_label_loss
from skinapp.train.sampling import drop_metadata
from skinapp.vocab import CLASSES, MALIGNANT, Metadata


def _check_folds(labels, groups, folds, n_folds):
    assert set(folds) == set(range(n_folds))
    per_group = pd.Series(folds).groupby(pd.Series(groups)).nunique()
    assert (per_group == 1).all(), "a lesion appears in two folds"


def test_folds_group_lesions_and_stratify():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(400), rng.integers(1, 4, 400))
    labels = (rng.random(400) < 0.2).astype(int)[groups]
    folds = make_folds(labels, groups, n_folds=5, seed=1)
    _check_folds(labels, groups, folds, 5)
    shares = [labels[folds == f].mean() for f in range(5)]
    assert max(shares) - min(shares) < 0.08
    assert np.array_equal(folds, make_folds(labels, groups, n_folds=5, seed=1))
    assert not np.array_equal(folds, make_folds(labels, groups, n_folds=5, seed=2))


@pytest.mark.slow  # a couple of seconds or more: the full run has it
def test_real_ham10000_folds_have_no_lesion_leakage(shared_data):
    table = pd.read_csv(shared_data / "ham10000" / "HAM10000_metadata.csv")
    folds = make_folds(table["dx"].to_numpy(), table["lesion_id"].to_numpy(), n_folds=5, seed=0)
    _check_folds(table["dx"], table["lesion_id"], folds, 5)
    for dx, count in table["dx"].value_counts().items():
        per_fold = np.bincount(folds[table["dx"].to_numpy() == dx], minlength=5)
        assert per_fold.min() >= 0.12 * count, dx


def test_augmentation_keeps_mask_on_the_lesion():
    image, mask = synthetic_lesion(150, 200)
    rng = np.random.default_rng(0)
    cfg = AugmentConfig(microscope_p=0.0, cutout_p=0.0, brightness=0.0, contrast=0.0, gamma=(1, 1), hue_degrees=0, saturation=0)
    for _ in range(10):
        out, out_mask = augment(image, mask, 96, rng, cfg)
        assert out.shape == (96, 96, 3) and out_mask.shape == (96, 96)
        dark = out.mean(axis=2) < 120
        inside = out_mask > 0.5
        agreement = (dark == inside).mean()
        assert agreement > 0.95


def test_focal_loss_reduces_to_cross_entropy():
    logits, target = torch.randn(8, 7), torch.randint(0, 7, (8,))
    assert torch.isclose(focal_loss(logits, target, gamma=0), F.cross_entropy(logits, target))
    assert focal_loss(logits, target, gamma=2) < F.cross_entropy(logits, target)


def test_a_partial_benign_label_asks_only_for_benign_mass_and_never_for_a_particular_benign_class():
    logits, target = torch.randn(8, 7), torch.randint(0, 7, (8,))
    assert torch.isclose(partial_label_loss(logits, target, 0.0, BENIGN_UNSPECIFIED, BENIGN_INDICES),
                         F.cross_entropy(logits, target))
    unspecified = torch.full((8,), BENIGN_UNSPECIFIED)
    benign_mass = logits.softmax(1)[:, list(BENIGN_INDICES)].sum(1)
    assert torch.isclose(partial_label_loss(logits, unspecified, 0.0, BENIGN_UNSPECIFIED, BENIGN_INDICES),
                         -benign_mass.log().mean())
    # moving probability from one benign class to another changes nothing; moving it to melanoma costs
    one = torch.zeros(1, 7)
    nevus, keratosis, melanoma = (one.clone() for _ in range(3))
    nevus[0, CLASSES.index("NV")], keratosis[0, CLASSES.index("BKL")], melanoma[0, CLASSES.index("MEL")] = 4.0, 4.0, 4.0
    loss = [partial_label_loss(x, torch.tensor([BENIGN_UNSPECIFIED]), 0.0, BENIGN_UNSPECIFIED, BENIGN_INDICES)
            for x in (nevus, keratosis, melanoma)]
    assert torch.isclose(loss[0], loss[1]) and loss[2] > loss[0] + 1
    assert not set(BENIGN_INDICES) & {CLASSES.index(c) for c in MALIGNANT}


def test_siim_isic_2020_rows_keep_what_their_diagnosis_says_and_no_more():
    assert siim2020_label("melanoma", "malignant") == CLASSES.index("MEL")
    assert siim2020_label("nevus", "benign") == CLASSES.index("NV")
    assert siim2020_label("lentigo NOS", "benign") == CLASSES.index("BKL")
    assert siim2020_label("unknown", "benign") == BENIGN_UNSPECIFIED
    with pytest.raises(ValueError, match="cafe-au-lait"):
        siim2020_label("cafe-au-lait macule", "malignant")


def test_mask_loss_prefers_the_true_mask():
    target = torch.zeros(1, 1, 32, 32)
    target[..., 8:24, 8:24] = 1
    good = (F.interpolate(target, size=(8, 8), mode="area") * 20 - 10)
    assert mask_loss(good, target) < 0.1 < mask_loss(-good, target)


def test_triplet_loss_zero_when_classes_are_apart():
    labels = torch.tensor([0, 0, 1, 1])
    apart = F.normalize(torch.tensor([[1.0, 0], [1, 0.01], [-1, 0], [-1, 0.01]]), dim=1)
    mixed = F.normalize(torch.tensor([[1.0, 0], [-1, 0], [1, 0.01], [-1, 0.01]]), dim=1)
    assert batch_hard_triplet_loss(apart, labels) == 0
    assert batch_hard_triplet_loss(mixed, labels) > 1


def test_metadata_dropout_hides_fields():
    meta = Metadata.parse(50, "male", "face")
    rng = np.random.default_rng(0)
    seen = [drop_metadata(meta, rng, 0.3) for _ in range(500)]
    assert any(m.is_empty for m in seen) and any(m == meta for m in seen)
    assert any(m.site.region == "head/neck" and m.site.fine is None for m in seen)
    assert drop_metadata(meta, rng, 0.0) == meta


def test_sampling_balances_classes_then_data_sets_within_a_class():
    from skinapp.train.sampling import sampling_weights

    labels = np.array([0] * 900 + [0] * 100 + [1] * 50)
    sources = np.array(["ham"] * 900 + ["isic"] * 100 + ["ham"] * 50)
    p = sampling_weights(labels, sources, class_power=1.0, source_power=0.5)
    assert np.isclose(p.sum(), 1)
    assert np.isclose(p[labels == 0].sum(), 0.5) and np.isclose(p[labels == 1].sum(), 0.5)  # classes balanced
    ham, isic = p[(labels == 0) & (sources == "ham")].sum(), p[(labels == 0) & (sources == "isic")].sum()
    assert np.isclose(ham / isic, np.sqrt(900) / np.sqrt(100))  # within a class: ∝ count^(1 - 0.5)
    assert np.allclose(p[:900], p[0]) and np.allclose(p[900:1000], p[900])  # equal within a cell
    natural = sampling_weights(labels, sources, class_power=0.0, source_power=0.0)
    assert np.allclose(natural, 1 / len(labels))


def test_structure_supervision_reads_only_labelled_pairs_and_the_marked_global_pattern(tmp_path):
    from skinapp.train.structure_aux import StructureAux, positive_weights
    from skinapp.train.structures import GLOBAL_PATTERNS, read_structure_labels
    from skinapp.vocab import STRUCTURES

    (tmp_path / "structures_isic2016_weak.csv").write_text(
        "image_id,globular,homogeneous,reticular,streaks,blue_white_veil,vascular,hypopigmentation,regression,unspecific\n"
        "A,0,0,2,1,0,0,0,0,1\n"      # a reticular global pattern
        "B,2,0,2,0,0,0,0,0,0\n"      # two marked: no single global pattern
        "C,1,0,0,0,1,0,0,1,0\n")     # none marked
    labels = read_structure_labels(tmp_path)
    assert list(labels.global_pattern) == [GLOBAL_PATTERNS.index("reticular"), -1, -1]
    assert labels.present[0, STRUCTURES.index("streaks")] and labels.present[2, STRUCTURES.index("blue_white_veil")]

    present = np.full((4, len(STRUCTURES)), np.nan, np.float32)
    present[:2] = labels.present[:2]
    assert positive_weights(present)[STRUCTURES.index("pigment_network")] == 0  # 2 of 2 present: no negatives
    torch.manual_seed(0)
    aux = StructureAux(8, positive_weights(present), with_pattern=True)
    features = [torch.randn(4, 4, 8, 8), torch.randn(4, 4, 4, 4)]
    mask = torch.randn(4, 1, 16, 16)
    pattern = torch.tensor([0, -1, -1, -1])
    loss = aux.loss(features, mask, torch.from_numpy(present), pattern)
    moved = [features[0].clone(), features[1].clone()]
    moved[0][2:], moved[1][2:] = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 4, 4)  # the unlabelled images change
    assert torch.isclose(aux.loss(moved, mask, torch.from_numpy(present), pattern), loss)
    nothing = torch.full((4, len(STRUCTURES)), float("nan"))
    assert aux.loss(features, mask, nothing, torch.full((4,), -1)).item() == 0.0


def test_the_partial_benign_label_is_sampled_as_its_own_class_within_the_nevi_or_at_a_set_share(tmp_path):
    from skinapp.train.config import TrainConfig
    from skinapp.train.data import LabelledImages
    from skinapp.train.sampling import sample_epoch

    nevus, melanoma = CLASSES.index("NV"), CLASSES.index("MEL")
    labels = np.array([nevus] * 60 + [melanoma] * 20 + [BENIGN_UNSPECIFIED] * 300)
    sources = np.array(["ham10000"] * 80 + ["siim2020"] * 300)
    data = LabelledImages([str(i) for i in range(len(labels))], np.arange(len(labels)).astype(str), labels,
                          [], None, [], np.zeros((len(labels), 1), np.float32), sources)
    rng = np.random.default_rng(0)
    share = {}
    for mode in ("own_class", "with_nevi"):
        cfg = TrainConfig(data=tmp_path, out=tmp_path, partial_sampling=mode)
        drawn = labels[sample_epoch(data, np.arange(len(labels)), rng, cfg, 30000)]
        share[mode] = {k: float((drawn == k).mean()) for k in (nevus, melanoma, BENIGN_UNSPECIFIED)}
    assert abs(share["own_class"][BENIGN_UNSPECIFIED] - 1 / 3) < 0.02  # a class of its own among three
    assert abs(share["with_nevi"][melanoma] - 0.5) < 0.02               # the nevi's half, shared with it
    assert abs(share["with_nevi"][nevus] + share["with_nevi"][BENIGN_UNSPECIFIED] - 0.5) < 0.02
    with pytest.raises(ValueError, match="partial_sampling"):
        sample_epoch(data, np.arange(len(labels)), rng, TrainConfig(data=tmp_path, out=tmp_path, partial_sampling="x"), 10)

    cfg = TrainConfig(data=tmp_path, out=tmp_path, partial_share=0.1)
    drawn = labels[sample_epoch(data, np.arange(len(labels)), rng, cfg, 30000)]
    assert abs((drawn == BENIGN_UNSPECIFIED).mean() - 0.1) < 0.01
    assert abs((drawn == melanoma).mean() - 0.45) < 0.015  # the rest keep their balance
    assert cfg.recipe()["partial_share"] == 0.1 and "partial_share" not in TrainConfig(data=tmp_path, out=tmp_path).recipe()
    with pytest.raises(ValueError, match="share"):
        sample_epoch(data, np.arange(len(labels)), rng, TrainConfig(data=tmp_path, out=tmp_path, partial_share=1.5), 10)


def test_a_screening_population_can_give_its_melanomas_a_set_share_of_its_own_draws(tmp_path):
    from skinapp.train.config import TrainConfig
    from skinapp.train.data import LabelledImages
    from skinapp.train.sampling import sample_epoch

    nevus, melanoma = CLASSES.index("NV"), CLASSES.index("MEL")
    labels = np.array([nevus] * 600 + [melanoma] * 200 + [BENIGN_UNSPECIFIED] * 300 + [melanoma] * 4)
    sources = np.array(["ham10000"] * 800 + ["siim2020"] * 304)
    data = LabelledImages([str(i) for i in range(len(labels))], np.arange(len(labels)).astype(str), labels,
                          [], None, [], np.zeros((len(labels), 1), np.float32), sources)
    draws = {}
    for share in (None, 0.3):
        cfg = TrainConfig(data=tmp_path, out=tmp_path, partial_source_malignant_share=share)
        drawn = sample_epoch(data, np.arange(len(labels)), np.random.default_rng(0), cfg, 60000)
        draws[share] = (sources[drawn] == "siim2020", labels[drawn] == melanoma)
    plain_siim, plain_mel = draws[None]
    siim, mel = draws[0.3]
    assert (mel & siim).sum() / siim.sum() == pytest.approx(0.3, abs=0.01)
    assert (plain_mel & plain_siim).sum() / plain_siim.sum() < 0.15         # as balanced sampling gives it
    assert siim.mean() == pytest.approx(plain_siim.mean(), abs=0.01)       # the data set is drawn as often as before
    assert (mel & ~siim).sum() / (~siim).sum() == pytest.approx((plain_mel & ~plain_siim).sum() / (~plain_siim).sum(),
                                                                 abs=0.015)  # the other data sets keep their balance
    assert TrainConfig(data=tmp_path, out=tmp_path, partial_source_malignant_share=0.3).recipe()[
        "partial_source_malignant_share"] == 0.3
    without_melanomas = LabelledImages([str(i) for i in range(1100)], np.arange(1100).astype(str), labels[:1100], [],
                                       None, [], np.zeros((1100, 1), np.float32), sources[:1100])
    cfg = TrainConfig(data=tmp_path, out=tmp_path, partial_source_malignant_share=0.3)
    drawn = sample_epoch(without_melanomas, np.arange(1100), np.random.default_rng(0), cfg, 30000)
    assert (sources[drawn] == "siim2020").mean() == pytest.approx(1 / 3, abs=0.015)  # a fold without its melanomas
