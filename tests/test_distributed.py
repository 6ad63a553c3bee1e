"""Multi-worker training of the slim engine, on 127.0.0.1 only.

Each run is a set of plain subprocesses (tests/distributed_worker.py: slimtune-train with
one intra-op and one inter-op thread, the tiny registered network, no GPU) on free
loopback ports, each with a hard timeout; on timeout only these child processes are
killed.  No TensorFlow multi_process_runner (it reports every test skipped without dill).
"""

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from slimtune import distribute
from slim_checkpoints import make_checkpoint
from test_register_architecture import _register as register_tiny_net

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "distributed_worker.py")
TIMEOUT = 600  # a hang guard, not a speed test: a 2-worker run of the tiny net takes 10-170 s
# here, and the suite runs another test beside it (pytest-xdist)


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

    With weight decay 1e-3: each worker holds the regularization losses of its own
    variables, the one process only in its first replica.  With a --clip_gradient_norm
    too large to bind: the clip's all-reduce of the gradients runs between the workers
    (test_replicas_take_the_step_one_process_takes_on_the_global_batch checks it binds
    on the summed gradient)."""
    register_tiny_net()
    start = make_checkpoint(str(tmp_path / "start" / "model.ckpt"), "tiny_convnet", 10)
    multi, single = str(tmp_path / "multi"), str(tmp_path / "single")
    data = {"dataset_dir": digits_dir, "checkpoint_path": start, "weight_decay": 1e-3,
            "clip_gradient_norm": 100.0}
    chief, _ = _two_workers_and_one_process(_flags, _tensors, multi, single, data)
    mean = chief["TinyConvNet/conv1/BatchNorm/moving_mean"]
    assert np.abs(mean).max() > 1e-3, "the statistics never moved: nothing was compared"


def _two_workers_and_one_process(flags, tensors, multi, single, data, steps=3):
    """Train 2 workers in ``multi`` and one process with --num_clones=2 in ``single`` with
    ``flags(dir, **data)``; check both at ``steps`` with global batch 8, the workers'
    ``tensors(dir)`` identical and equal to the one process's within 1e-5.  Returns
    the chief's tensors and the outputs."""
    workers = _workers(lambda i: flags(multi, **data))
    reference = _start(flags(single, num_clones=2, clone_on_cpu=True, **data))
    results = _finish(workers + [reference])
    _ok(results)
    chief, step0 = tensors(multi)
    other, step1 = tensors(os.path.join(multi, "worker_1"))
    one, step = tensors(single)
    assert step0 == step1 == step == steps
    assert "global batch 8" in results[0][1] and "global batch 8" in results[2][1]
    assert sorted(chief) == sorted(other) == sorted(one) and len(chief) == 12, sorted(chief)
    for name in chief:
        np.testing.assert_array_equal(chief[name], other[name], err_msg=name)
        np.testing.assert_allclose(chief[name], one[name], rtol=1e-5, atol=1e-5,
                                   err_msg=name)
    return chief, [out for _, out in results]


# -- faults --------------------------------------------------------------------------------
@pytest.mark.parametrize("engine", [
    "slim", pytest.param("keras", marks=pytest.mark.slow)])  # keras: ~40 s more here
def test_a_killed_worker_stops_the_other_with_a_clear_error(tmp_path, digits_dir, engine):
    workers = _workers(lambda i: _flags(str(tmp_path / "run"), steps=100000,
                                        dataset_dir=digits_dir, engine=engine))
    lines, deadline = [], time.monotonic() + TIMEOUT
    try:
        for line in workers[1].stdout:  # wait until both train
            lines.append(line)
            if line.startswith("step ") or time.monotonic() > deadline:
                break
        assert any(line.startswith("step ") for line in lines), "".join(lines)[-2000:]
        workers[1].kill()
        killed_at = time.monotonic()
        (code, out), = _finish(workers[:1], timeout=90)
        waited = time.monotonic() - killed_at
    finally:
        _finish(workers, timeout=10)
    assert code != 0
    assert "lost the other workers" in out and "resume from" in out, out[-2000:]
    assert waited < 90


