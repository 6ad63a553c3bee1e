"""The session loop: one run of the train op per step, with progress lines, summaries
and checkpoints on schedule; a NaN loss or an input failure stops it with an error that
names the cause."""

import contextlib
import math
import os
import time

from slimtune.data import tfrecord
from slimtune.distribute import peers_guard
from slimtune.errors import DataError, TrainingDiverged
from slimtune.progress import Meter

CHECKPOINT_BASENAME = "model.ckpt"


class StepLoop:
    """Steps ``t`` (a :class:`graph.TrainGraph`) in ``sess`` from the restored global
    step to --max_number_of_steps (forever without it)."""

    def __init__(self, cfg, run, split, t, sess, saver, writer, log, placement):
        import tensorflow as tf

        self.cfg, self.run_info, self.split, self.t = cfg, run, split, t
        self.placement = placement
        self.sess, self.saver, self.writer, self.log = sess, saver, writer, log
        self.prefix = os.path.join(cfg.train_dir, CHECKPOINT_BASENAME)
        self.step = int(sess.run(t.global_step))
        if cfg.max_number_of_steps and self.step >= cfg.max_number_of_steps:
            # No step runs; a --precise_bn_batches cut short last time still happens.
            log(f"Already at step {self.step} >= --max_number_of_steps; nothing to do")
        self.meter = Meter(cfg.batch_size * placement.num_replicas, self.step,
                           cfg.max_number_of_steps)
        self.last_save = self.last_summary = time.monotonic()
        self.summary_due = self.step == 0
        self.last_saved_step = self.step if tf.train.latest_checkpoint(cfg.train_dir) else None
        self.loss = float("nan")

    def run_to_end(self):
        """Train to the last step; the last step is always saved.

        Every worker of a multi-worker run must save, and write summaries, at the same
        steps (both read BatchNorm statistics averaged over the workers): each step
        carries every worker's wish to save or summarise, and all act on their sum.
        """
        cfg = self.cfg
        while cfg.max_number_of_steps is None or self.step < cfg.max_number_of_steps:
            save_wished = self._one_step()
            due_steps = cfg.save_interval_steps and self.step % cfg.save_interval_steps == 0
            if due_steps or save_wished:
                self._save()
        if self.last_saved_step != self.step:
            self._save()

    def _save(self):
        with self._peers_guard():
            self.saver.save(self.sess, self.prefix, global_step=self.step)
        self.last_save, self.last_saved_step = time.monotonic(), self.step

    def _one_step(self):
        """One step; returns whether some worker wants a save now."""
        cfg, t = self.cfg, self.t
        now = time.monotonic()
        wish = [float(now - self.last_save >= cfg.save_interval_secs),
                float(now - self.last_summary >= cfg.save_summaries_secs)]
        fetches = [t.train_op, t.lr, t.accuracy, t.agreed]
        if self.summary_due:
            fetches.append(t.summary)
        out = self._run(fetches, wish)
        # Each run of the train op increments global_step by exactly one; reading the
        # variable in the same run would race with that increment.
        self.loss, self.step = float(out[0]), self.step + 1
        if not math.isfinite(self.loss):
            self.writer.close()
            raise _diverged(self.loss, self.step, cfg.train_dir)
        if self.summary_due:
            self.writer.add_summary(out[4], self.step)
            self.last_summary = now
        self.summary_due = bool(out[3][1] > 0)
        if self.step % cfg.log_every_n_steps == 0 or self.step == cfg.max_number_of_steps:
            self.meter.tick(self.step)
            self.log(self.meter.line(self.step, loss=f"{self.loss:.4f}",
                                     lr=f"{float(out[1]):.2e}", acc=f"{float(out[2]):.3f}"))
        return bool(out[3][0] > 0)

    @contextlib.contextmanager
    def _peers_guard(self):
        """Turn a lost peer of a multi-worker run into a WorkerLost error."""
        with peers_guard(self.placement, self.step, self.cfg.train_dir):
            yield

    def _run(self, fetches, wish):
        import tensorflow as tf

        feed = {self.t.images_per_sec: self.meter.images_per_sec, self.t.wish: wish}
        try:
            with self._peers_guard():
                return self.sess.run(fetches, feed)
        except tf.errors.InvalidArgumentError as e:
            self.writer.close()
            if "is inf or nan" in e.message:  # create_train_op's CheckNumerics
                raise _diverged("NaN or infinite", self.step + 1, self.cfg.train_dir) from None
            error = _input_error(e, self.split, self.run_info.num_classes,
                                self.run_info.labels_offset)
            if error is None:
                raise
            raise error from None


def _input_error(e, split, num_classes, labels_offset):
    """Turn an input-pipeline failure into a DataError naming the shard and record.

    TensorFlow's decode errors carry no file name, so the shards are scanned for the
    first unusable record; ``None`` means the failure was not the data's fault.
    """
    found = tfrecord.locate_bad_record(split.files, num_classes, labels_offset)
    if found:
        return DataError(f"{found}; fix or remove that record (re-create the shards), or set "
                         "--labels_offset / labels.txt to match the data")
    if "slimtune: label" in getattr(e, "message", ""):
        return DataError(f"a label in {split.dataset_dir} is outside the class range: "
                         + e.message.splitlines()[0])
    return None


def _diverged(loss, step, train_dir):
    import tensorflow as tf

    return TrainingDiverged.at_step(loss, step, tf.train.latest_checkpoint(train_dir))
