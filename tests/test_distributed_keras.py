"""Multi-worker training of the Keras engine, on 127.0.0.1 only: the harness of
test_distributed.py (plain worker subprocesses on free loopback ports, 1+1 threads, no
GPU, hard timeouts, only their own PIDs killed), with --engine=keras."""

import os

import numpy as np
import pytest

from slimtune import doctor, metadata
from slim_checkpoints import make_checkpoint
from test_distributed import (HERE, TIMEOUT, _flags, _keras_tensors,
                              _two_workers_and_one_process)
from test_register_architecture import _register as register_tiny_net


def _keras_flags(train_dir, **extra):
    return _flags(train_dir, engine="keras", **extra)


def _moving_means(tensors):
    return {k: v for k, v in tensors.items() if "moving_mean" in k}


@pytest.mark.parametrize("sync", [
    False, pytest.param(True, marks=pytest.mark.slow)])  # ~30 s more here
def test_two_keras_workers_train_as_one_process_with_two_replicas(tmp_path, digits_dir, sync):
    """2 workers x batch 4 (MultiWorkerMirroredStrategy) against one process with
    --num_clones=2 x batch 4 (MirroredStrategy on 2 logical CPUs): replica r reads shard
    files r, r+2, ... in both, so the global batches are the same.  After 3 steps the
    workers hold identical weights and BatchNorm statistics, equal to the one process's
    within 1e-5, at step 3.  Weight decay 1e-3 and a --clip_gradient_norm too large to
    bind run the loss scaling and the clip's all-reduce between the workers.  Logging only
    at the end: without --sync_batch_norm each replica's statistics drift apart over the
    3 steps and only the final save's mean makes them one."""
    register_tiny_net()
    start = make_checkpoint(str(tmp_path / "start" / "model.ckpt"), "tiny_convnet", 10)
    multi, single = str(tmp_path / "multi"), str(tmp_path / "single")
    data = {"dataset_dir": digits_dir, "checkpoint_path": start, "weight_decay": 1e-3,
            "clip_gradient_norm": 100.0, "log_every_n_steps": 100, "sync_batch_norm": sync}
    chief, _ = _two_workers_and_one_process(_keras_flags, _keras_tensors, multi, single, data)
    means = _moving_means(chief)
    assert means and all(np.abs(m).max() > 1e-3 for m in means.values()), \
        "the statistics never moved: nothing was compared"
    assert os.path.exists(os.path.join(multi, "model.keras"))
    worker = os.path.join(multi, "worker_1")
    assert not os.path.exists(os.path.join(worker, "model.keras"))
    # Worker 1's dir is a run too: its slimtune.json names the chief's model.keras, which
    # slimtune-doctor then checks.
    assert metadata.recorded(worker).engine == metadata.KERAS_ENGINE
    report = doctor.diagnose(doctor.DoctorConfig(train_dir=worker))
    assert report.checked == [f"Keras model {os.path.join(worker, os.pardir, 'model.keras')}"]


def test_sync_batch_norm_normalises_every_replica_with_the_global_batch(digits_dir):
    """One step of --num_clones=2 x 4 images whose halves differ in mean and variance
    (tests/keras_sync_bn_check.py, in one process).  With --sync_batch_norm each
    replica's BatchNorm uses the global batch's statistics: its moving statistics, the
    loss and the trained weights equal one replica's step on all 8 images.  Without,
    replica r normalises with its own 4 images' statistics and updates its copy with
    them; the copies are then set to their mean (every step, as the slim engine's): the
    mean of the halves' updates, whose variance is far from the global batch's, and so
    are the loss and the weights."""
    import json
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, os.path.join(HERE, "keras_sync_bn_check.py"), digits_dir],
        capture_output=True, text=True, timeout=TIMEOUT,
        env=dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2"))
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.splitlines()[-1])
    one, sync, plain = report["one"], report["sync"], report["plain"]
    assert sorted(one["statistics"]) == sorted(sync["statistics"]) and one["statistics"]
    for layer, (global_,) in one["statistics"].items():
        halves = [report["halves"][replica][layer][0] for replica in (0, 1)]
        for replica in (0, 1):
            for k, (kind, g, s, p) in enumerate(zip(
                    ("mean", "variance"), global_, sync["statistics"][layer][replica],
                    plain["statistics"][layer][replica])):
                where = f"{layer} replica {replica} moving {kind}"
                np.testing.assert_allclose(s, g, rtol=1e-5, atol=1e-6, err_msg=where)
                mean_of_halves = (np.array(halves[0][k]) + np.array(halves[1][k])) / 2
                np.testing.assert_allclose(p, mean_of_halves, rtol=1e-6, atol=1e-7,
                                           err_msg=where)
                if kind == "variance":  # the halves' own variances miss the spread between
                    assert np.abs(np.array(p) - g).max() > 1e-3, where
    assert sync["loss"] == pytest.approx(one["loss"], rel=1e-5)
    assert abs(plain["loss"] - one["loss"]) > 1e-3 * abs(one["loss"])
    weights = list(one["weights"].values())
    for name, s, p, o in zip(one["weights"], sync["weights"].values(),
                             plain["weights"].values(), weights):
        np.testing.assert_allclose(s, o, rtol=1e-5, atol=1e-6, err_msg=name)
    assert max(np.abs(np.array(p) - o).max() for p, o in zip(
        plain["weights"].values(), weights)) > 1e-3
