"""SIGTERM and SIGINT while training: stop at a step boundary, save, then exit.

Cluster managers stop a worker with SIGTERM and kill it after a grace period
(Kubernetes: 30 s).  :class:`Signals` is a context manager, entered around the step
loop only (:meth:`slimtune.schedule.Schedule.run`): the first SIGTERM or SIGINT is
recorded (:attr:`Signals.received`) and the loop stops after the step it is in, saves
that step and raises :class:`slimtune.errors.Preempted`; a second one exits at once,
without saving, with exit code 128 + the signal's number.

The signals are seen by a thread of ours, not by Python's handler: Python runs a
handler only in the main thread between two bytecodes, and the main thread may be
blocked for long in TensorFlow (a session run, a collective waiting for a lost peer).
The C-level handler Python installs writes each signal's number to a pipe
(``signal.set_wakeup_fd``), and the thread reading that pipe acts on it at once.  The
Python-level handler does nothing.

Handlers can be installed from the main thread only: entered in another thread (a
notebook's worker thread, a test), :class:`Signals` installs nothing and never reports
a signal.  On exit the previous handlers come back; one installed by C code (TensorFlow's
coordination service installs a SIGTERM handler that only records the signal, which left
multi-worker runs alive and saving nothing) cannot be put back from Python, and the
signal gets its default action instead.

Why not ``tf.distribute.experimental.PreemptionCheckpointHandler``: it serves only
TensorFlow 2's eager training with a ``tf.train.Checkpoint``/``CheckpointManager``
under a ``MultiWorkerMirroredStrategy`` (it wraps the step function and saves through
the manager).  The slim engine is our own ``tf.compat.v1.Session`` loop with a TF1
``Saver``, which it cannot drive; and one mechanism for both engines keeps them saving
the same step.  Instead every step already all-reduces each worker's wishes
(:mod:`slimtune.schedule`): a stop wish rides in the same sum, so all workers learn of
a signal to any one of them in the same step and stop after it.

Pure Python (no TensorFlow).
"""

import os
import signal
import sys
import threading

SIGTERM, SIGINT = signal.SIGTERM, signal.SIGINT
SIGNALS = (SIGTERM, SIGINT)


def name(signum):
    """``"SIGTERM"`` for ``signal.SIGTERM``."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def exit_code(signum):
    """A process ended by ``signum``'s exit code, shell style: 143 for SIGTERM, 130 for
    SIGINT."""
    return 128 + int(signum)


def _say(message):
    print(f"slimtune: {message}", file=sys.stderr, flush=True)


class Signals:
    """While entered (in the main thread), the first SIGTERM or SIGINT is recorded in
    :attr:`received` (its number; None before) and announced on stderr; a second one
    exits at once with code 128 + its number.  ``say(message)`` prints the lines."""

    def __init__(self, say=_say):
        self.received = None
        self._say = say
        self._previous = {}
        self._previous_fd = None
        self._pipe = None
        self._thread = None

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self
        read, write = os.pipe()
        os.set_blocking(write, False)
        self._pipe = (read, write)
        self._thread = threading.Thread(target=self._watch, args=(read,), daemon=True,
                                        name="slimtune-signals")
        self._thread.start()
        self._previous_fd = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        for signum in SIGNALS:
            self._previous[signum] = signal.signal(signum, _ignore)
        return self

    def __exit__(self, *exc):
        if self._pipe is None:
            return False
        for signum, previous in self._previous.items():
            signal.signal(signum, signal.SIG_DFL if previous is None else previous)
        signal.set_wakeup_fd(self._previous_fd)
        os.close(self._pipe[1])  # the thread reads end-of-file and ends
        self._thread.join(timeout=5)
        os.close(self._pipe[0])
        self._pipe = None
        return False

    def _watch(self, read):
        while True:
            try:
                data = os.read(read, 64)
            except OSError:
                return
            if not data:
                return
            for signum in data:
                if signum in SIGNALS:
                    self._on(signum)

    def _on(self, signum):
        if self.received is None:
            self.received = signum
            self._say(f"{name(signum)} received: stopping after this step and saving it "
                      "(a second signal exits at once, without saving)")
            return
        self._say(f"{name(signum)} received again: exiting now without saving")
        os._exit(exit_code(signum))


def _ignore(signum, frame):
    """The Python-level handler: the thread reading the wakeup pipe does the work."""
