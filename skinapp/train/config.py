"""`TrainConfig`: every option of a training run, and the recipe (the options members must share to form one
ensemble)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from skinapp.model.card import ModelCard
from skinapp.model.preprocess import ANTIALIASED_RESIZE, Preprocessing

# What must match for members trained in different runs to form one ensemble.
RECIPE_FIELDS = (
    "encoder", "image_size", "epochs", "batch_size", "lr", "weight_decay", "n_folds", "seed", "focal_gamma",
    "sampler_power", "source_power", "mask_weight", "triplet_weight", "metadata_dropout", "ema_decay",
    "colour_constancy", "scale", "aspect", "illuminant", "clahe", "select", "with_isic2017", "limit",
    "steps_per_epoch", "resize", "degrade_p",
)


DEFAULT_WARMUP_STEPS = 200


def members_digest(folder: Path) -> str:
    """sha256 over the weight files an ensemble's card lists: which members a fine-tuning run started from."""
    return hashlib.sha256(" ".join(m.sha256 for m in ModelCard.load(Path(folder)).members).encode()).hexdigest()


@dataclass
class TrainConfig:
    data: Path
    out: Path
    isic2017: Path | None = None  # ISIC 2017 folder: its `train` split joins every member's training set
    siim2020: Path | None = None  # SIIM-ISIC 2020 JPEG folder: its patients are split over the folds like HAM's lesions
    partial_sampling: str = "own_class"  # the partial label 'benign' in class-balanced sampling: "own_class", or
    #                                      "with_nevi" (drawn within the nevus class's share, as one more data set)
    partial_share: float | None = None  # the partial label's share of the draws (None: what the sampling mode gives)
    partial_source_malignant_share: float | None = None  # in a data set carrying the partial label, its malignant
    #                                                       images' share of that data set's draws (None: as sampled;
    #                                                       applied after partial_share, which it then shifts a little)
    init_from: Path | None = None  # an ensemble folder: each member starts from its member of the same fold
    #                                (fine-tuning; its folds are kept), not from ImageNet
    encoder: str = "lite0"
    image_size: int = 160
    epochs: int = 10
    batch_size: int = 32
    lr: float = 8e-4
    weight_decay: float = 1e-2
    warmup_steps: int = DEFAULT_WARMUP_STEPS
    n_folds: int = 5
    folds: tuple[int, ...] = (0,)
    seed: int = 0
    focal_gamma: float = 0.0     # 0 = cross-entropy (the issue-2 ablation's best with balanced sampling)
    sampler_power: float = 1.0   # class sampling weight ∝ count^-power: 0 = natural, 1 = balanced
    source_power: float = 0.5    # within a class, data sets weighted ∝ count^(1-power): 1 = each source equally
    mask_weight: float = 1.0     # 0 = the attention mask learns without supervision
    triplet_weight: float = 0.1
    metadata_dropout: float = 0.3
    ema_decay: float = 0.998
    colour_constancy: str = "shades_of_gray"
    scale: tuple[float, float] = (0.8, 1.3)
    aspect: tuple[float, float] = (0.75, 1.333)
    illuminant: float = 0.08
    clahe: float = 0.0
    resize: str = ANTIALIASED_RESIZE  # preprocess.RESIZE_METHODS; training views are shrunk the same way (antialiased)
    degrade_p: float = 0.5       # share of training views resampled / blurred / sharpened / recompressed first
    structure_weight: float = 0.0  # > 0: structure supervision while training (ISIC 2017 `train`'s weak labels)
    structure_pattern: bool = True  # … with the global pattern as a further target
    structure_holdout_fold: int | None = None  # labels of this fold of the 746 (5 folds, `seed`) withheld, to measure
    select: str = "last"         # "last": fixed schedule, nothing chosen on the held-out fold; "best": best epoch
    patience: int = 3            # only with select="best"
    half: bool = True            # store members as fp16
    limit: int | None = None
    steps_per_epoch: int | None = None
    threads: int | None = None

    @property
    def with_isic2017(self) -> bool:
        return self.isic2017 is not None

    @property
    def with_siim2020(self) -> bool:
        return self.siim2020 is not None

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing(image_size=self.image_size, colour_constancy=self.colour_constancy, resize=self.resize)

    def recipe(self) -> dict:
        recipe = {name: jsonable(getattr(self, name)) for name in RECIPE_FIELDS}
        if self.with_siim2020:  # only when set, so that recipes recorded before the option still match
            recipe["with_siim2020"] = True
        if self.partial_sampling != "own_class":
            recipe["partial_sampling"] = self.partial_sampling
        if self.partial_share is not None:
            recipe["partial_share"] = self.partial_share
        if self.partial_source_malignant_share is not None:
            recipe["partial_source_malignant_share"] = self.partial_source_malignant_share
        if self.init_from is not None:  # the start's weights, not its path: a start replaced in place is another
            recipe["init_from"] = members_digest(self.init_from)
        if self.warmup_steps != DEFAULT_WARMUP_STEPS:  # only when changed, so that recipes recorded before still match
            recipe["warmup_steps"] = self.warmup_steps
        if self.structure_weight:
            recipe.update(structure_weight=self.structure_weight, structure_pattern=self.structure_pattern,
                          structure_holdout_fold=self.structure_holdout_fold)
        return recipe


def jsonable(value):
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value
