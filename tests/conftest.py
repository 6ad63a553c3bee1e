"""Shared fixtures: quiet TensorFlow, and the built-in digits written once per session."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# slimtune's own default (see slimtune/__init__.py), set before any test module imports
# TensorFlow ahead of slimtune: the suite measures what users run.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory):
    """The digits shards, written once into a session cache so tests never touch ~/.cache."""
    os.environ["SLIMTUNE_CACHE"] = str(tmp_path_factory.mktemp("slimtune-cache"))
    from slimtune.data import digits

    return digits.ensure()


@pytest.fixture(scope="session", autouse=True)
def _checkpoint_cache(tmp_path_factory):
    """Archives and manifest names unpack here, never into the repository's cache."""
    os.environ["SLIMTUNE_CHECKPOINTS"] = str(tmp_path_factory.mktemp("checkpoint-cache"))


@pytest.fixture(autouse=True)
def _release_models():
    """Drop each test's Keras state and graphs: the deep-net cases would otherwise keep
    gigabytes alive for the rest of the session."""
    yield
    import gc
    import sys

    if "keras" in sys.modules:
        sys.modules["keras"].backend.clear_session()
    gc.collect()
