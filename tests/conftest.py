"""Shared fixtures: quiet TensorFlow, and the built-in digits written once per session."""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# slimtune's own default (see slimtune/__init__.py), set before any test module imports
# TensorFlow ahead of slimtune: the suite measures what users run.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

import pytest  # noqa: E402


# The longest files of the default run first.  xdist hands whole files (``--dist
# loadfile``) to its two processes in collection order (``--no-loadscope-reorder`` in
# setup.cfg; by default it orders them by their number of tests, which started the
# main job, two tests and the longest single case, near the end).  Longest first lets
# the two processes end together.  Measured with ``--durations=0`` on 2026-11-30, in
# seconds of a loaded run: test_train 840, test_quickstart 720, test_verify 580,
# test_convert 435, test_doctor 390, test_convert_inception 325; the rest under 270.
_LONGEST_FIRST = ("test_train.py", "test_quickstart.py", "test_verify.py", "test_convert.py",
                  "test_doctor.py", "test_convert_inception.py", "test_broken_checkpoints.py",
                  "test_keras_engine_equivalence.py", "test_distributed.py",
                  "test_convert_resnet.py", "test_convert_mobilenet.py", "test_evaluate.py")


def pytest_collection_modifyitems(config, items):
    """Put the longest files first (see ``_LONGEST_FIRST``); the sort is stable, so each
    file keeps its own order and the other files follow in theirs."""
    rank = {name: i for i, name in enumerate(_LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


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


@pytest.fixture(scope="session")
def seed_001(digits_dir):
    """``(train(dir, fixed), doctor check settings)`` for seed 001's script on digits."""
    from slimtune.data import pipeline

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "examples"))
    import seed_001_user_script as script

    images, labels = pipeline.load_eval_arrays("digits", digits_dir, "train", "vgg", 32)
    check = {"model_name": "resnet_v1_50", "dataset_name": "digits", "image_size": 32}
    return (lambda path, fixed: script.train(path, images, labels, fixed=fixed)), check


@pytest.fixture(scope="session")
def seed_001_broken(seed_001, tmp_path_factory):
    """Seed 001's broken run (update ops never run: statistics at 0/1 after 100 steps),
    trained once for the doctor's and the recalibration's tests."""
    return seed_001[0](str(tmp_path_factory.mktemp("seed001") / "broken"), False)


@pytest.fixture(autouse=True)
def _release_models():
    """Drop each test's Keras state and graphs: the deep-net cases would otherwise keep
    gigabytes alive for the rest of the session.

    What survives is frozen (``gc.freeze``) so that the next test's collection reads only
    the objects made since: a full collection over TensorFlow's and Keras' 350,000
    objects cost about 0.4 s, twice per test (``clear_session`` collects too), 0.9-1.0 s
    of every test's teardown.  :func:`_release_module` collects the frozen ones once per
    file, so what a file's fixtures held is freed when they end.
    """
    yield
    _collect()


def _collect():
    import gc

    if "keras" in sys.modules:
        sys.modules["keras"].backend.clear_session()
    gc.collect()
    gc.freeze()


@pytest.fixture(scope="module", autouse=True)
def _release_module():
    yield
    import gc

    gc.unfreeze()
    _collect()
