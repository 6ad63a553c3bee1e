"""The Keras engine's run: train the Keras 3 mirror of a registered architecture the way
the slim engine trains its graph.

Start-up order as on the slim engine: a checkpoint already in ``train_dir`` is resumed
(model, optimizer slots and step: ``tf.train.Checkpoint`` under
``train_dir/keras_ckpt-<step>``); otherwise --checkpoint_path (a slim checkpoint, or a
converted ``.keras``) warm-starts the weights outside --checkpoint_exclude_scopes;
otherwise every weight keeps its initial value.

Each step is :func:`.step.make_train_step`: slim's total loss, research/slim's optimizers
with TF1's formulas (:mod:`.optimizers`) driven by its learning-rate schedules
(:mod:`.schedules`), slim's BatchNorm training arithmetic.  Batches come from the input
pipeline both engines read (:func:`slimtune.data.pipeline.batches`); the global seed is
set to --seed first, as the slim engine sets its graph seed, so the same seed gives the
same batches.  Progress lines, TensorBoard scalars under the slim engine's tags,
checkpoints on the same schedule; a non-finite loss stops the run with the last good
checkpoint kept.  At the end: the final checkpoint, and ``model.keras`` (inference
outputs only, plain Keras layers: it loads in safe mode without slimtune).

--moving_average_decay keeps research/slim's moving averages of every model variable
(:mod:`.averages`), in the checkpoint beside the weights they average.  ``model.keras``
is the model that serves, so it holds the averages (a slim-engine run serves them when
evaluated with --moving_average_decay or converted with --use_moving_averages): every
command given the train dir (eval, export, verify, convert) uses the averages, and the
raw weights stay in ``keras_ckpt-<step>`` for resuming.

Several replicas (--worker_hosts/--task or TF_CONFIG: ``tf.distribute.
MultiWorkerMirroredStrategy``; --num_clones: ``MirroredStrategy``, see
:mod:`slimtune.distribute`): the model and optimizer are created under the strategy, every
replica runs the step on its own batch (replica ``r`` of ``R`` reads shard files ``r, r+R,
...`` from the step it resumes at) and a step is one process's step on the global batch
(:mod:`.step`).  Never ``fit()``: broken under this strategy in Keras 3.15.  Keras 3 keeps
each replica's own copy of the BatchNorm moving statistics (they drift apart; a read or a
save takes replica 0's): with --sync_batch_norm every replica normalises with the global
batch's statistics (:class:`~.batch_norm.SlimBatchNormalization`), so the copies stay
equal; otherwise the copies are all-reduced to their mean after every step, as the slim
engine's are (a save then writes what every replica holds, so a resumed run equals the
uninterrupted one: averaged only at log steps and saves, a run resumed from a step that
was no log step differed in 4 statistics).  Every worker saves every checkpoint (to
its own dir: the chief's is --train_dir, worker i's ``train_dir/worker_i``) at steps all
agree on; the chief alone writes ``model.keras`` (every worker's dir gets a
slimtune.json, a worker's naming the chief's ``../model.keras``).  The workers first exchange their settings and refuse to start
unless all were given the same (:func:`slimtune.distribute.settle`).
"""

import contextlib
import os
import time

from slimtune import bn_layers, checkpoint, distribute, files, metadata, precision, sources
from slimtune.keras_engine import model as model_lib
from slimtune.keras_engine import averages, optimizers, schedules
from slimtune.keras_engine.step import loss_scale, make_train_step
from slimtune.progress import format_seconds
from slimtune.schedule import SUMMARY_TAGS, Done, Schedule

CHECKPOINT_BASENAME = "keras_ckpt"
KERAS_FILE = metadata.KERAS_FILE


