"""Preemption (issue 22): SIGTERM or SIGINT stops training at a step boundary, every
worker at the same step, saves it, prints one line naming the step and how to resume,
and exits non-zero well inside Kubernetes' 30 s grace; a second signal exits at once;
slimtune-launch forwards the signal to its workers.  The interrupted run, resumed, is
the uninterrupted run to the bit.

The training runs are plain subprocesses (tests/distributed_worker.py: slimtune-train
with the tiny registered network, one intra-op and one inter-op thread) on loopback
ports, each with a hard timeout; on timeout only these child processes are killed.
"""

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from slimtune import distribute, launch
from test_distributed import _start  # one worker process on loopback, its own env

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "distributed_worker.py")
GRACE = 30.0  # Kubernetes' default: SIGTERM, then SIGKILL 30 s later
TIMEOUT = 300  # a hang guard for a whole run
STOPPED = re.compile(r"error: stopped by (.+) after step (\d+), saved (\S+): run the same "
                     r"command again to resume from there$")


def _flags(train_dir, digits_dir, engine, steps=10 ** 6, **extra):
    flags = {"train_dir": train_dir, "dataset_name": "digits", "dataset_dir": digits_dir,
             "model_name": "tiny_convnet", "train_image_size": 32, "batch_size": 4,
             "max_number_of_steps": steps, "seed": 1, "optimizer": "momentum",
             "learning_rate": 0.05, "batch_norm_decay": 0.5, "log_every_n_steps": 1,
             "save_summaries_secs": 100000, "save_interval_secs": 100000,
             "engine": engine}
    flags.update(extra)
    return [f"--{k}={v}" for k, v in flags.items()]


class Output:
    """The lines of ``process`` as they come (a thread reads them)."""

    def __init__(self, process):
        self.process, self.lines = process, []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def last_step(self):
        steps = [int(m.group(1)) for m in map(re.compile(r"^step (\d+)/").match, self.lines)
                 if m]
        return steps[-1] if steps else 0

    def wait_for_step(self, step, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while self.last_step() < step:
            if self.process.poll() is not None or time.monotonic() > deadline:
                _kill([self.process])
                pytest.fail("the run ended or hung before step "
                            f"{step}:\n" + "\n".join(self.lines[-30:]))
            time.sleep(0.05)

    def text(self):
        self.thread.join(timeout=10)
        return "\n".join(self.lines)


def _kill(processes):
    for p in processes:
        if p.poll() is None:
            p.kill()
            p.wait()


def _exit_within(processes, seconds):
    """Wait for ``processes`` (each killed if it outlives ``seconds``); returns the
    seconds the last one took."""
    started = time.monotonic()
    for p in processes:
        try:
            p.wait(timeout=max(0.1, started + seconds - time.monotonic()))
        except subprocess.TimeoutExpired:
            _kill(processes)
            pytest.fail(f"a process outlived the {seconds} s grace after the signal")
    return time.monotonic() - started


def _run(flags, tf_config=None, timeout=TIMEOUT):
    process = _start(flags, tf_config)
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill([process])
        pytest.fail(f"a run outlived {timeout} s")
    assert process.returncode == 0, out[-3000:]
    return out


def _stopped(output):
    """``(cause, step, checkpoint)`` of the run's last line, which must say it stopped."""
    last = output.text().splitlines()[-1]
    match = STOPPED.match(last)
    assert match, output.text()[-3000:]
    return match.group(1), int(match.group(2)), match.group(3)


def _tensors(directory):
    """Every tensor of the latest checkpoint in ``directory`` (but the Keras checkpoint's
    count of its saves, which a resumed run counts on)."""
    reader = tf.train.load_checkpoint(directory)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if not name.startswith("save_counter")}


def _assert_equal(got, want):
    assert sorted(got) == sorted(want)
    differ = [name for name in want if not np.array_equal(got[name], want[name])]
    assert not differ, f"{len(differ)} of {len(want)} tensors differ: {differ[:5]}"


def _interrupt_and_resume(tmp_path, digits_dir, engine, **extra):
    """SIGTERM a one-process run after step 2; returns the seconds to its exit and the
    step saved, after checking the resumed run against an uninterrupted one."""
    run, fresh = str(tmp_path / "run"), str(tmp_path / "fresh")
    process = _start(_flags(run, digits_dir, engine, **extra))
    output = Output(process)
    output.wait_for_step(2)
    process.send_signal(signal.SIGTERM)
    seconds = _exit_within([process], GRACE)
    assert process.returncode == 128 + signal.SIGTERM, output.text()[-3000:]
    cause, step, saved = _stopped(output)
    assert cause == "SIGTERM" and step >= 2
    assert saved == tf.train.latest_checkpoint(run) and saved.endswith(f"-{step}")
    resumed = _start(_flags(run, digits_dir, engine, steps=step + 2, **extra))
    reference = _start(_flags(fresh, digits_dir, engine, steps=step + 2, **extra))
    for p in (resumed, reference):
        out, _ = p.communicate(timeout=TIMEOUT)
        assert p.returncode == 0, out[-3000:]
    assert tf.train.latest_checkpoint(run).endswith(f"-{step + 2}")
    _assert_equal(_tensors(run), _tensors(fresh))
    return seconds, step