@pytest.mark.slow  # ~20 s here; the settings check is covered by the cheap row tests below
def test_a_worker_with_other_flags_is_refused_naming_both_values(tmp_path, digits_dir):
    workers = _workers(lambda i: _flags(str(tmp_path / "run"), dataset_dir=digits_dir,
                                        batch_size=4 + 4 * i))
    results = _finish(workers)
    for task, (code, out) in enumerate(results):
        assert code == 1, out[-2000:]
        assert (f"batch_size differs between workers: worker {task} (this one) has "
                f"{4 + 4 * task}, worker {1 - task} has {8 - 4 * task}") in out, out[-2000:]


def test_a_train_dir_another_worker_writes_is_refused(tmp_path):
    from slimtune import train
    from slimtune.errors import UsageError

    run_dir = str(tmp_path / "run")
    holder = distribute.lock_dir(run_dir, distribute.Placement())
    try:
        with pytest.raises(UsageError, match=r"run is already written by one device, pid "):
            train.train(train.TrainConfig(train_dir=run_dir, dataset_name="digits",
                                          worker_hosts="127.0.0.1:1,127.0.0.1:2"))
    finally:
        holder.close()


def _keras_tensors(directory):
    """The model's variables (by checkpoint key) and the step of the latest Keras-engine
    checkpoint in ``directory``."""
    reader = tf.train.load_checkpoint(directory)
    keys = reader.get_variable_to_shape_map()
    step, = [k for k in keys if k.startswith("optimizer/") and "iterations" in k]
    model = {k: reader.get_tensor(k) for k in keys  # trained weights sit under the optimizer
             if k.startswith("model/") or "_trainable_variables/" in k}
    return model, int(reader.get_tensor(step))


def _engine_checkpoints(engine):
    """``(tensors(dir), checkpoint basename)`` of an engine's train dirs."""
    if engine == "keras":
        from slimtune.keras_engine.trainer import CHECKPOINT_BASENAME
        return _keras_tensors, CHECKPOINT_BASENAME
    from slimtune.slim_engine.loop import CHECKPOINT_BASENAME
    return _tensors, CHECKPOINT_BASENAME


# ~90 s per engine on loaded cores (two launches and one process): the Keras engine by
# default (its skip of the data already read is its own), the slim engine nightly.
@pytest.mark.parametrize("engine", [pytest.param("slim", marks=pytest.mark.slow), "keras"])
def test_the_launcher_prefixes_each_worker_and_a_rerun_resumes(tmp_path, digits_dir, engine):
    """2 workers launched to step 2, then the same command to step 4: the rerun resumes
    from each worker's step-2 checkpoint, the global step continues, and the data
    position follows it: the workers end identical and equal (1e-5) to one process with
    --num_clones=2 trained to step 4 without a stop on the same global batches, which a
    rerun that read its data from the start again would miss.  lenet preprocessing: no
    random augmentation (tests/test_preemption.py covers a resumed run's augmentation)."""
    import io

    from slimtune import launch

    register_tiny_net()
    tensors, basename = _engine_checkpoints(engine)
    start = make_checkpoint(str(tmp_path / "start" / "model.ckpt"), "tiny_convnet", 10)
    run_dir, single = str(tmp_path / "run"), str(tmp_path / "single")
    data = {"dataset_dir": digits_dir, "checkpoint_path": start, "engine": engine,
            "preprocessing_name": "lenet"}
    reference = _start(_flags(single, steps=4, num_clones=2, clone_on_cpu=True, **data))
    outputs = []
    for steps in (2, 4):
        out = io.StringIO()
        processes = launch.start_workers(2, _flags(run_dir, steps=steps, **data),
                                         program=WORKER)
        timer = threading.Timer(TIMEOUT, launch.stop, args=(processes, 1.0))
        timer.start()
        try:
            code = launch.supervise(processes, out)
        finally:
            timer.cancel()
        outputs.append(out.getvalue())
        assert code == 0, outputs[-1][-3000:]
    _ok(_finish([reference]))
    first, second = outputs
    assert "[worker 0] step 2/2" in first and "[worker 1] step 2/2" in first
    assert f"[worker 1] Resuming from {run_dir}/worker_1/{basename}-2" in second
    assert "[worker 0] step 4/4" in second and "step 1/" not in second
    chief, step0 = tensors(run_dir)
    other, step1 = tensors(os.path.join(run_dir, "worker_1"))
    one, step = tensors(single)
    assert step0 == step1 == step == 4
    assert sorted(chief) == sorted(one) and chief, sorted(chief)
    for name in chief:
        np.testing.assert_array_equal(chief[name], other[name], err_msg=name)
        np.testing.assert_allclose(chief[name], one[name], rtol=1e-5, atol=1e-5,
                                   err_msg=name)


