"""Shared fixtures. Everything here is synthetic except `shared_data`, which is the real data folder
beside the repository (../shared/data) and skips the test with a reason where it is absent."""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
from orthanc_server import OrthancServer
from pg_server import APP_ROLE, OWNER_ROLE, ScratchPostgres

from skinapp.model.card import Member, ModelCard
from skinapp.model.checkpoint import save_weights
from skinapp.model.network import LesionNet, ModelConfig

# The development machines' image sets PYTHONDONTWRITEBYTECODE, so every run compiled the package and rewrote the
# asserts of every test module afresh (about 4 s of the quick loop). Modules imported from here on are cached in
# __pycache__ (ignored by git), as Python does by default.
sys.dont_write_bytecode = False

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SKINAPP_SHARED_DATA", REPO.parent / "shared" / "data"))
SHIPPED_WEIGHTS = REPO / "weights"

# One thread: on the 2-core development machine, where a training run or a second pytest usually holds a core, two
# threads wait on each other; measured there, the quick loop took 246 s with two and 103 s with one, the shipped
# model's held-out and DICOM tests 257 s and 105 s.
torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def audit_key(tmp_path_factory) -> Path:
    """The key that signs audit entries and checkpoints lives with the server: the tests' own, never the checkout's."""
    path = tmp_path_factory.mktemp("server") / "audit.key"
    os.environ.setdefault("SKINAPP_AUDIT_KEY_FILE", str(path))
    return Path(os.environ["SKINAPP_AUDIT_KEY_FILE"])


@pytest.fixture(scope="session", autouse=True)
def cheap_password_hashing():
    """Argon2id at the app's cost takes about 0.13 s a hash here, and the tests sign in hundreds of times. They hash
    at the lowest cost instead; `test_accounts` checks the cost the app itself uses."""
    from argon2 import PasswordHasher

    from skinapp.store import accounts

    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    saved = accounts._hasher, accounts._UNKNOWN_USER_HASH
    accounts._hasher, accounts._UNKNOWN_USER_HASH = cheap, cheap.hash("unknown")
    yield saved[0]
    accounts._hasher, accounts._UNKNOWN_USER_HASH = saved


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "ham10000" / "HAM10000_metadata.csv").is_file():
        pytest.skip(f"real data not found at {SHARED_DATA} (set SKINAPP_SHARED_DATA or place ../shared/data beside the repo)")
    return SHARED_DATA


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that uses `shared_data` (itself or through another fixture) reads the real data: mark it `data`."""
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.data)


def pytest_collection_finish(session: pytest.Session) -> None:
    """What collection imported (torch, Streamlit, the test modules) lives until the end: kept out of the garbage
    collector's full passes, which otherwise walk it again each time, and 5 times over at the end of the session."""
    gc.freeze()


@pytest.fixture(scope="session")
def postgres():
    """A scratch PostgreSQL server (tests/pg_server.py), or a skip with the reason where none can be started."""
    try:
        server = ScratchPostgres.start()
    except Exception as exc:  # no binaries, no postgres user, initdb or start failed
        pytest.skip(f"no PostgreSQL server for this test: {exc}")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def orthanc():
    """A scratch Orthanc PACS with DICOMweb and basic authentication (tests/orthanc_server.py), or a skip with the
    reason where none can be started."""
    try:
        server = OrthancServer()
    except Exception as exc:  # no Orthanc, no DICOMweb plugin, or it did not start
        pytest.skip(f"no Orthanc PACS for this test: {exc}")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def siim_dicoms(shared_data) -> list[Path]:
    """The 20 SIIM-ISIC 2020 DICOMs as the challenge distributed them (quoted values, the image name as PatientID)."""
    files = sorted((shared_data / "siim_isic_2020" / "dicom").glob("ISIC_*.dcm"))
    if not files:
        pytest.skip(f"no SIIM-ISIC DICOMs in {shared_data / 'siim_isic_2020' / 'dicom'}")
    return files


@pytest.fixture(scope="session")
def pacs(orthanc, siim_dicoms):
    """The scratch PACS holding the SIIM-ISIC DICOMs (stored over STOW-RS), as a clinic's archive would hold them."""
    import pydicom

    from skinapp.pacs.connection import PacsServer

    server = PacsServer(orthanc.dicomweb_url, orthanc.user, orthanc.password)
    receipt = server.client().store_instances([pydicom.dcmread(f) for f in siim_dicoms])
    assert len(receipt.ReferencedSOPSequence) == len(siim_dicoms) and not receipt.get("FailedSOPSequence")
    return server


