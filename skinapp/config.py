"""Where things are: the shipped weights, the app's data folder and database, the training images. Every
environment variable the package reads is named here, and read when asked (so tests can set them).

Nothing is looked for beside the source files unless the package runs from a checkout (a `pyproject.toml` in the
folder above it): an installed `skinapp` command finds its weights through `SKINAPP_WEIGHTS` and keeps its data in
`SKINAPP_DATA_DIR`, or in `data/` under the working directory."""

from __future__ import annotations

import os
from pathlib import Path

WEIGHTS_ENV = "SKINAPP_WEIGHTS"                  # the installed model's folder; default weights/ of a checkout
DATA_DIR_ENV = "SKINAPP_DATA_DIR"                # the app's data folder (database, log); default data/ of a checkout, else ./data
DATABASE_URL_ENV = "SKINAPP_DATABASE_URL"        # e.g. postgresql+psycopg://user@host/db; default SQLite in the data folder
TRAINING_IMAGES_ENV = "SKINAPP_TRAINING_IMAGES"  # a folder of the similar-case index's images (HAM10000 images/)
AUDIT_KEY_ENV = "SKINAPP_AUDIT_KEY_FILE"         # the key that signs audit checkpoints; default audit.key in the data folder
AUDIT_CHECKPOINTS_ENV = "SKINAPP_AUDIT_CHECKPOINTS"  # the checkpoint file; default audit_checkpoints.jsonl there
TRUSTED_PROXY_ENV = "SKINAPP_TRUSTED_PROXY"      # set: the client address comes from the proxy's X-Forwarded-For
PACS_URL_ENV = "SKINAPP_PACS_URL"                # the clinic PACS's DICOMweb root; unset: no PACS in the app
PACS_USER_ENV = "SKINAPP_PACS_USER"              # its account (HTTP basic authentication)
PACS_PASSWORD_FILE_ENV = "SKINAPP_PACS_PASSWORD_FILE"  # a file whose first line is that account's password
PACS_PASSWORD_ENV = "SKINAPP_PACS_PASSWORD"      # …or the password itself (the command line's fallback)
PACS_CA_BUNDLE_ENV = "SKINAPP_PACS_CA_BUNDLE"    # a CA certificate file to trust for https; default the system's
MODEL_URL_ENV = "SKINAPP_MODEL_URL"              # the model service (`python -m skinapp serve`); unset: the model in process
MODEL_SECRET_FILE_ENV = "SKINAPP_MODEL_SECRET_FILE"  # a file whose first line is the service's shared secret
MODEL_CA_BUNDLE_ENV = "SKINAPP_MODEL_CA_BUNDLE"  # a CA certificate file to trust for an https service
MODEL_CLIENT_CERT_ENV = "SKINAPP_MODEL_CLIENT_CERT"  # a PEM holding this app's certificate and key (mutual TLS)

ABOVE_PACKAGE = Path(__file__).resolve().parents[1]  # a checkout's root, or site-packages once installed


def checkout() -> Path | None:
    """The source checkout the package runs from, or None for an installed package."""
    return ABOVE_PACKAGE if (ABOVE_PACKAGE / "pyproject.toml").is_file() else None


def weights_dir() -> Path:
    """The installed model's folder (weights, `model_card.json`, `MODEL_CARD.md`): `SKINAPP_WEIGHTS`, else the
    checkout's `weights/`. Raises FileNotFoundError naming the variable where neither is there."""
    configured = os.environ.get(WEIGHTS_ENV)
    if configured:
        return Path(configured).expanduser()
    root = checkout()
    if root is not None and (root / "weights").is_dir():
        return root / "weights"
    raise FileNotFoundError(f"no model folder: set {WEIGHTS_ENV} to the folder holding the weights and model_card.json")


def data_dir() -> Path:
    """The app's own data folder: the database, its log. `SKINAPP_DATA_DIR`, else the checkout's `data/`, else
    `data/` under the working directory; made where missing."""
    configured = os.environ.get(DATA_DIR_ENV)
    root = checkout()
    folder = Path(configured).expanduser() if configured else (root if root is not None else Path.cwd()) / "data"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def database_url() -> str:
    return os.environ.get(DATABASE_URL_ENV) or f"sqlite:///{data_dir() / 'skinapp.db'}"


def training_images_dir() -> Path | None:
    """The similar-case index's pictures: `SKINAPP_TRAINING_IMAGES`, else, in a checkout, the project's data folder
    beside it (`../shared/data/ham10000/images`) where it is there. They are never shipped with the weights: the
    HAM10000 licence (CC BY-NC 4.0) allows no redistribution inside a product."""
    folder = os.environ.get(TRAINING_IMAGES_ENV)
    if folder:
        return Path(folder).expanduser()
    root = checkout()
    beside = root.parent / "shared" / "data" / "ham10000" / "images" if root is not None else None
    return beside if beside is not None and beside.is_dir() else None


def audit_key_file() -> Path:
    """The key that signs the audit checkpoints (`store/checkpoints.py`): it belongs with the app server, not in the
    database or its backups."""
    configured = os.environ.get(AUDIT_KEY_ENV)
    return Path(configured).expanduser() if configured else data_dir() / "audit.key"


def audit_checkpoints_file() -> Path:
    """Where the signed heads of the audit chain are appended; best on another volume than the database."""
    configured = os.environ.get(AUDIT_CHECKPOINTS_ENV)
    return Path(configured).expanduser() if configured else data_dir() / "audit_checkpoints.jsonl"


def behind_trusted_proxy() -> bool:
    """Whether a reverse proxy of the clinic's own sets X-Forwarded-For (README): only then is that header believed."""
    return bool(os.environ.get(TRUSTED_PROXY_ENV))


def model_service_settings() -> dict[str, str] | None:
    """The model service the app uses (url, secret_file, ca_bundle, client_cert; missing keys not set), None when
    the app runs the model in its own process."""
    url = os.environ.get(MODEL_URL_ENV)
    if not url:
        return None
    found = {"url": url, "secret_file": os.environ.get(MODEL_SECRET_FILE_ENV),
             "ca_bundle": os.environ.get(MODEL_CA_BUNDLE_ENV), "client_cert": os.environ.get(MODEL_CLIENT_CERT_ENV)}
    return {k: v for k, v in found.items() if v}


def pacs_settings() -> dict[str, str] | None:
    """The app's PACS as configured (url, user, password_file, ca_bundle; missing keys not set), None when none is."""
    url = os.environ.get(PACS_URL_ENV)
    if not url:
        return None
    found = {"url": url, "user": os.environ.get(PACS_USER_ENV), "password_file": os.environ.get(PACS_PASSWORD_FILE_ENV),
             "ca_bundle": os.environ.get(PACS_CA_BUNDLE_ENV)}
    return {k: v for k, v in found.items() if v}