def test_a_launch_stops_every_worker_when_one_fails_and_returns_its_code(tmp_path):
    """Without TensorFlow: worker 1 fails with code 3 at once, worker 0 would run for
    a minute; the launcher stops it and returns 3."""
    import io

    from slimtune import launch

    program = tmp_path / "worker.py"
    program.write_text(
        "import json, os, sys, time\n"
        "index = json.loads(os.environ['TF_CONFIG'])['task']['index']\n"
        "print('started', sys.argv[1:], flush=True)\n"
        "sys.exit(3) if index == 1 else time.sleep(60)\n")
    out, started = io.StringIO(), time.monotonic()
    code = launch.launch(2, ["--flag=1"], program=str(program), out=out)
    text = out.getvalue()
    assert code == 3 and time.monotonic() - started < 30, text
    assert "[worker 0] started ['--flag=1']" in text and "[worker 1] started" in text
    assert "worker 1 exited with code 3; stopping the others" in text


def test_the_launcher_refuses_cluster_flags():
    from slimtune import launch
    from slimtune.errors import UsageError

    with pytest.raises(UsageError, match="^--task=1: slimtune-launch gives each worker"):
        launch.start_workers(2, ["--train_dir=/tmp/x", "--task=1"])


# -- the cluster, without TensorFlow -------------------------------------------------------
def test_the_cluster_comes_from_flags_or_tf_config():
    hosts = "a:1,b:2,c:3"
    cluster = distribute.cluster_from(hosts, 2, 3, environ={})
    assert cluster.workers == ("a:1", "b:2", "c:3") and cluster.task == 2
    assert cluster.own_dir("/t") == "/t/worker_2" and not cluster.is_chief
    config = '{"cluster": {"chief": ["a:1"], "worker": ["b:2"]}, "task": {"type": "worker", "index": 0}}'
    cluster = distribute.cluster_from(environ={"TF_CONFIG": config})
    assert cluster.workers == ("a:1", "b:2") and cluster.task == 1
    tf_config = distribute.tf_config(["a:1", "b:2"], 0)
    assert distribute.cluster_from(environ={"TF_CONFIG": tf_config}).is_chief
    assert distribute.cluster_from(environ={}) is None


@pytest.mark.parametrize("kwargs, message", [
    ({"worker_hosts": "a:1,b:2", "task": 2}, "--task=2 is not a worker of --worker_hosts"),
    ({"worker_hosts": "a:1,b:2", "worker_replicas": 3}, "--worker_replicas=3 but the cluster"),
    ({"worker_replicas": 2}, "needs the workers' addresses: add --worker_hosts"),
    ({"worker_hosts": "a:1,a:1"}, "names a worker twice"),
    ({"worker_hosts": "a"}, "is not host:port"),
])
def test_a_cluster_that_cannot_be_is_refused(kwargs, message):
    from slimtune.errors import UsageError

    with pytest.raises(UsageError, match=message):
        distribute.cluster_from(environ={}, **kwargs)


def test_parameter_servers_are_refused_naming_the_supported_way():
    from slimtune import train
    from slimtune.errors import UsageError

    with pytest.raises(UsageError, match=r"^--num_ps_tasks=2: parameter servers are not "
                                         r"supported.*--worker_hosts=h0:p0,h1:p1 --task=i"):
        distribute.placement(train.TrainConfig(num_ps_tasks=2), environ={})


def test_settings_travel_in_rows_and_a_difference_names_both_values():
    from slimtune.errors import UsageError

    cluster = distribute.Placement(distribute.Cluster(("a:1", "b:2"), 0, "--worker_hosts"))
    mine = {"model_name": "tiny", "batch_size": 4, "host": "h", "dir": "/t"}
    theirs = dict(mine, dir="/t/worker_1", batch_norm="decay 0.9")
    rows = distribute.settings_rows(mine, cluster) + distribute.settings_rows(
        theirs, dataclasses_replace_task(cluster, 1))
    everyone = distribute.settings_of_rows(rows)
    assert everyone == [mine, theirs]
    with pytest.raises(UsageError, match=r"^batch_norm differs between workers: worker 0 "
                                         r"\(this one\) has None, worker 1 has 'decay 0.9'"):
        distribute.check_same_settings(everyone, 0)
    with pytest.raises(UsageError, match="workers 0 and 1 both write /t on h"):
        distribute.check_same_settings([mine, dict(mine)], 1)