class Database(NamedTuple):
    url: str                  # what the application connects with
    owner_url: str | None     # the tables' owner (PostgreSQL); None on SQLite
    admin_url: str | None     # a superuser, for tests that play a hostile administrator (PostgreSQL)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path) -> Database:
    """A fresh database set up as a clinic would: a SQLite file, or a PostgreSQL database whose tables belong
    to an owner role while the application connects as a role that may only read and add."""
    if request.param == "sqlite":
        return Database(f"sqlite:///{tmp_path / 'skinapp.db'}", None, None)
    from skinapp.store.setup import initialise_url

    server = request.getfixturevalue("postgres")
    name = server.new_database()
    initialise_url(server.url(name, OWNER_ROLE), app_role=APP_ROLE)
    return Database(server.url(name, APP_ROLE), server.url(name, OWNER_ROLE), server.url(name, "postgres"))


@pytest.fixture
def db_url(db: Database) -> str:
    return db.url


@pytest.fixture(scope="session")
def shipped_weights() -> Path:
    if not (SHIPPED_WEIGHTS / "model_card.json").is_file():
        pytest.skip("no trained weights in weights/")
    return SHIPPED_WEIGHTS


def held_out_member(weights: Path, **options):
    """The shipped ensemble's first member alone, with the flag checks in its own space, and the fold it never
    trained on. Every other member trained on that fold, so only this member's predictions on it are held out (as
    `evaluate` measures them); the card's calibration, rule and policy were fitted on such predictions."""
    from skinapp.inference import Predictor
    from skinapp.inference.assessment import Assessor
    from skinapp.model.checkpoint import load_member

    card = ModelCard.load(weights)
    member = card.members[0]
    predictor = Predictor([load_member(weights, member, card.config)], card, device="cpu", **options)
    assessor = Assessor.from_weights(weights, card).member_view(0, len(card.members))
    return predictor, assessor, member.validation_fold


def write_weights(folder: Path, image_size: int = 64, members: int = 1, seed: int = 0) -> Path:
    """An untrained network saved the way training saves one, for testing the plumbing (never shipped)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = ModelConfig(image_size=image_size)
    entries = []
    for k in range(members):
        torch.manual_seed(seed + k)
        net = LesionNet(config, pretrained_encoder=False).eval()
        sha = save_weights(net, folder / f"fold{k}.safetensors")
        entries.append(Member(file=f"fold{k}.safetensors", sha256=sha, validation_fold=k))
    ModelCard(version="test-untrained", config=config, members=entries).save(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    return write_weights(tmp_path_factory.mktemp("weights"))


def synthetic_lesion(height: int = 90, width: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A skin-coloured image with one dark elliptical 'lesion', and its mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    cy, cx = height / 2 + rng.uniform(-5, 5), width / 2 + rng.uniform(-5, 5)
    mask = ((yy - cy) / (height * 0.25)) ** 2 + ((xx - cx) / (width * 0.2)) ** 2 <= 1
    image = np.empty((height, width, 3), np.uint8)
    image[:] = (225, 180, 160)
    image[mask] = (90, 55, 40)
    noise = rng.integers(-10, 10, image.shape)
    return np.clip(image.astype(int) + noise, 0, 255).astype(np.uint8), mask


def tamper(db, statements: list[str], tables: tuple[str, ...]) -> None:
    """What someone with the database file, or a superuser, could do: the guards of `tables` set aside (SQLite: every
    trigger dropped; PostgreSQL: disabled as a superuser, then enabled again) and `statements` run."""
    import sqlite3

    from sqlalchemy import create_engine

    if db.admin_url is None:
        connection = sqlite3.connect(db.url.removeprefix("sqlite:///"), isolation_level=None)
        for (trigger,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            connection.execute(f"DROP TRIGGER {trigger}")
        for statement in statements:
            connection.execute(statement)
        connection.close()
        return
    engine = create_engine(db.admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        for table in tables:
            connection.exec_driver_sql(f"ALTER TABLE {table} DISABLE TRIGGER ALL")
        for statement in statements:
            connection.exec_driver_sql(statement)
        for table in tables:
            connection.exec_driver_sql(f"ALTER TABLE {table} ENABLE TRIGGER ALL")
    engine.dispose()