class Trainer:
    """One Keras-engine run of ``run`` (a resolved :class:`slimtune.metadata.RunInfo`:
    architecture, classes, BatchNorm, size, preprocessing) on ``split``; the training
    flags from ``cfg`` (a ``train.TrainConfig``).

    Creating it builds the model, the optimizer and the checkpoint, and resumes or
    warm-starts as ``plan`` (a :class:`slimtune.start_plan.StartPlan`) says, so a
    checkpoint that does not fit fails before anything is trained.  ``aux`` says whether
    the model has the auxiliary head (the plan's).
    """

    def __init__(self, cfg, run, split, log, plan, placement=None, strategy=None):
        import keras
        import tensorflow as tf

        spec, bn = run.spec, run.batch_norm
        self.cfg, self.run, self.spec, self.split, self.log = cfg, run, spec, split, log
        self.num_classes, self.image_size, self.preprocessing = (
            run.num_classes, run.image_size, run.preprocessing)
        self.placement = placement or distribute.Placement()
        self.strategy = strategy or tf.distribute.get_strategy()
        if cfg.seed is not None:
            keras.utils.set_random_seed(cfg.seed)  # also tf.random's global seed
        self.start = plan  # decided by train for either engine
        self.aux = plan.aux_head
        self._agree()  # before the first variable: its initial value is a collective
        from slimtune.keras_engine import drop_path

        clock = drop_path.Clock(cfg.max_number_of_steps)
        with self.strategy.scope():
            self.model = model_lib.training_model(
                spec, run.num_classes, bn, self.aux, run.image_size, cfg.weight_decay,
                bn is not None and cfg.freeze_batch_norm,
                self.placement.distributed and cfg.sync_batch_norm, cfg.dropout_keep_prob,
                run.channels, self._policy, drop_path_clock=clock)
            self.weights = model_lib.slim_names(spec, self.model, self.aux)
            self.trained = model_lib.trainable(self.weights, cfg.trainable_scopes)
            model_lib.mark_trained(self.weights, self.trained)
            variables = [w.variable for w in self.trained]
            self.optimizer = optimizers.optimizer(
                cfg, schedules.schedule(cfg, split.num_samples))
            # float16: the step scales the loss; the checkpoint keeps the inner
            # optimizer's names (a float32 run's) and adds the scale beside them.
            self.step_optimizer = (keras.optimizers.LossScaleOptimizer(self.optimizer)
                                   if precision.loss_scaled(cfg.mixed_precision)
                                   else self.optimizer)
            self.step_optimizer.build(variables)  # builds the inner one too
            clock.step = self.optimizer.iterations  # the step drop path's schedule reads
            self.averages = (averages.MovingAverages(self.weights, cfg.moving_average_decay,
                                                     self.optimizer.iterations)
                             if cfg.moving_average_decay else None)
            self.checkpoint = tf.train.Checkpoint(
                model=self.model, optimizer=self.optimizer,
                **({"averages": self.averages.trackable()} if self.averages else {}),
                **({"loss_scale": self.step_optimizer}
                   if self.step_optimizer is not self.optimizer else {}))
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, cfg.train_dir, max_to_keep=cfg.keep_checkpoint_max,
            checkpoint_name=CHECKPOINT_BASENAME)
        with distribute.peers_guard(self.placement, 0, cfg.train_dir):
            self._restore_or_warm_start()
        average_statistics = _statistics_averager(
            self.model, self.placement, cfg.sync_batch_norm)
        self.step_fn = make_train_step(
            self.model, self.step_optimizer, variables, run.num_classes, cfg.label_smoothing,
            cfg.clip_gradient_norm, self.strategy, cfg.batch_size * self.placement.num_replicas,
            _after_update(self.averages, average_statistics))

    @property
    def _policy(self):
        """The Keras dtype policy of the training model (None: the mirror's float32)."""
        mode = self.cfg.mixed_precision
        return None if mode == precision.FLOAT32 else precision.keras_policy(mode)

    def _agree(self):
        """Multi-worker runs: every worker's settings to every worker, as the first
        collective; a worker started with other flags (or writing another's dir) stops
        the run, naming both values."""
        import tensorflow as tf

        placement, train_dir = self.placement, self.cfg.train_dir
        if placement.cluster is None:
            return
        steps = checkpoint.checkpoint_steps(train_dir)
        mine = distribute.run_settings(
            self.cfg, self.run, placement, resume_step=steps[-1] if steps else 0,
            **{distribute.CHECKPOINT_STEPS: steps})
        rows = tf.constant(distribute.settings_rows(mine, placement))
        self.log(f"{placement.describe()}: waiting for the other workers")

        @tf.function
        def exchange(rows):
            return self.strategy.run(distribute.sum_over_replicas, args=(rows,))

        with distribute.peers_guard(placement, 0, train_dir):
            summed = self.strategy.experimental_local_results(exchange(rows))[0].numpy()
        distribute.settle(distribute.settings_of_rows(summed), placement, train_dir,
                          checkpoint.roll_back)

    def _restore_or_warm_start(self):
        cfg, log = self.cfg, self.log
        if self.start.resume:
            self._resume(self.manager.latest_checkpoint)
        else:
            if self.start.warm_start:
                model_lib.warm_start(cfg, self.spec, self.start.warm_start, self.weights, log)
            if self.averages:
                self.averages.restart()  # the averages start at the starting weights
        log(f"Training {len(self.trained)} variables (of {len(self.weights)} weights): "
            + ", ".join(w.slim_name for w in self.trained[:8])
            + (f" ... {self.trained[-1].slim_name}" if len(self.trained) > 8 else ""))

    def _resume(self, latest):
        """Restore ``latest``; its averages too, or (saved without them) start them at
        its weights."""
        import tensorflow as tf

        held = self.averages is None or any(
            name.startswith("averages/")
            for name in tf.train.load_checkpoint(latest).get_variable_to_shape_map())
        restorer = self.checkpoint if held else tf.train.Checkpoint(
            model=self.model, optimizer=self.optimizer)
        restorer.restore(latest).assert_existing_objects_matched()
        self.log(f"Resuming from {latest}")
        if not held:
            self.averages.restart()
            self.log(f"{latest} holds no moving averages: they start at its weights")

    @property
    def files(self):
        """What the run's slimtune.json names: its ``model.keras``, which the chief alone
        writes; another worker's dir (``train_dir/worker_i``) names the chief's."""
        name = KERAS_FILE if self.placement.is_chief else os.path.join(os.pardir, KERAS_FILE)
        return {"keras": name}

    @property
    def step(self):
        return int(self.optimizer.iterations.numpy())

    def batches(self, replica=0):
        """The training batches of ``replica`` (of the run's replicas; its shard files),
        from the step the run is at."""
        from slimtune.data import pipeline

        cfg = self.cfg
        share = distribute.replica_split(self.split, replica, self.placement.num_replicas)
        return pipeline.batches(share, self.preprocessing, self.image_size,
                                cfg.batch_size, True, self.num_classes, cfg.labels_offset,
                                seed=cfg.seed, deterministic=cfg.deterministic,
                                skip_batches=self.step, grayscale=self.run.grayscale)

    def replica_batches(self):
        """Each step's ``(images, labels)``: one batch, or each local replica's own as
        distributed values."""
        placement = self.placement
        first = placement.task * placement.num_clones
        iterators = [iter(self.batches(replica))
                     for replica in range(first, first + placement.num_clones)]
        while True:
            local = [next(it) for it in iterators]
            if not placement.distributed:
                yield local[0]
                continue
            yield tuple(self.strategy.experimental_distribute_values_from_function(
                lambda context, part=part: local[context.replica_id_in_sync_group - first][part])
                for part in (0, 1))

    def train(self):
        """Train to --max_number_of_steps; returns ``(model.keras, global step, last loss,
        seconds)`` (the training checkpoints, ``keras_ckpt-<step>``, are for resuming)."""
        import tensorflow as tf

        cfg, log = self.cfg, self.log
        started = time.monotonic()
        writer = tf.summary.create_file_writer(cfg.train_dir)
        loop = _Loop(self, writer, self.replica_batches())
        loop.run()
        writer.close()
        final = self.manager.latest_checkpoint
        keras_path = self.save_keras() if self.placement.is_chief else final
        if self.start.precise_bn_batches and self.placement.is_chief:
            self.precise_batch_norm(keras_path, final)
        seconds = time.monotonic() - started
        log(f"Finished at step {loop.schedule.step} in {format_seconds(seconds)}: {final}"
            + (f", {keras_path}" if keras_path != final else ""))
        return keras_path, loop.schedule.step, loop.schedule.loss, seconds

    def final_weights(self, final=None):
        """``[FinalWeight]`` of the model as it ends (``final``, its checkpoint, is not
        read: the weights are in memory)."""
        from slimtune.outcome import FinalWeight

        trained = {id(w.variable) for w in self.trained}
        shadows = self.averages.trackable() if self.averages else {}
        return [FinalWeight(w.slim_name, w.variable.numpy(), id(w.variable) in trained,
                            shadows[w.slim_name].numpy() if w.slim_name in shadows else None,
                            w.from_slim) for w in self.weights]

    def inference_model(self):
        """The trained model with the logits as its only output (no auxiliary head);
        float32 whatever --mixed_precision trained in."""
        import keras

        outputs = self.model.outputs
        model = self.model if len(outputs) == 1 else keras.Model(
            self.model.inputs, outputs[0], name=self.model.name)
        return model if self._policy is None else model_lib.with_dtype(model)

    def save_keras(self):
        """Write ``train_dir/model.keras`` atomically (with --moving_average_decay, the
        averaged weights: the model that serves); returns its path."""
        path = os.path.join(self.cfg.train_dir, KERAS_FILE)
        with files.staged(path, keep_extension=True) as tmp:
            with self.averages.swapped() if self.averages else contextlib.nullcontext():
                self.inference_model().save(tmp)
        return path


    def precise_batch_norm(self, keras_path, source):
        """--precise_bn_batches: re-estimate the BatchNorm statistics of ``keras_path`` (the
        run's model.keras, with its averaged weights under --moving_average_decay) as
        ``slimtune-recalibrate`` does, and replace it; slimtune.json records it, naming
        ``source`` (the final checkpoint).

        Measured on --precise_bn_batches batches of the training split with evaluation
        preprocessing, seeded by --seed, as the slim engine does.  The checkpoints keep
        the statistics training left: a resumed run continues from them and re-estimates
        again at its end."""
        from slimtune import batch_statistics, recalibration

        cfg, run, split = self.cfg, self.run, self.split
        self.log(f"Re-estimating the BatchNorm statistics of {keras_path} over "
                 f"{cfg.precise_bn_batches} batches of {split.dataset_name}/{split.split} "
                 f"(--precise_bn_batches), {run.preprocessing} evaluation preprocessing")
        model = sources.load_keras(keras_path)
        batches = batch_statistics.image_batches(split, run.preprocessing, run.image_size,
                                                 cfg.batch_size, cfg.seed or 0,
                                                 grayscale=run.grayscale)
        layers, left_alone = recalibration.recalibrate_keras_model(
            model, batches, cfg.precise_bn_batches, log=self.log)
        with files.staged(keras_path, keep_extension=True) as tmp:
            model.save(tmp)
        note = ("measured with the averaged weights (--moving_average_decay) that "
                f"{KERAS_FILE} holds" if self.averages else None)
        recalibration.record_precise(cfg, run, split, KERAS_FILE, source, layers,
                                        left_alone, note)
        self.log(f"Final model {keras_path}: {layers} BatchNorm layers re-estimated")


