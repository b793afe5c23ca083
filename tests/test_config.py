"""Where the package looks for its model and its data: the environment first, then the checkout it runs from; an
installed package (no checkout beside it) keeps its data under the working directory and names the variable it
needs for the model."""

from __future__ import annotations

from pathlib import Path

import pytest

import skinapp.config as config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def clean_env(monkeypatch):
    for name in (config.WEIGHTS_ENV, config.DATA_DIR_ENV, config.DATABASE_URL_ENV, config.TRAINING_IMAGES_ENV,
                 config.AUDIT_KEY_ENV, config.AUDIT_CHECKPOINTS_ENV):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def installed(clean_env, tmp_path):
    """The package as pip installs it: site-packages above it, no pyproject.toml, no weights/; run from a clinic's
    folder."""
    site_packages, work = tmp_path / "site-packages", tmp_path / "clinic"
    site_packages.mkdir()
    work.mkdir()
    clean_env.setattr(config, "ABOVE_PACKAGE", site_packages)
    clean_env.chdir(work)
    return work


def test_every_variable_is_named_in_config():
    assert (config.WEIGHTS_ENV, config.DATA_DIR_ENV, config.DATABASE_URL_ENV, config.TRAINING_IMAGES_ENV,
            config.AUDIT_KEY_ENV, config.AUDIT_CHECKPOINTS_ENV, config.TRUSTED_PROXY_ENV) == (
        "SKINAPP_WEIGHTS", "SKINAPP_DATA_DIR", "SKINAPP_DATABASE_URL", "SKINAPP_TRAINING_IMAGES",
        "SKINAPP_AUDIT_KEY_FILE", "SKINAPP_AUDIT_CHECKPOINTS", "SKINAPP_TRUSTED_PROXY")


def test_a_checkout_uses_its_own_folders(clean_env):
    assert config.checkout() == REPO
    if (REPO / "weights").is_dir():
        assert config.weights_dir() == REPO / "weights"
    assert config.data_dir() == REPO / "data"


def test_the_environment_comes_first(clean_env, tmp_path):
    clean_env.setenv("SKINAPP_WEIGHTS", str(tmp_path / "model"))
    clean_env.setenv("SKINAPP_DATA_DIR", str(tmp_path / "store"))
    assert config.weights_dir() == tmp_path / "model"
    assert config.data_dir() == tmp_path / "store" and (tmp_path / "store").is_dir()
    assert config.database_url() == f"sqlite:///{tmp_path / 'store' / 'skinapp.db'}"
    clean_env.setenv("SKINAPP_DATABASE_URL", "postgresql+psycopg://app@db/skinapp")
    assert config.database_url() == "postgresql+psycopg://app@db/skinapp"


def test_an_empty_variable_is_unset(clean_env):
    clean_env.setenv("SKINAPP_DATA_DIR", "")
    clean_env.setenv("SKINAPP_TRAINING_IMAGES", "")
    assert config.data_dir() == REPO / "data"
    beside = REPO.parent / "shared" / "data" / "ham10000" / "images"  # the project's data folder, where it is
    assert config.training_images_dir() == (beside if beside.is_dir() else None)


def test_installed_without_settings_keeps_data_in_the_working_directory(installed):
    assert config.checkout() is None
    assert config.data_dir() == installed / "data" and (installed / "data").is_dir()
    assert config.database_url() == f"sqlite:///{installed / 'data' / 'skinapp.db'}"
    assert config.training_images_dir() is None  # the pictures of similar cases are never shipped
    assert config.audit_key_file() == installed / "data" / "audit.key"  # beside the database unless set elsewhere
    assert config.audit_checkpoints_file() == installed / "data" / "audit_checkpoints.jsonl"


def test_installed_without_weights_says_which_variable_to_set(installed):
    with pytest.raises(FileNotFoundError, match="SKINAPP_WEIGHTS"):
        config.weights_dir()


def test_installed_with_settings(installed, clean_env, tmp_path):
    (tmp_path / "model").mkdir()
    clean_env.setenv("SKINAPP_WEIGHTS", str(tmp_path / "model"))
    clean_env.setenv("SKINAPP_DATA_DIR", str(tmp_path / "store"))
    assert config.weights_dir() == tmp_path / "model"
    assert config.data_dir() == tmp_path / "store" and not (installed / "data").exists()


def test_the_command_names_the_missing_variable(installed, capsys):
    from skinapp.cli.main import main

    assert main(["predict", "lesion.png", "--out", "predictions.csv"]) == 2
    assert "SKINAPP_WEIGHTS" in capsys.readouterr().err
    assert not (installed / "predictions.csv").exists()
