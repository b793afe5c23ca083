"""Labelled dermoscopy decoded once into memory (HAM10000, ISIC 2017, SIIM-ISIC 2020), and leak-free folds grouped
by lesion or patient."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from skinapp.vocab import CLASSES, MALIGNANT, STRUCTURES, Metadata, encode_metadata

HAM_METADATA = "HAM10000_metadata.csv"
FOLDS_FILE = "folds.csv"  # image_id, lesion_id, fold: the folds a model's members were trained with
ISIC2017_METADATA = "ISIC2017_metadata.csv"
HAM_SOURCE = "ham10000"
ISIC2017_SOURCE = "isic2017"
SIIM2020_SOURCE = "siim2020"
SIIM2020_METADATA = "metadata.csv"
# A partial label: "one of the benign classes, which one is not known". SIIM-ISIC 2020's 'unknown' lesions were
# judged benign without a biopsy; calling them nevi would teach the model a diagnosis nobody made.
BENIGN_UNSPECIFIED = len(CLASSES)
BENIGN_INDICES: tuple[int, ...] = tuple(i for i, c in enumerate(CLASSES) if c not in MALIGNANT)
SIIM2020_DIAGNOSES = {"melanoma": "MEL", "nevus": "NV", "seborrheic keratosis": "BKL", "lentigo nos": "BKL",
                      "solar lentigo": "BKL", "lichenoid keratosis": "BKL", "atypical melanocytic proliferation": "MEL"}

ImageTransform = Callable[[np.ndarray], np.ndarray]


@dataclass
class LabelledImages:
    image_ids: list[str]
    lesion_ids: np.ndarray      # (N,) str; an image's own id where the data set publishes no lesion ids
    labels: np.ndarray          # (N,) int64 index into CLASSES, or BENIGN_UNSPECIFIED
    images: list[np.ndarray]    # N RGB uint8 images; sizes differ between sources
    masks: list[np.ndarray | None] | None  # {0, 1} lesion mask per image, None where the source has none
    metadata: list[Metadata]
    metadata_codes: np.ndarray  # (N, METADATA_DIM) float32
    sources: np.ndarray         # (N,) str: which data set each image comes from
    structures: np.ndarray | None = None      # (N, S) float32 in STRUCTURES order, NaN where not labelled
    global_pattern: np.ndarray | None = None  # (N,) int64 index into GLOBAL_PATTERNS, -1 where not labelled

    def __len__(self) -> int:
        return len(self.image_ids)

    @staticmethod
    def concatenate(parts: list[LabelledImages]) -> LabelledImages:
        with_masks = any(p.masks is not None for p in parts)
        with_structures = any(p.structures is not None for p in parts)
        return LabelledImages(
            image_ids=[i for p in parts for i in p.image_ids],
            lesion_ids=np.concatenate([p.lesion_ids for p in parts]),
            labels=np.concatenate([p.labels for p in parts]),
            images=[im for p in parts for im in p.images],
            masks=[m for p in parts for m in (p.masks or [None] * len(p))] if with_masks else None,
            metadata=[m for p in parts for m in p.metadata],
            metadata_codes=np.concatenate([p.metadata_codes for p in parts]),
            sources=np.concatenate([p.sources for p in parts]),
            structures=np.concatenate([p.structure_targets() for p in parts]) if with_structures else None,
            global_pattern=np.concatenate([p.pattern_targets() for p in parts]) if with_structures else None,
        )

    def structure_targets(self) -> np.ndarray:
        if self.structures is not None:
            return self.structures
        return np.full((len(self), len(STRUCTURES)), np.nan, np.float32)

    def pattern_targets(self) -> np.ndarray:
        return self.global_pattern if self.global_pattern is not None else np.full(len(self), -1, np.int64)

    def with_structure_labels(self, image_ids: list[str], present: np.ndarray, pattern: np.ndarray) -> LabelledImages:
        """These images' structure labels ((n, S) present, (n,) global pattern or -1) attached; the others unlabelled."""
        structures, patterns = self.structure_targets().copy(), self.pattern_targets().copy()
        position = {image_id: k for k, image_id in enumerate(self.image_ids)}
        for image_id, row, global_pattern in zip(image_ids, present, pattern, strict=True):
            if image_id in position:
                structures[position[image_id]] = row
                patterns[position[image_id]] = global_pattern
        return dataclasses.replace(self, structures=structures, global_pattern=patterns)


def _read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path}: not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _read_mask(path: Path) -> np.ndarray:
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise ValueError(f"{path}: not a readable mask")
    return (mask > 0).astype(np.uint8)


def _read_images(paths: list[Path], threads: int, transform: ImageTransform | None) -> list[np.ndarray]:
    def read(path: Path) -> np.ndarray:
        image = _read_rgb(path)
        return transform(image) if transform is not None else image

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(read, paths))


def _table(root: Path, name: str, what: str) -> pd.DataFrame:
    path = root / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {root} the {what} folder?")
    return pd.read_csv(path)