@pytest.mark.parametrize("engine", ["slim", "keras"])
def test_sigterm_saves_the_step_and_a_resumed_run_is_the_uninterrupted_one(
        tmp_path, digits_dir, engine):
    seconds, step = _interrupt_and_resume(tmp_path, digits_dir, engine)
    print(f"{engine}: exited {seconds:.1f} s after SIGTERM, saved step {step}")


@pytest.mark.parametrize("engine", ["slim", "keras"])
def test_a_resumed_run_of_two_local_replicas_is_the_uninterrupted_one(tmp_path, digits_dir,
                                                                      engine):
    """--num_clones=2 in one process with --moving_average_decay: stopped at step 2 (no
    log step: --log_every_n_steps=10) and resumed to 4, against a run straight to 4,
    BatchNorm statistics and their averages included.  These once differed (slim: 8
    tensors, Keras: 4, weights equal): each replica's copy of a statistic drifted with its
    own batches, a save wrote their mean (slim) or one copy (Keras, averaged at log steps
    only) and a restore set every copy to it; both engines now average the copies every
    step."""
    extra = {"num_clones": 2, "clone_on_cpu": True, "moving_average_decay": 0.9,
             "log_every_n_steps": 10}
    run, fresh = str(tmp_path / "run"), str(tmp_path / "fresh")
    reference = _start(_flags(fresh, digits_dir, engine, steps=4, **extra))
    _run(_flags(run, digits_dir, engine, steps=2, **extra))
    _run(_flags(run, digits_dir, engine, steps=4, **extra))
    out, _ = reference.communicate(timeout=TIMEOUT)
    assert reference.returncode == 0, out[-3000:]
    assert tf.train.latest_checkpoint(run).endswith("-4")
    _assert_equal(_tensors(run), _tensors(fresh))


def _two_workers(flags_of):
    hosts = [f"127.0.0.1:{port}" for port in distribute.free_ports(2)]
    return [_start(flags_of(i), distribute.tf_config(hosts, i)) for i in range(2)]


def _sigterm_one_worker(run, digits_dir, engine, **extra):
    """Two workers on loopback; SIGTERM to worker 1 after step 2.  Both stop at the same
    step and save it; returns the seconds to the last exit and that step."""
    workers = _two_workers(lambda i: _flags(run, digits_dir, engine, **extra))
    outputs = [Output(p) for p in workers]
    try:
        outputs[0].wait_for_step(2)
    finally:
        if workers[0].poll() is not None:
            _kill(workers)
    workers[1].send_signal(signal.SIGTERM)
    seconds = _exit_within(workers, GRACE)
    (cause0, step0, saved0), (cause1, step1, saved1) = map(_stopped, outputs)
    assert [p.returncode for p in workers] == [143, 143]
    assert (cause0, cause1) == ("a signal to another worker", "SIGTERM")
    assert step0 == step1 >= 2
    for saved, directory in ((saved0, run), (saved1, os.path.join(run, "worker_1"))):
        assert saved == tf.train.latest_checkpoint(directory)
        assert saved.endswith(f"-{step0}")
    return seconds, step0


def _two_worker_run(run, digits_dir, engine, steps, **extra):
    workers = _two_workers(lambda i: _flags(run, digits_dir, engine, steps=steps, **extra))
    for p in workers:
        try:
            out, _ = p.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            _kill(workers)
            pytest.fail(f"a worker outlived {TIMEOUT} s")
        assert p.returncode == 0, out[-3000:]


def _preempt_two_workers(tmp_path, digits_dir, engine, compare):
    run = str(tmp_path / "run")
    seconds, step = _sigterm_one_worker(run, digits_dir, engine)
    print(f"{engine}, 2 workers: both exited {seconds:.1f} s after SIGTERM to worker 1, "
          f"saved step {step}")
    _two_worker_run(run, digits_dir, engine, step + 2)
    assert tf.train.latest_checkpoint(run).endswith(f"-{step + 2}")
    if compare:
        fresh = str(tmp_path / "fresh")
        _two_worker_run(fresh, digits_dir, engine, step + 2)
        _assert_equal(_tensors(run), _tensors(fresh))


def test_sigterm_to_one_of_two_workers_stops_both_at_the_same_saved_step(tmp_path,
                                                                          digits_dir):
    """Slim engine: both save the same step and exit 143 within the grace; the two
    restarted go on from it."""
    _preempt_two_workers(tmp_path, digits_dir, "slim", compare=False)


