"""slimtune-launch: run a multi-worker training on this machine.

Picks a free loopback port per worker, gives each worker process its ``TF_CONFIG``
(see :mod:`slimtune.distribute`), starts them, prints their output line by line
prefixed ``[worker i]``, and when one fails stops the others and exits with the first
failure's exit code.  The workers run slimtune-train, or ``module`` (any program that
reads TF_CONFIG, such as a test's worker script).

SIGTERM or SIGINT to the launcher (a cluster manager stopping it, Ctrl-C) is forwarded
to every worker, once: they stop after the same step, save it and exit
(:mod:`slimtune.preemption`); the launcher waits for them up to ``PREEMPT_GRACE``
seconds, kills those still running, and exits 128 + the signal's number.  A second
signal is forwarded too (the workers then exit at once, without saving).  The workers
run in their own session, so a Ctrl-C in the terminal reaches them through the launcher
only, not twice.  A worker that exits 143 or 130 (it got a signal of its own, and every
worker stops at the same step) is not stopped with the others: they are waited for as
after a forwarded signal.
"""

import os
import signal
import subprocess
import sys
import threading
import time

from slimtune import distribute
from slimtune.errors import UsageError

TRAIN_MODULE = "slimtune_tools.train_image_classifier"
# Flags the launcher sets through TF_CONFIG; a worker must not be given its own.
CLUSTER_FLAGS = ("--worker_hosts", "--task", "--worker_replicas", "--num_ps_tasks")
STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL when stopping a worker
# Seconds the workers get to save and exit after a signal, before SIGKILL: more than a
# step and a save take, less than Kubernetes' 30 s before it kills the launcher.
PREEMPT_GRACE = 25.0
PREEMPTED_CODES = (128 + signal.SIGTERM, 128 + signal.SIGINT)


def _check(num_workers, train_args):
    if num_workers < 1:
        raise UsageError(f"--num_workers={num_workers} must be 1 or more")
    for arg in train_args:
        if arg.split("=", 1)[0] in CLUSTER_FLAGS:
            raise UsageError(f"{arg}: slimtune-launch gives each worker its place in the "
                             "cluster (TF_CONFIG); remove the flag")


def _command(program, train_args):
    if program.endswith(".py"):
        return [sys.executable, program, *train_args]
    return [sys.executable, "-m", program, *train_args]


def start_workers(num_workers, train_args, program=TRAIN_MODULE, host="127.0.0.1"):
    """Start the workers; returns their ``Popen``s (output piped, merged)."""
    _check(num_workers, train_args)
    hosts = [f"{host}:{port}" for port in distribute.free_ports(num_workers, host)]
    processes = []
    for index in range(num_workers):
        env = dict(os.environ, **{distribute.TF_CONFIG: distribute.tf_config(hosts, index)})
        processes.append(subprocess.Popen(
            _command(program, train_args), env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, bufsize=1, start_new_session=True))
    return processes


def _stream(index, process, out, lock):
    for line in process.stdout:
        with lock:
            out.write(f"[worker {index}] {line}")
            out.flush()


def stop(processes, grace=STOP_GRACE):
    """Stop the ``processes`` still running: SIGTERM, then SIGKILL after ``grace``
    seconds (a worker blocked in a collective can ignore SIGTERM)."""
    running = [p for p in processes if p.poll() is None]
    for p in running:
        p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in running:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


class _Forwarding:
    """While entered (from the main thread; elsewhere it forwards nothing), SIGTERM and
    SIGINT to the launcher go to every worker still running; the first one's number is
    :attr:`signum`, and :attr:`deadline` (``time.monotonic``) ends the workers' grace."""

    def __init__(self, processes, grace=PREEMPT_GRACE):
        self.processes, self.grace = processes, grace
        self.signum = self.deadline = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._forward)
        return self

    def __exit__(self, *exc):
        for signum, previous in self._previous.items():
            signal.signal(signum, signal.SIG_DFL if previous is None else previous)
        return False

    def _forward(self, signum, frame):
        if self.signum is None:
            self.signum = signum
            self.wait_for_saves()
        for p in self.processes:
            if p.poll() is None:
                p.send_signal(signum)

    def wait_for_saves(self):
        """Give the workers the grace from now (unless already given)."""
        if self.deadline is None:
            self.deadline = time.monotonic() + self.grace


def supervise(processes, out=sys.stdout, poll=0.2, grace=PREEMPT_GRACE):
    """Stream every worker's output; when one exits non-zero stop the others (a worker
    stopped by a signal: wait for them).  Returns the first failure's exit code (0 when
    all succeed; 128 + the signal's number after a forwarded signal)."""
    lock = threading.Lock()
    threads = [threading.Thread(target=_stream, args=(i, p, out, lock), daemon=True)
               for i, p in enumerate(processes)]
    for thread in threads:
        thread.start()

    def say(message):
        with lock:
            out.write(f"slimtune-launch: {message}\n")
            out.flush()

    try:
        with _Forwarding(processes, grace) as forwarding:
            first_failure = _watch(processes, poll, forwarding, say)
    except KeyboardInterrupt:  # not the main thread: nothing was forwarded
        stop(processes)
        first_failure = 130
    for thread in threads:
        thread.join(timeout=5)
    if not first_failure:
        first_failure = next((p.returncode for p in processes if p.returncode), 0)
    return first_failure


def _watch(processes, poll, forwarding, say):
    """Wait for the workers; returns the exit code that decides (0: none yet)."""
    announced = False
    while None in [p.poll() for p in processes]:  # every one polled, each time
        if forwarding.signum is not None and not announced:
            announced = True
            say(f"forwarded signal {forwarding.signum} to the workers; waiting up to "
                f"{forwarding.grace:.0f} s for them to save and exit")
        failed = [(i, p.returncode) for i, p in enumerate(processes)
                  if p.returncode not in (None, 0)]
        if failed and forwarding.deadline is None:
            index, code = failed[0]
            if code not in PREEMPTED_CODES:
                say(f"worker {index} exited with code {code}; stopping the others")
                stop(processes)
                return code
            say(f"worker {index} stopped on a signal (exit code {code}); waiting up to "
                f"{forwarding.grace:.0f} s for the others to save the same step")
            forwarding.wait_for_saves()
        if forwarding.deadline is not None and time.monotonic() > forwarding.deadline:
            say(f"workers still running {forwarding.grace:.0f} s after the signal: killed")
            for p in processes:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            break
        time.sleep(poll)
    return 0 if forwarding.signum is None else 128 + forwarding.signum


def launch(num_workers, train_args, program=TRAIN_MODULE, out=sys.stdout):
    """Run ``num_workers`` workers of ``train_args`` on this machine; returns the exit
    code (the first failing worker's, else 0)."""
    return supervise(start_workers(num_workers, train_args, program), out)
