"""The slim engine's run: the training graph built, started, stepped and finished
(see the package's docstring)."""

import time

from slimtune import checkpoint, compat, distribute
from slimtune.progress import format_seconds
from slimtune.slim_engine import finish, start
from slimtune.slim_engine.graph import build_train_graph, variables_to_train
from slimtune.distribute import peers_guard
from slimtune.slim_engine.loop import StepLoop


class Trainer:
    """One training run of ``run`` (a resolved :class:`slimtune.metadata.RunInfo`) on
    ``split`` with the settings of ``cfg`` (a ``train.TrainConfig``), its replicas placed
    by ``strategy`` as ``placement`` says (:mod:`slimtune.distribute`; None: one device).

    Creating it builds the graph, and checks a warm-start checkpoint against it, so a
    run that cannot start fails before anything is written; :meth:`train` trains.
    In a multi-worker run every worker runs the initializer (worker 0's initial values
    are broadcast), every step and every save; first the workers compare their
    settings and refuse to start unless all were given the same.
    """

    def __init__(self, cfg, run, split, log, plan, placement=None, strategy=None):
        import tensorflow as tf

        v1 = tf.compat.v1
        self.cfg, self.run_info, self.split, self.log = cfg, run, split, log
        self.start = plan  # where the run starts (slimtune.start_plan), decided by train
        self.placement = placement or distribute.Placement()
        self.strategy = strategy
        self.start_step = start.resume_step(cfg.train_dir)
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.tensors = build_train_graph(cfg, run, split,
                                             plan.aux_head,
                                             strategy, self.placement, self.start_step)
            # Relative paths in the state file: the train dir can be moved or copied.
            self.trained = {checkpoint.variable_name(v) for v in variables_to_train(cfg)}
            self.saver = v1.train.Saver(max_to_keep=cfg.keep_checkpoint_max,
                                        save_relative_paths=True)
            self.warm_start = start.warm_start_plan(cfg, run.spec, plan.warm_start, log)
            self.init_op = v1.global_variables_initializer()
            self.graph.finalize()

    def train(self):
        """Train to --max_number_of_steps; returns ``(final checkpoint, global step,
        last loss, seconds)``."""
        import numpy as np
        import tensorflow as tf

        cfg, t, log = self.cfg, self.tensors, self.log
        started = time.monotonic()
        with self._session() as sess:
            self._agree(sess)
            writer = tf.compat.v1.summary.FileWriter(cfg.train_dir, graph=self.graph)
            with peers_guard(self.placement, self.start_step, cfg.train_dir):
                start.restore_or_initialize(sess, cfg.train_dir, self.saver, self.init_op,
                                            self.warm_start, log, t.averages_start)
            loop = StepLoop(cfg, self.run_info, self.split, t, sess, self.saver, writer, log,
                            self.placement)
            loop.run_to_end()
            writer.flush()
            writer.close()
            with peers_guard(self.placement, loop.schedule.step, cfg.train_dir):
                check_images, check_logits = sess.run([t.check_images, t.check_logits])
        seconds = time.monotonic() - started
        final = tf.train.latest_checkpoint(cfg.train_dir)
        log(f"Finished at step {loop.schedule.step} in {format_seconds(seconds)}: {final}")
        if not np.all(np.isfinite(check_logits)):
            finish.name_non_finite(self.run_info, final, check_images, log)
        if (self.start.precise_bn_batches and self.placement.is_chief
                and not finish.is_precise(final)):
            final = finish.precise_batch_norm(cfg, self.run_info, self.split, final, log)
        return final, loop.schedule.step, loop.schedule.loss, seconds

    def final_weights(self, final):
        """``[FinalWeight]`` of the checkpoint ``final`` (the run's last): every model
        variable, the trained ones marked, with its --moving_average_decay average."""
        from slimtune.outcome import FinalWeight

        tensors = checkpoint.read_tensors(final)
        shadows = (checkpoint.with_moving_averages(tensors)[1]
                   if self.cfg.moving_average_decay else {})
        averages = {name: tensors[shadow] for name, shadow in shadows.items()}
        return [FinalWeight(name, value, name in self.trained, averages.get(name))
                for name, value in tensors.items()
                if not name.endswith("ExponentialMovingAverage") and name != "global_step"]

    def session_config(self):
        """The training session's ``ConfigProto``: the process's settings, grappler's
        --mixed_precision rewrite (:func:`slimtune.compat.with_mixed_precision`), the
        strategy's."""
        config = compat.with_mixed_precision(compat.session_config(),
                                             self.cfg.mixed_precision)
        if self.strategy is not None:
            config = self.strategy.update_config_proto(config)
        return config

    def _session(self):
        import tensorflow as tf

        config = self.session_config()
        return tf.compat.v1.Session(distribute.session_target(self.placement),
                                    graph=self.graph, config=config)

    def _agree(self, sess):
        """Multi-worker runs: every worker's settings to every worker, before anything
        else runs; a worker started with other flags (or writing another's dir) stops
        the run, naming both values."""
        t, placement = self.tensors, self.placement
        if t.settings_rows is None:
            return
        train_dir = self.cfg.train_dir
        mine = distribute.run_settings(
            self.cfg, self.run_info, placement, resume_step=self.start_step,
            **{distribute.CHECKPOINT_STEPS: checkpoint.checkpoint_steps(train_dir)})
        self.log(f"{placement.describe()}: waiting for the other workers")
        with peers_guard(placement, self.start_step, train_dir):
            rows = sess.run(t.settings, {t.settings_rows: distribute.settings_rows(
                mine, placement)})
        distribute.settle(distribute.settings_of_rows(rows), placement, train_dir,
                          checkpoint.roll_back)