def _labelled(table: pd.DataFrame, images: list[np.ndarray], masks: list | None, lesion_ids: np.ndarray,
              site_column: str, source: str) -> LabelledImages:
    metadata = [Metadata.parse(a, s, site) for a, s, site in zip(table["age"], table["sex"], table[site_column], strict=True)]
    return LabelledImages(
        image_ids=table["image_id"].tolist(),
        lesion_ids=lesion_ids,
        labels=table["dx"].str.upper().map(CLASSES.index).to_numpy(np.int64),
        images=images,
        masks=masks,
        metadata=metadata,
        metadata_codes=np.asarray([encode_metadata(m) for m in metadata], dtype=np.float32),
        sources=np.full(len(table), source),
    )


def load_ham10000(root: str | Path, limit: int | None = None, with_masks: bool = True, threads: int = 4,
                  transform: ImageTransform | None = None) -> LabelledImages:
    """Read `HAM10000_metadata.csv`, `images/` and `masks/` under root (see ../shared/data/README.md).

    `transform` (e.g. colour constancy) is applied once to each decoded image."""
    root = Path(root)
    table = _table(root, HAM_METADATA, "HAM10000")
    if limit is not None:
        table = table.iloc[:limit]
    ids = table["image_id"].tolist()
    images = _read_images([root / "images" / f"{i}.jpg" for i in ids], threads, transform)
    masks = None
    if with_masks:
        with ThreadPoolExecutor(threads) as pool:
            masks = list(pool.map(_read_mask, (root / "masks" / f"{i}_segmentation.png" for i in ids)))
    return _labelled(table, images, masks, table["lesion_id"].to_numpy(str), "localization", HAM_SOURCE)


def load_isic2017(root: str | Path, split: str, limit: int | None = None, threads: int = 4,
                  transform: ImageTransform | None = None) -> LabelledImages:
    """One split ("train" or "val") of the ISIC 2017 images under root. No masks; each image is its own lesion."""
    root = Path(root)
    table = _table(root, ISIC2017_METADATA, "ISIC 2017")
    if split not in set(table["split"]):
        raise ValueError(f"{root / ISIC2017_METADATA} has no split {split!r}")
    table = table[table["split"] == split].reset_index(drop=True)
    if limit is not None:
        table = table.iloc[:limit]
    images = _read_images([root / "images" / f"{i}.jpg" for i in table["image_id"]], threads, transform)
    ids = table["image_id"].to_numpy(str)
    return _labelled(table, images, [None] * len(table), ids, "anatom_site_general", ISIC2017_SOURCE)


def siim2020_label(diagnosis: str, benign_malignant: str) -> int:
    """A SIIM-ISIC 2020 row's label: its diagnosis where it names one of the seven, else benign or malignant only."""
    code = SIIM2020_DIAGNOSES.get(str(diagnosis).strip().lower())
    if code is not None:
        return CLASSES.index(code)
    if str(benign_malignant).strip().lower() == "benign":
        return BENIGN_UNSPECIFIED
    raise ValueError(f"SIIM-ISIC 2020 diagnosis {diagnosis!r} ({benign_malignant}) has no place among {CLASSES}")


def load_siim2020(root: str | Path, limit: int | None = None, threads: int = 4,
                  transform: ImageTransform | None = None) -> LabelledImages:
    """The SIIM-ISIC 2020 JPEGs under root (`metadata.csv`, `images/`). No masks; `lesion_ids` hold the patient, so
    that folds keep each patient's images together."""
    root = Path(root)
    table = _table(root, SIIM2020_METADATA, "SIIM-ISIC 2020 JPEG")
    if limit is not None:
        table = table.iloc[:limit]
    images = _read_images([root / "images" / f"{i}.jpg" for i in table["image_name"]], threads, transform)
    metadata = [Metadata.parse(a, s, site) for a, s, site in
                zip(table["age_approx"], table["sex"], table["anatom_site_general_challenge"], strict=True)]
    return LabelledImages(
        image_ids=table["image_name"].tolist(),
        lesion_ids=table["patient_id"].to_numpy(str),
        labels=np.asarray([siim2020_label(d, b) for d, b in zip(table["diagnosis"], table["benign_malignant"],
                                                                 strict=True)], np.int64),
        images=images,
        masks=[None] * len(table),
        metadata=metadata,
        metadata_codes=np.asarray([encode_metadata(m) for m in metadata], dtype=np.float32),
        sources=np.full(len(table), SIIM2020_SOURCE),
    )


def fully_labelled(labels: np.ndarray) -> np.ndarray:
    """Which labels name one of the seven classes (not a partial label)."""
    return labels < len(CLASSES)


def make_folds(labels: np.ndarray, groups: np.ndarray, n_folds: int = 5, seed: int = 0) -> np.ndarray:
    """Fold index per image: stratified by class, every image of a group (lesion) in one fold."""
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    folds = np.full(len(labels), -1, dtype=np.int64)
    for fold, (_, val_index) in enumerate(splitter.split(np.zeros(len(labels)), labels, groups)):
        folds[val_index] = fold
    return folds


def read_folds(path: Path, image_ids: list[str], missing: int | None = None) -> np.ndarray:
    """The fold of each image from a `folds.csv`. Images it does not list get `missing`, or are an error when
    `missing` is None."""
    folds = pd.read_csv(path).set_index("image_id")["fold"].reindex(image_ids)
    if folds.isna().any():
        if missing is None:
            raise ValueError(f"{path} does not list {int(folds.isna().sum())} of the images; use a fresh folder")
        folds = folds.fillna(missing)
    return folds.to_numpy(np.int64)
