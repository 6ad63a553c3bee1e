"""slimtune-launch: run a multi-worker training on this machine.

Picks a free loopback port per worker, gives each worker process its ``TF_CONFIG``
(see :mod:`slimtune.distribute`), starts them, prints their output line by line
prefixed ``[worker i]``, and when one fails stops the others and exits with the first
failure's exit code.  The workers run slimtune-train, or ``module`` (any program that
reads TF_CONFIG, such as a test's worker script).
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
            stderr=subprocess.STDOUT, text=True, bufsize=1))
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


def supervise(processes, out=sys.stdout, poll=0.2):
    """Stream every worker's output; when one exits non-zero stop the others.  Returns
    the first failure's exit code (0 when all succeed)."""
    lock = threading.Lock()
    threads = [threading.Thread(target=_stream, args=(i, p, out, lock), daemon=True)
               for i, p in enumerate(processes)]
    for thread in threads:
        thread.start()
    first_failure = 0
    try:
        while None in [p.poll() for p in processes]:  # every one polled, each time
            failed = [(i, p.returncode) for i, p in enumerate(processes)
                      if p.returncode not in (None, 0)]
            if failed:
                index, first_failure = failed[0]
                with lock:
                    out.write(f"slimtune-launch: worker {index} exited with code "
                              f"{first_failure}; stopping the others\n")
                stop(processes)
                break
            time.sleep(poll)
    except KeyboardInterrupt:
        stop(processes)
        first_failure = 130
    for thread in threads:
        thread.join(timeout=5)
    if not first_failure:
        first_failure = next((p.returncode for p in processes if p.returncode), 0)
    return first_failure


def launch(num_workers, train_args, program=TRAIN_MODULE, out=sys.stdout):
    """Run ``num_workers`` workers of ``train_args`` on this machine; returns the exit
    code (the first failing worker's, else 0)."""
    return supervise(start_workers(num_workers, train_args, program), out)