def dataclasses_replace_task(placement, task):
    import dataclasses

    return dataclasses.replace(placement, cluster=dataclasses.replace(placement.cluster,
                                                                      task=task))


# -- the replica function against one process, in one process ---------------------------
def test_replicas_take_the_step_one_process_takes_on_the_global_batch(digits_dir):
    """One step on 8 fixed images as one replica and as 2 replicas x 4 (MirroredStrategy,
    the slim engine's replica function, as its multi-worker runs use it; frozen BatchNorm,
    so each image's loss is its own): the same loss, the same weight decay (counted once, not per replica:
    the optimizer sums the replicas' gradients) and the same weights within 1e-6.  With
    --clip_gradient_norm the clip is on the summed gradient: clipping each replica's
    share, as slim's create_train_op does, differed by up to 1.8e-3 here, and the
    replicas' summed unscaled losses took twice the step (4.5e-3 in conv1)."""
    import json

    weight_decay, clip = 1e-2, 0.02
    out = subprocess.run(
        [sys.executable, os.path.join(HERE, "replica_step_check.py"), digits_dir,
         str(weight_decay), str(clip)], capture_output=True, text=True, timeout=TIMEOUT,
        env=dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2"))
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.splitlines()[-1])
    start = {name: np.array(value) for name, value in report["start"].items()}
    decay = weight_decay * sum(float(np.sum(w ** 2)) / 2 for name, w in start.items()
                               if name.endswith("/weights"))
    moved = {}
    for kind in ("plain", "clipped"):
        one, two = report[kind]["one"], report[kind]["two"]
        assert one["regularization"] == pytest.approx(decay, rel=1e-5)
        assert two["regularization"] == pytest.approx(decay, rel=1e-5)
        assert two["loss"] == pytest.approx(one["loss"], rel=1e-5)
        for name, value in start.items():
            np.testing.assert_allclose(two["weights"][name], one["weights"][name],
                                       rtol=0, atol=1e-6, err_msg=f"{kind} {name}")
        moved[kind] = {name: np.abs(np.array(one["weights"][name]) - value).max()
                       for name, value in start.items()}
    for name in start:  # the step moved every weight, and the clip bound
        assert moved["plain"][name] > 1e-3 and moved["clipped"][name] < moved["plain"][name]


def test_a_worker_that_stopped_during_a_save_rolls_every_worker_back_to_a_common_step(
        tmp_path):
    """Without TensorFlow sessions: worker 0 saved steps 2, 3 and 4; worker 1 stopped
    while saving 4.  Every worker resumes from 3, the last step both hold: a worker's
    checkpoint file then lists nothing later.  With no common step the error names each
    worker's steps and dir."""
    from slimtune.errors import UsageError
    from slimtune import checkpoint

    def worker_dir(name, steps):
        directory = str(tmp_path / name)
        os.makedirs(directory)
        paths = [os.path.join(directory, f"model.ckpt-{step}") for step in steps]
        for path in paths:
            open(path + ".index", "w").close()
        tf.compat.v1.train.update_checkpoint_state(directory, paths[-1], paths)
        return directory

    chief, other = worker_dir("run", [2, 3, 4]), worker_dir("worker_1", [1, 2, 3])
    assert checkpoint.checkpoint_steps(chief) == [2, 3, 4]
    everyone = [{"resume_step": 4, distribute.CHECKPOINT_STEPS: [2, 3, 4], "dir": chief},
                {"resume_step": 3, distribute.CHECKPOINT_STEPS: [1, 2, 3], "dir": other}]
    assert distribute.resume_step_everyone_holds(everyone) == 3
    assert distribute.resume_step_everyone_holds([everyone[0], everyone[0]]) is None
    checkpoint.roll_back(chief, 3)
    assert tf.train.latest_checkpoint(chief).endswith("model.ckpt-3")
    assert checkpoint.checkpoint_steps(chief) == [2, 3]
    with pytest.raises(UsageError, match=r"^the workers hold no checkpoint of a common step "
                                         r"\(worker 0: steps \[4\] in .*/run; worker 1: "
                                         r"steps \[3\] in .*/worker_1\): copy"):
        distribute.resume_step_everyone_holds([
            dict(everyone[0], checkpoint_steps=[4]), dict(everyone[1], checkpoint_steps=[3])])
