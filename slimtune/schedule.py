"""When a training run saves, writes summaries and prints a progress line, and the step
loop that follows that schedule: one for both engines (:mod:`slimtune.slim_engine.loop`,
:mod:`slimtune.keras_engine.trainer`), which differ only in how a step runs.

Saves come every --save_interval_steps and every --save_interval_secs; summaries every
--save_summaries_secs and after the first step of a fresh run; a progress line every
--log_every_n_steps and at the last step; the last step is always saved.  A time is
measured on this worker's clock, so it is only a *wish*: the workers of a multi-worker
run must all take part in every save (a save is a collective), and their clocks differ.
Each step therefore carries every worker's wish to the others (the engine sums them in
the step) and every worker acts on the sum, so all save at the same steps.  A
non-finite loss stops the run with the last good checkpoint kept.

A SIGTERM or SIGINT (:mod:`slimtune.preemption`, caught while :meth:`Schedule.run`
runs) is a third wish, to stop: summed with the others, so a signal to any one worker
stops every worker after the same step.  That step is saved (unless it just was) and
the run ends with :class:`~slimtune.errors.Preempted`, naming the step and the
checkpoint; the same command resumes there.

Pure Python (no TensorFlow): the decisions are tested without a session.  Only
:func:`event_scalars`, which reads a run's scalars back, imports TensorFlow.
"""

import collections
import math
import time

from slimtune import preemption
from slimtune.errors import Preempted, TrainingDiverged
from slimtune.progress import Meter

# The TensorBoard tags of a training run's scalars, by what each measures: both engines
# write them, slimtune-verify-training reads them back.
SUMMARY_TAGS = {
    "total_loss": "losses/total_loss",
    "cross_entropy": "losses/cross_entropy",
    "regularization": "losses/regularization",
    "learning_rate": "training/learning_rate",
    "accuracy": "training/train_batch_accuracy",
    "images_per_sec": "training/images_per_sec",
    "loss_scale": "training/loss_scale",  # --mixed_precision=float16 runs only
}


