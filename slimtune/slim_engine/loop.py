"""The session loop: one run of the train op per step, with progress lines, summaries
and checkpoints on schedule; a NaN loss or an input failure stops it with an error that
names the cause."""

import contextlib
import os

from slimtune.data import tfrecord
from slimtune.distribute import peers_guard
from slimtune.errors import DataError, TrainingDiverged
from slimtune.schedule import Done, Schedule

CHECKPOINT_BASENAME = "model.ckpt"


class StepLoop:
    """Steps ``t`` (a :class:`graph.TrainGraph`) in ``sess`` from the restored global
    step to --max_number_of_steps (forever without it), on the :class:`Schedule`.

    Every worker of a multi-worker run must save, and write summaries, at the same
    steps (both read BatchNorm statistics averaged over the workers), and stop at the
    same step when one of them gets a signal: each step carries every worker's wish to
    save, summarise or stop (``t.wish``), and all act on their sum (``t.agreed``).  The
    sum of the summary wishes arrives with a step's results, so it decides whether the
    next step fetches the summary.
    """

    def __init__(self, cfg, run, split, t, sess, saver, writer, log, placement):
        import tensorflow as tf

        self.cfg, self.run_info, self.split, self.t = cfg, run, split, t
        self.placement = placement
        self.sess, self.saver, self.writer = sess, saver, writer
        self.prefix = os.path.join(cfg.train_dir, CHECKPOINT_BASENAME)
        self.schedule = Schedule(cfg, int(sess.run(t.global_step)), placement.num_replicas,
                                 tf.train.latest_checkpoint(cfg.train_dir), log)
        self.summary_wished = False  # the workers' sum from the step before
        self.out = None

    def run_to_end(self):
        """Train to the last step; the last step is always saved."""
        self.schedule.run(self)

    # The Schedule's hooks (see there).
    def run_step(self, wish):
        t = self.t
        summarised = self.schedule.summary_due(self.summary_wished)
        fetches = [t.train_op, t.lr, t.accuracy, t.agreed]
        if summarised:
            fetches.append(t.summary)
        self.out = self._run(fetches, [float(wish.save), float(wish.summary),
                                       float(wish.stop)])
        agreed = self.out[3]
        self.summary_wished = agreed[1] > 0
        return Done(float(self.out[0]), bool(agreed[0] > 0), summarised, bool(agreed[2] > 0))

    def summarise(self):
        self.writer.add_summary(self.out[4], self.schedule.step)

    def progress(self):
        return {"lr": f"{float(self.out[1]):.2e}", "acc": f"{float(self.out[2]):.3f}"}

    def save(self):
        with self._peers_guard():
            self.saver.save(self.sess, self.prefix, global_step=self.schedule.step)

    def stop(self):
        import tensorflow as tf

        self.writer.close()
        return tf.train.latest_checkpoint(self.cfg.train_dir)

    @contextlib.contextmanager
    def _peers_guard(self):
        """Turn a lost peer of a multi-worker run into a WorkerLost error."""
        with peers_guard(self.placement, self.schedule.step, self.cfg.train_dir):
            yield

    def _run(self, fetches, wish):
        import tensorflow as tf

        feed = {self.t.images_per_sec: self.schedule.meter.images_per_sec, self.t.wish: wish}
        try:
            with self._peers_guard():
                return self.sess.run(fetches, feed)
        except tf.errors.InvalidArgumentError as e:
            if "is inf or nan" in e.message:  # create_train_op's CheckNumerics
                raise TrainingDiverged.at_step("NaN or infinite", self.schedule.step + 1,
                                               self.stop()) from None
            self.writer.close()
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

