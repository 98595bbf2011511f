"""Configuration: types, failing fast with the key named, and docs that list every key."""
from __future__ import annotations

import base64
import re

import pytest

from app import create_app
from app.config import SETTINGS, load_config, slurm_auth_from_config
from app.errors import ConfigError
from app.auth import MemoryKeyStore
from app.memory_store import MemoryTaskStore
from tests.conftest import ROOT


def test_numbers_from_the_environment_are_numbers():
    config = load_config({"SLURM_READ_TIMEOUT": "12.5", "SLURM_PROXY_PORT": "6000"})
    assert config["SLURM_READ_TIMEOUT"] == 12.5 and config["SLURM_PROXY_PORT"] == 6000


def test_bad_numbers_are_named():
    with pytest.raises(ConfigError) as info:
        load_config({"SLURM_PROXY_PORT": "five", "MONGODB_TIMEOUT_MS": "soon"})
    assert "SLURM_PROXY_PORT='five'" in info.value.message
    assert "MONGODB_TIMEOUT_MS='soon'" in info.value.message


def test_no_credentials_fails_fast_naming_the_settings():
    with pytest.raises(ConfigError) as info:
        create_app({}, store=MemoryTaskStore(), keys=MemoryKeyStore(), environ={})
    for key in ("SLURM_USER_TOKEN", "SLURM_JWT_HS256_KEY_BASE64", "SLURM_JWT_HS256_KEY_FILE"):
        assert key in info.value.message


def test_both_credential_modes_is_an_error():
    with pytest.raises(ConfigError, match="not both"):
        slurm_auth_from_config({"SLURM_USER_TOKEN": "t",
                                "SLURM_JWT_HS256_KEY_BASE64": base64.b64encode(b"k" * 32)})


def test_key_from_base64_and_short_key_refused():
    key = b"0123456789abcdef0123456789abcdef"
    auth = slurm_auth_from_config({"SLURM_JWT_HS256_KEY_BASE64": base64.b64encode(key).decode(),
                                   "SLURM_JWT_LIFESPAN": 300})
    assert auth.mode == "key" and auth.key == key and auth.lifespan == 300
    with pytest.raises(ConfigError, match="shorter"):
        slurm_auth_from_config({"SLURM_JWT_HS256_KEY_BASE64": base64.b64encode(b"short").decode(),
                                "SLURM_JWT_LIFESPAN": 300})


def test_unreadable_key_file_is_named_without_its_content(tmp_path):
    with pytest.raises(ConfigError, match="SLURM_JWT_HS256_KEY_FILE"):
        slurm_auth_from_config({"SLURM_JWT_HS256_KEY_FILE": str(tmp_path / "missing"),
                                "SLURM_JWT_LIFESPAN": 300})


def test_embedded_store_is_announced_loudly(caplog):
    key = base64.b64encode(b"k" * 32).decode()
    create_app({"SLURM_JWT_HS256_KEY_BASE64": key}, keys=MemoryKeyStore(), environ={})
    assert any("NOT kept across restarts" in r.getMessage() and r.levelname == "WARNING"
               for r in caplog.records)


def test_every_setting_is_documented():
    example = (ROOT / ".env.example").read_text()
    readme = (ROOT / "README.md").read_text()
    listed = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", example, re.M))
    for key in SETTINGS:
        assert key in listed, f"{key} missing from .env.example"
        assert key in readme, f"{key} missing from README"
    for key in listed:
        assert key in readme, f"{key} of .env.example is not explained in the README"
