"""Shared fixtures: offline Hugging Face caches in a temp dir and a tiny model built once."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY_SPEC = {"architecture": "mistral", "vocab_size": 2000, "hidden_size": 64, "intermediate_size": 128,
             "layers": 2, "heads": 2, "kv_heads": 1}


@pytest.fixture(scope="session", autouse=True)
def offline_hf(tmp_path_factory):
    """No test touches the network or the user's caches."""
    home = tmp_path_factory.mktemp("hf_home")
    saved = {k: os.environ.get(k) for k in ("HF_HOME", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    os.environ.update(HF_HOME=str(home), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random Mistral with a tokenizer trained on the embedded demo text."""
    from bonito_repro.models import prepare_model

    return prepare_model({"tiny": TINY_SPEC}, tmp_path_factory.mktemp("models") / "tiny_mistral")


@pytest.fixture(scope="session")
def local_config() -> dict:
    """The local scale's resolved config (config.yaml with config/local.yaml over it): read when a
    test asks for it, never at import, so that a config change fails the tests that read it rather
    than the collection of their whole module."""
    from bonito_repro.config import load_scale

    return load_scale("local", REPO)
