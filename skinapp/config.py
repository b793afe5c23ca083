"""Where things are: the shipped weights, the app's data folder and database, the training images. Every
environment variable the package reads is named here, and read when asked (so tests can set them)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_WEIGHTS = REPO / "weights"

DATA_DIR_ENV = "SKINAPP_DATA_DIR"                # the app's data folder (database, log); default ./data
DATABASE_URL_ENV = "SKINAPP_DATABASE_URL"        # e.g. postgresql+psycopg://user@host/db; default SQLite in the data folder
TRAINING_IMAGES_ENV = "SKINAPP_TRAINING_IMAGES"  # a folder of the similar-case index's images (HAM10000 images/)


def data_dir() -> Path:
    """The app's own data folder: the database, its log. `SKINAPP_DATA_DIR` moves it."""
    folder = Path(os.environ.get(DATA_DIR_ENV) or REPO / "data")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def database_url() -> str:
    return os.environ.get(DATABASE_URL_ENV) or f"sqlite:///{data_dir() / 'skinapp.db'}"


def training_images_dir() -> Path | None:
    folder = os.environ.get(TRAINING_IMAGES_ENV)
    return Path(folder) if folder else None
