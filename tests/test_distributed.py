"""Multi-worker training of the slim engine, on 127.0.0.1 only.

Each run is a set of plain subprocesses (tests/distributed_worker.py: slimtune-train with
one intra-op and one inter-op thread, the tiny registered network, no GPU) on free
loopback ports, each with a hard timeout; on timeout only these child processes are
killed.  No TensorFlow multi_process_runner (it reports every test skipped without dill).
"""

import os
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from slimtune import distribute
from slim_checkpoints import make_checkpoint
from test_register_architecture import _register as register_tiny_net

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "distributed_worker.py")
TIMEOUT = 240  # seconds for a whole run; a 2-worker run of the tiny net takes 10-60 s here


def _flags(train_dir, steps=3, **extra):
    flags = {"train_dir": train_dir, "dataset_name": "digits", "model_name": "tiny_convnet",
             "train_image_size": 32, "batch_size": 4, "max_number_of_steps": steps,
             "seed": 1, "optimizer": "sgd", "learning_rate": 0.1, "batch_norm_decay": 0.5,
             "log_every_n_steps": 1, "save_summaries_secs": 100000,
             "weight_decay": 0.0}
    flags.update(extra)
    return [f"--{k}={v}" for k, v in flags.items()]


def _start(flags, tf_config=None):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
    env.pop(distribute.TF_CONFIG, None)
    if tf_config:
        env[distribute.TF_CONFIG] = tf_config
    return subprocess.Popen([sys.executable, WORKER, *flags], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _workers(flags_of, count=2):
    """Start ``count`` workers on free ports; ``flags_of(i)`` are worker i's flags."""
    hosts = [f"127.0.0.1:{port}" for port in distribute.free_ports(count)]
    return [_start(flags_of(i), distribute.tf_config(hosts, i)) for i in range(count)]


def _finish(processes, timeout=TIMEOUT):
    """``[(exit code, output)]`` of ``processes``; all are killed (SIGKILL, only these
    PIDs) and the test fails if any outlives ``timeout``."""
    deadline = time.monotonic() + timeout
    results = []
    try:
        for p in processes:
            out, _ = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            results.append((p.returncode, out))
    except subprocess.TimeoutExpired:
        for p in processes:
            if p.poll() is None:
                p.kill()
        outputs = [p.communicate()[0] for p in processes]
        pytest.fail(f"a worker ran over {timeout} s; outputs:\n" + "\n----\n".join(
            out[-2000:] for out in outputs))
    return results


def _ok(results):
    for code, out in results:
        assert code == 0, out[-3000:]


def _tensors(directory):
    """The model variables and the global step of the latest checkpoint in directory."""
    reader = tf.train.load_checkpoint(directory)
    names = [n for n in reader.get_variable_to_shape_map()
             if n.startswith("TinyConvNet/") and "/Momentum" not in n]
    return {n: reader.get_tensor(n) for n in names}, int(reader.get_tensor("global_step"))


def test_two_workers_train_as_one_process_with_two_replicas(tmp_path, digits_dir):
    """2 workers x batch 4 against one process with --num_clones=2 x batch 4: the same
    global batches (replica r reads shard file r in both), BatchNorm normalising each
    replica's batch in both; after 3 steps the workers hold identical weights and
    statistics, equal to the one process's within 1e-5.  All start from one checkpoint
    (their graphs differ, so seeded initial values would too).

    Without weight decay: with the default 4e-5 the conv weights of the two runs differ
    by up to 4.5e-4 after 3 steps (logits and BatchNorm statistics still within 1e-7);
    an open defect of the regularization under one of the two strategies."""
    register_tiny_net()
    start = make_checkpoint(str(tmp_path / "start" / "model.ckpt"), "tiny_convnet", 10)
    multi, single = str(tmp_path / "multi"), str(tmp_path / "single")
    data = {"dataset_dir": digits_dir, "checkpoint_path": start}
    workers = _workers(lambda i: _flags(multi, **data))
    reference = _start(_flags(single, num_clones=2, clone_on_cpu=True, **data))
    results = _finish(workers + [reference])
    _ok(results)
    chief, step0 = _tensors(multi)
    other, step1 = _tensors(os.path.join(multi, "worker_1"))
    one, step = _tensors(single)
    assert step0 == step1 == step == 3
    assert "global batch 8" in results[0][1] and "global batch 8" in results[2][1]
    assert sorted(chief) == sorted(other) == sorted(one) and len(chief) == 12
    mean = chief["TinyConvNet/conv1/BatchNorm/moving_mean"]
    assert np.abs(mean).max() > 1e-3, "the statistics never moved: nothing was compared"
    for name in chief:
        np.testing.assert_array_equal(chief[name], other[name], err_msg=name)
        np.testing.assert_allclose(chief[name], one[name], rtol=1e-5, atol=1e-5,
                                   err_msg=name)