def event_scalars(train_dir, key):
    """``{step: value}`` of the scalar ``SUMMARY_TAGS[key]`` in a run's TensorBoard events
    (``train_dir/events.out.tfevents.*``, every file, a later write of a step winning)."""
    import glob
    import os

    import tensorflow as tf

    found = {}
    for path in sorted(glob.glob(os.path.join(train_dir, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == SUMMARY_TAGS[key]:
                    found[event.step] = (value.simple_value if value.HasField("simple_value")
                                         else float(tf.make_ndarray(value.tensor)))
    return found

# What this worker wants after the coming step, by its own clock, and whether it got a
# signal to stop (bools).
Wish = collections.namedtuple("Wish", "save summary stop", defaults=(False,))
# What the engine reports of a step it ran: its loss, whether some worker wished a save
# (the wishes summed over the workers), whether it fetched a summary to write, and
# whether some worker wished to stop (summed too).
Done = collections.namedtuple("Done", "loss save summarised stop", defaults=(False,))


class Schedule:
    """The step, the last loss and the times of the last save and summary of one run,
    from ``step`` (the global step the run starts at) to --max_number_of_steps (forever
    without); ``cfg`` is a ``train.TrainConfig``, ``num_replicas`` the replicas whose
    batches make one step, ``saved`` whether ``train_dir`` already holds a checkpoint
    (of ``step``: it is not saved again).

    :meth:`run` drives an ``engine`` that provides:

    - ``run_step(wish)``: run one step with this worker's :class:`Wish`; return
      :class:`Done` (the schedule's ``step`` is still the step before it);
    - ``summarise()``: write the summary the step fetched, at the schedule's ``step``;
    - ``progress()``: the fields after ``loss`` on a progress line (a dict of strings),
      called at a log step before the meter measures the time since the last one;
    - ``save()``: save a checkpoint of the schedule's ``step``;
    - ``stop()``: close what a failed or stopped run leaves open; returns the last good
      checkpoint (None: none saved yet), which the error names.

    ``signals`` (tests): what :meth:`run` reads the signal from, an object with a
    ``received`` attribute (a signal number or None); by default a
    :class:`slimtune.preemption.Signals` entered for the run.
    """

    def __init__(self, cfg, step, num_replicas, saved, log, clock=time.monotonic,
                 signals=None):
        self.cfg, self.step, self.log, self._clock = cfg, step, log, clock
        self.signals = signals
        if cfg.max_number_of_steps and step >= cfg.max_number_of_steps:
            # No step runs; a --precise_bn_batches cut short last time still happens.
            log(f"Already at step {step} >= --max_number_of_steps; nothing to do")
        self.meter = Meter(cfg.batch_size * num_replicas, step, cfg.max_number_of_steps,
                           clock=clock)
        self.last_save = self.last_summary = clock()
        self.last_saved_step = step if saved else None
        self.loss = float("nan")

    def running(self):
        max_steps = self.cfg.max_number_of_steps
        return max_steps is None or self.step < max_steps

    def wish(self, now):
        """This worker's :class:`Wish` at ``now`` (its clock)."""
        return Wish(save=now - self.last_save >= self.cfg.save_interval_secs,
                    summary=now - self.last_summary >= self.cfg.save_summaries_secs,
                    stop=self._signal() is not None)

    def _signal(self):
        return None if self.signals is None else self.signals.received

    def summary_due(self, wished):
        """Whether the coming step writes a summary: ``wished`` (a summary wish: this
        worker's, or the workers' sum from the step before), or it is a fresh run's
        first step."""
        return bool(wished) or self.step == 0

    def save_due(self, wished):
        """Whether the step just run is saved: every --save_interval_steps, or when
        ``wished`` (the workers' summed save wish: never one worker's own)."""
        every = self.cfg.save_interval_steps
        return bool((every and self.step % every == 0) or wished)

    def log_due(self):
        """Whether the step just run prints a progress line."""
        cfg = self.cfg
        return self.step % cfg.log_every_n_steps == 0 or self.step == cfg.max_number_of_steps

    def final_save_due(self):
        """Whether the last step still needs its save (it may have been saved on
        schedule, or be the checkpoint the run started from)."""
        return self.last_saved_step != self.step

    def run(self, engine):
        """Step ``engine`` to the end; the last step is always saved.  A signal stops it
        earlier (see the module's docstring)."""
        if self.signals is not None:  # a test's
            self._run(engine)
            return
        with preemption.Signals() as self.signals:
            self._run(engine)

    def _run(self, engine):
        while self.running():
            done = self._one_step(engine)
            if self.save_due(done.save):
                self._save(engine)
            if done.stop:
                self._stop(engine)
        if self.final_save_due():
            self._save(engine)

    def _stop(self, engine):
        """Some worker got a signal: every worker saves this step and raises."""
        if self.final_save_due():
            self._save(engine)
        signum = self._signal()
        cause = ("a signal to another worker" if signum is None
                 else preemption.name(signum))
        raise Preempted.at_step(self.step, engine.stop(), cause,
                                preemption.exit_code(signum or preemption.SIGTERM))

    def _one_step(self, engine):
        """One step; returns the engine's :class:`Done`."""
        now = self._clock()
        done = engine.run_step(self.wish(now))
        # A step advances the global step by exactly one; reading it in the step's own
        # run would race with that increment.
        self.loss, self.step = done.loss, self.step + 1
        if not math.isfinite(self.loss):
            raise TrainingDiverged.at_step(self.loss, self.step, engine.stop())
        if done.summarised:
            engine.summarise()
            self.last_summary = now
        if self.log_due():
            fields = engine.progress()
            self.meter.tick(self.step)
            self.log(self.meter.line(self.step, loss=f"{self.loss:.4f}", **fields))
        return done

    def _save(self, engine):
        engine.save()
        self.last_save, self.last_saved_step = self._clock(), self.step
