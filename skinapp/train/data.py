"""HAM10000 decoded once into memory, and leak-free folds grouped by lesion."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from skinapp.vocab import CLASSES, Metadata, encode_metadata

HAM_METADATA = "HAM10000_metadata.csv"


@dataclass
class LabelledImages:
    image_ids: list[str]
    lesion_ids: np.ndarray     # (N,) str
    labels: np.ndarray         # (N,) int64 index into CLASSES
    images: np.ndarray         # (N, H, W, 3) uint8 RGB
    masks: np.ndarray | None   # (N, H, W) uint8 {0, 1}
    metadata: list[Metadata]
    metadata_codes: np.ndarray  # (N, METADATA_DIM) float32

    def __len__(self) -> int:
        return len(self.image_ids)


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


def load_ham10000(root: str | Path, limit: int | None = None, with_masks: bool = True, threads: int = 4) -> LabelledImages:
    """Read `HAM10000_metadata.csv`, `images/` and `masks/` under root (see ../shared/data/README.md)."""
    root = Path(root)
    table_path = root / HAM_METADATA
    if not table_path.is_file():
        raise FileNotFoundError(f"{table_path} not found: is {root} the HAM10000 folder?")
    table = pd.read_csv(table_path)
    if limit is not None:
        table = table.iloc[:limit]
    ids = table["image_id"].tolist()
    with ThreadPoolExecutor(threads) as pool:
        images = np.stack(list(pool.map(_read_rgb, (root / "images" / f"{i}.jpg" for i in ids))))
        masks = (
            np.stack(list(pool.map(_read_mask, (root / "masks" / f"{i}_segmentation.png" for i in ids))))
            if with_masks else None
        )
    metadata = [Metadata.parse(a, s, l) for a, s, l in zip(table["age"], table["sex"], table["localization"])]
    return LabelledImages(
        image_ids=ids,
        lesion_ids=table["lesion_id"].to_numpy(str),
        labels=table["dx"].str.upper().map(CLASSES.index).to_numpy(np.int64),
        images=images,
        masks=masks,
        metadata=metadata,
        metadata_codes=np.asarray([encode_metadata(m) for m in metadata], dtype=np.float32),
    )


def make_folds(labels: np.ndarray, groups: np.ndarray, n_folds: int = 5, seed: int = 0) -> np.ndarray:
    """Fold index per image: stratified by class, every image of a group (lesion) in one fold."""
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    folds = np.full(len(labels), -1, dtype=np.int64)
    for fold, (_, val_index) in enumerate(splitter.split(np.zeros(len(labels)), labels, groups)):
        folds[val_index] = fold
    return folds
