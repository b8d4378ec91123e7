"""Shared fixtures. Nothing here touches the network or writes outside temporary folders."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest


@pytest.fixture(scope="session")
def app_dirs(tmp_path_factory):
    """Point the app's cache and data folders at a session temporary folder."""
    root = tmp_path_factory.mktemp("appdirs")
    os.environ["RLHF_DESKTOP_CACHE"] = str(root / "cache")
    os.environ["RLHF_DESKTOP_DATA"] = str(root / "data")
    os.environ["HF_HOME"] = str(root / "hf")
    return root


@pytest.fixture(autouse=True)
def _isolated_dirs(app_dirs):
    yield


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A saved tiny random causal LM folder (safetensors + tokenizer + chat template)."""
    from rlhf_desktop.modeling.tiny import make_tiny_model

    folder = tmp_path_factory.mktemp("tiny-model")
    make_tiny_model(folder)
    return folder


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    """The tiny model loaded (generation only reads it: one load per test module)."""
    from rlhf_desktop.modeling.loading import load_model

    return load_model(str(tiny_model_dir))


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """Settings, log and default project in this test's own folder (the log handler re-pointed)."""
    from rlhf_desktop.ui.errors import setup_logging

    monkeypatch.setenv("RLHF_DESKTOP_DATA", str(tmp_path / "data"))
    setup_logging()
    return tmp_path / "data"


@pytest.fixture
def project(tmp_path):
    from rlhf_desktop.store import Project

    with Project.create(tmp_path / "proj") as p:
        yield p


@pytest.fixture(scope="session")
def default_model_path(app_dirs):
    """The real SmolLM2-135M-Instruct, converted once from its GGUF into the session cache (~25 s)."""
    from rlhf_desktop.modeling.default_model import default_model_dir

    return default_model_dir()