def test_sigterm_to_one_of_two_keras_workers_stops_both_at_the_same_saved_step(
        tmp_path, digits_dir):
    """The same on the Keras engine."""
    _preempt_two_workers(tmp_path, digits_dir, "keras", compare=False)


# The slim engine's BatchNorm statistics once differed here (weights equal): each
# replica's copy drifted with its own batches, a save wrote their mean and a restore set
# every copy to it; now the copies are averaged every step (see
# slimtune.slim_engine.graph._with_statistics_averaged).
@pytest.mark.slow
@pytest.mark.parametrize("engine", ["slim", "keras"])
def test_two_workers_interrupted_and_resumed_are_the_uninterrupted_run(tmp_path, digits_dir,
                                                                       engine):
    """The workers' interrupted-and-resumed run against two uninterrupted workers."""
    _preempt_two_workers(tmp_path, digits_dir, engine, compare=True)


# -- the signals, without TensorFlow -------------------------------------------------------
def _python(code, **popen):
    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE))
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            **popen)


def _wait_for_lines(output, text, count=1, timeout=60):
    deadline = time.monotonic() + timeout
    while sum(text in line for line in output.lines) < count:
        if time.monotonic() > deadline or output.process.poll() is not None:
            _kill([output.process])
            pytest.fail(f"no {text!r} x{count}:\n" + "\n".join(output.lines))
        time.sleep(0.02)


def test_the_first_signal_is_recorded_and_a_second_exits_at_once():
    process = _python("""
        import time
        from slimtune import preemption

        with preemption.Signals() as signals:
            print("ready", flush=True)
            while signals.received is None:
                time.sleep(0.01)
            print("recorded", signals.received, flush=True)
            time.sleep(60)  # a long step
        print("not reached", flush=True)
        """)
    output = Output(process)
    _wait_for_lines(output, "ready")
    process.send_signal(signal.SIGTERM)
    _wait_for_lines(output, f"recorded {int(signal.SIGTERM)}")
    assert process.poll() is None
    process.send_signal(signal.SIGINT)
    seconds = _exit_within([process], 5)
    text = output.text()
    assert process.returncode == 128 + signal.SIGINT and seconds < 2, text
    assert "slimtune: SIGTERM received: stopping after this step" in text
    assert text.splitlines()[-1] == "slimtune: SIGINT received again: exiting now without saving"


def test_signals_restores_the_handlers_and_installs_none_off_the_main_thread():
    from slimtune import preemption

    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with preemption.Signals():
        assert signal.getsignal(signal.SIGTERM) not in before
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    seen = []

    def elsewhere():
        with preemption.Signals() as signals:
            seen.append((signal.getsignal(signal.SIGTERM), signals.received))

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join()
    assert seen == [(before[0], None)]


# A launched worker: records the signals it gets, "saves" for a while, exits 128 + signal
# (or, told to, ignores them all).
LAUNCHED = """\
import json, os, signal, sys, time
index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
got = []
for signum in (signal.SIGTERM, signal.SIGINT):
    signal.signal(signum, lambda signum, frame: got.append(signum))
print("ready", flush=True)
while not got or "--ignore=%d" % index in sys.argv:
    time.sleep(0.02)
time.sleep(1.0)  # saving
print("saved after", len(got), "signal", got[0], flush=True)
sys.exit(128 + got[0])
"""


def _launcher(tmp_path, grace, *args):
    program = tmp_path / "worker.py"
    program.write_text(LAUNCHED)
    process = _python(f"""
        import sys
        from slimtune import launch

        processes = launch.start_workers(2, {list(args)!r}, program={str(program)!r})
        sys.exit(launch.supervise(processes, grace={grace}))
        """)
    output = Output(process)
    _wait_for_lines(output, "ready", count=2)
    return process, output


def test_the_launcher_forwards_sigterm_to_every_worker_once_and_waits_for_them(tmp_path):
    process, output = _launcher(tmp_path, 20)
    process.send_signal(signal.SIGTERM)
    seconds = _exit_within([process], GRACE)
    text = output.text()
    assert process.returncode == 143 and 1 < seconds < 10, text
    for index in (0, 1):
        assert f"[worker {index}] saved after 1 signal {int(signal.SIGTERM)}" in text
    assert "slimtune-launch: forwarded signal 15 to the workers" in text


def test_the_launcher_kills_workers_still_running_after_the_grace(tmp_path):
    process, output = _launcher(tmp_path, 2, "--ignore=1")
    process.send_signal(signal.SIGINT)
    seconds = _exit_within([process], GRACE)
    text = output.text()
    assert process.returncode == 130 and 2 < seconds < 10, text
    assert "[worker 0] saved after 1 signal 2" in text and "[worker 1] saved" not in text
    assert "workers still running 2 s after the signal: killed" in text