class _Loop:
    """Steps the trainer to --max_number_of_steps on the slim engine's
    :class:`~slimtune.schedule.Schedule`.  The workers' wishes to save and to stop are
    summed in the step (:func:`.step.make_train_step`); a summary is written by each worker at its own
    times (no collective reads it)."""

    def __init__(self, trainer, writer, batches):
        self.t, self.writer, self.batches = trainer, writer, batches
        self.schedule = Schedule(trainer.cfg, trainer.step, trainer.placement.num_replicas,
                                 trainer.manager.latest_checkpoint, trainer.log)
        self.out = None

    def run(self):
        self.schedule.run(self)

    # The Schedule's hooks (see there).
    def run_step(self, wish):
        import tensorflow as tf

        summarised = self.schedule.summary_due(wish.summary)
        images, labels = next(self.batches)
        with self._peers_guard():
            out = self.t.step_fn(images, labels,
                                 tf.constant([float(wish.save), float(wish.stop)]))
        agreed = out.pop("wish").numpy()
        self.out = {k: float(v) for k, v in out.items()}
        return Done(self.out["total_loss"], bool(agreed[0] > 0), summarised,
                    bool(agreed[1] > 0))

    def save(self):
        with self._peers_guard():
            self.t.manager.save(checkpoint_number=self.schedule.step)

    def stop(self):
        self.writer.close()
        return self.t.manager.latest_checkpoint

    def progress(self):
        return {"lr": f"{self.out['learning_rate']:.2e}", "acc": f"{self.out['accuracy']:.3f}"}

    def _peers_guard(self):
        return distribute.peers_guard(self.t.placement, self.schedule.step, self.t.cfg.train_dir)

    def summarise(self):
        """Scalars under the engines' tags (``schedule.SUMMARY_TAGS``), as the Summary
        protos the slim engine's FileWriter writes (``simple_value``; tf.summary.scalar
        would need the tensorboard package)."""
        import tensorflow as tf

        v1, out = tf.compat.v1, self.out
        out["images_per_sec"] = self.schedule.meter.images_per_sec
        keys = ["total_loss", "cross_entropy", "learning_rate", "accuracy", "images_per_sec"]
        scale = loss_scale(self.t.step_optimizer)
        if scale is not None:  # --mixed_precision=float16: the doctor reads it back
            out["loss_scale"] = float(scale.numpy())
            keys.append("loss_scale")
        values = [v1.Summary.Value(tag=SUMMARY_TAGS[key], simple_value=out[key])
                  for key in keys]
        with self.writer.as_default():
            tf.summary.experimental.write_raw_pb(
                v1.Summary(value=values).SerializeToString(), step=self.schedule.step)


def _statistics_averager(model, placement, synchronized):
    """A function, run inside each replica, that sets the replica's copy of the trained
    BatchNorm layers' moving statistics to their mean over the replicas (a no-op with one
    replica, with --sync_batch_norm, or without such statistics)."""
    import tensorflow as tf

    statistics = [v for layer in bn_layers.keras_layers(model) if layer.trainable
                  for v in (layer.moving_mean, layer.moving_variance)]
    if not placement.distributed or synchronized or not statistics:
        return lambda: None

    def replica_fn():
        context = tf.distribute.get_replica_context()
        means = context.all_reduce(tf.distribute.ReduceOp.MEAN,
                                   [tf.identity(v.value) for v in statistics])
        for variable, mean in zip(statistics, means):
            variable.assign(mean)

    return replica_fn


def _after_update(averages, average_statistics):
    """What each replica runs after the optimizer's update: the replicas' BatchNorm
    statistics set to their mean (several replicas without --sync_batch_norm: one
    all-reduce per step, as the slim engine's), then with --moving_average_decay the
    averages' update, which (TF1's, for mirrored variables) takes each replica's copy as
    the value of all."""
    def update():
        average_statistics()
        if averages is not None:
            averages.update()

    return update
