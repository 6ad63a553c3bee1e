"""Fine-tune a slim network in a TF1 graph, with BatchNorm updates correct by construction.

The train op comes from ``slim.learning.create_train_op`` with every op of the
``UPDATE_OPS`` collection as a dependency, so the BatchNorm moving mean and variance
are updated on every step (the bug behind most "eval accuracy collapses" reports is a
hand-written ``optimizer.minimize(loss)`` that never runs them).  The loop is our own
``tf.compat.v1.Session`` loop inside a private ``tf.Graph``: no Supervisor, no
``disable_eager_execution()``.

Start-up order: a checkpoint already in ``train_dir`` is resumed (global step and all);
otherwise ``checkpoint_path`` warm-starts the model variables outside
``checkpoint_exclude_scopes``; otherwise every variable starts from its initialiser.

A seeded run is deterministic by default: the graph seed fixes every random op, the
input pipeline keeps its order, and TensorFlow's op determinism is on while the run's
graph is built and run (it makes tf.data run maps with random augmentations one
element at a time; without it, the threads of a parallel map draw random crops in
whatever order they get there).  Two runs with the same seed on the same machine give
bit-identical checkpoints.

An Inception's auxiliary head is built only if the checkpoint the run starts from holds
it, or if it is asked for (:func:`_with_aux_head`).

Checks around the loop: before the first step, the doctor's findings on BatchNorm
layers over too few values per channel; after the final save, the final checkpoint in
inference mode on one batch, with a warning when its outputs are not finite.
"""

import dataclasses
import math
import os
import time
from typing import Optional

import numpy as np

from slimtune import batch_statistics, checkpoint, compat, metadata, optim, registry
from slimtune.data import pipeline, tfrecord
from slimtune.errors import BrokenCheckpoint, DataError, TrainingDiverged, UsageError
from slimtune.nets import batch_norm as bn_lib
from slimtune.progress import Meter, format_seconds, log as _log

CHECKPOINT_BASENAME = "model.ckpt"
# Images the final checkpoint's inference outputs are checked on: a checkpoint whose
# weights are starting to overflow can give NaN for some images and not others.
FINAL_CHECK_IMAGES = 32
# --precise_bn_batches: the final checkpoint with re-estimated BatchNorm statistics.
PRECISE_BASENAME = "precise_bn.ckpt"


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run needs; field names and defaults follow research/slim."""

    train_dir: str = "/tmp/tfmodel/"
    dataset_name: str = "imagenet"
    dataset_split_name: str = "train"
    dataset_dir: Optional[str] = None
    dataset_file_pattern: Optional[str] = None
    model_name: str = "inception_v3"
    preprocessing_name: Optional[str] = None
    train_image_size: Optional[int] = None
    batch_size: int = 32
    max_number_of_steps: Optional[int] = None
    labels_offset: int = 0
    # Fine-tuning
    checkpoint_path: Optional[str] = None
    checkpoint_exclude_scopes: Optional[str] = None
    trainable_scopes: Optional[str] = None
    ignore_missing_vars: bool = False
    # Optimisation
    weight_decay: float = 0.00004
    optimizer: str = "rmsprop"
    learning_rate: float = 0.01
    learning_rate_decay_type: str = "exponential"
    learning_rate_decay_factor: float = 0.94
    num_epochs_per_decay: float = 2.0
    end_learning_rate: float = 0.0001
    momentum: float = 0.9
    rmsprop_momentum: float = 0.9
    rmsprop_decay: float = 0.9
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    opt_epsilon: float = 1.0
    adadelta_rho: float = 0.95
    adagrad_initial_accumulator_value: float = 0.1
    ftrl_learning_rate_power: float = -0.5
    ftrl_initial_accumulator_value: float = 0.1
    ftrl_l1: float = 0.0
    ftrl_l2: float = 0.0
    label_smoothing: float = 0.0
    moving_average_decay: Optional[float] = None
    clip_gradient_norm: float = 0.0
    # BatchNorm (None: the architecture's published value)
    batch_norm_decay: Optional[float] = None
    batch_norm_epsilon: Optional[float] = None
    freeze_batch_norm: bool = False
    # Logging and saving
    log_every_n_steps: int = 10
    save_interval_secs: int = 600
    save_interval_steps: Optional[int] = None
    save_summaries_secs: int = 600
    keep_checkpoint_max: int = 5
    seed: Optional[int] = None
    deterministic: Optional[bool] = None  # None: when seeded
    # After the last step, re-estimate the BatchNorm statistics over this many batches
    # of the training split (0: keep the moving averages); see _precise_batch_norm.
    precise_bn_batches: int = 0


@dataclasses.dataclass
class TrainResult:
    checkpoint: str
    global_step: int
    loss: float
    seconds: float


def batch_norm_config(spec, cfg):
    """The BatchNorm parameters this run uses: the architecture's, overridden by flags."""
    if spec.batch_norm is None:
        if cfg.batch_norm_decay is not None or cfg.batch_norm_epsilon is not None \
                or cfg.freeze_batch_norm:
            raise UsageError(f"{spec.name} has no BatchNorm layers: drop --batch_norm_decay, "
                             "--batch_norm_epsilon and --freeze_batch_norm")
        return None
    if cfg.batch_norm_decay is not None and not 0.0 <= cfg.batch_norm_decay < 1.0:
        raise UsageError(f"--batch_norm_decay={cfg.batch_norm_decay} must be in [0, 1): "
                         "0.9-0.99 suits small datasets, 0.997-0.9997 large ones")
    if cfg.batch_norm_epsilon is not None and cfg.batch_norm_epsilon <= 0:
        raise UsageError(f"--batch_norm_epsilon={cfg.batch_norm_epsilon} must be positive")
    return spec.batch_norm.replace(
        decay=cfg.batch_norm_decay, epsilon=cfg.batch_norm_epsilon,
        mode=bn_lib.FROZEN if cfg.freeze_batch_norm else None)


def deterministic(cfg):
    """Whether the run is to be bit-identical to another with its seed (default: if seeded)."""
    wanted = cfg.seed is not None if cfg.deterministic is None else cfg.deterministic
    if wanted and cfg.seed is None:
        raise UsageError("--deterministic needs a --seed=N: runs repeat only with the same "
                         "seed")
    return wanted


def _validate(cfg, spec):
    if cfg.batch_size <= 0:
        raise UsageError(f"--batch_size={cfg.batch_size} must be positive")
    if cfg.max_number_of_steps is not None and cfg.max_number_of_steps <= 0:
        raise UsageError(f"--max_number_of_steps={cfg.max_number_of_steps} must be positive")
    size = cfg.train_image_size or spec.default_image_size
    if size < spec.min_image_size:
        raise UsageError(f"--train_image_size={size} is too small for {spec.name}: "
                         f"use at least {spec.min_image_size}")
    if cfg.optimizer not in optim.OPTIMIZERS:
        raise UsageError(f"unknown --optimizer {cfg.optimizer!r}: choose one of "
                         f"{', '.join(optim.OPTIMIZERS)}")
    if cfg.learning_rate_decay_type not in optim.DECAY_TYPES:
        raise UsageError(f"unknown --learning_rate_decay_type {cfg.learning_rate_decay_type!r}: "
                         f"choose one of {', '.join(optim.DECAY_TYPES)}")
    if cfg.precise_bn_batches < 0:
        raise UsageError(f"--precise_bn_batches={cfg.precise_bn_batches} must be 0 (off) or "
                         "a number of batches")
    if cfg.precise_bn_batches and (spec.batch_norm is None or cfg.freeze_batch_norm):
        raise UsageError("--precise_bn_batches re-estimates BatchNorm statistics, but "
                         + (f"{spec.name} has no BatchNorm" if spec.batch_norm is None else
                            "--freeze_batch_norm keeps them fixed by design (training "
                            "normalised with them)") + ": drop one of the two flags")
    return size


def _run_metadata(cfg, spec, split, num_classes, bn, image_size, preprocessing):
    labels = {k - cfg.labels_offset: v for k, v in split.labels.items()
              if 0 <= k - cfg.labels_offset < num_classes}
    return {
        "format": "slimtune.train/1",
        "model_name": spec.name,
        "num_classes": num_classes,
        "labels_offset": cfg.labels_offset,
        "labels": {str(k): v for k, v in sorted(labels.items())},
        "batch_norm": bn.as_dict() if bn else None,
        "preprocessing": preprocessing,
        "image_size": image_size,
        "weight_decay": cfg.weight_decay,
        "moving_average_decay": cfg.moving_average_decay,
        "dataset": {"name": cfg.dataset_name, "dir": split.dataset_dir,
                    "split": cfg.dataset_split_name},
        "checkpoint_path": cfg.checkpoint_path,
        "checkpoint_exclude_scopes": checkpoint.split_scopes(cfg.checkpoint_exclude_scopes),
        "seed": cfg.seed,
        "deterministic": deterministic(cfg),
    }


def _check_resume_compatible(train_dir, run_meta):
    old = metadata.read(train_dir)
    for key in ("model_name", "num_classes"):
        if old and key in old and old[key] != run_meta[key]:
            raise UsageError(
                f"{train_dir} holds a run with {key}={old[key]!r}, this command asks for "
                f"{run_meta[key]!r}: use a new --train_dir (or delete the old one)")


def _bn_moving_variables(graph):
    import tensorflow as tf

    return [v for v in graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES)
            if v.op.name.endswith(("/moving_mean", "/moving_variance"))
            and "ExponentialMovingAverage" not in v.op.name]


def _variables_to_train(cfg):
    import tensorflow as tf

    v1 = tf.compat.v1
    scopes = checkpoint.split_scopes(cfg.trainable_scopes)
    if not scopes:
        return v1.trainable_variables()
    chosen = []
    for scope in scopes:
        found = v1.get_collection(v1.GraphKeys.TRAINABLE_VARIABLES, scope)
        if not found:
            raise UsageError(f"--trainable_scopes: no trainable variable under {scope!r}; "
                             "scopes are variable-name prefixes such as resnet_v1_50/logits")
        chosen.extend(v for v in found if v not in chosen)
    return chosen


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

    kept = tf.train.latest_checkpoint(train_dir) or "none saved yet"
    return TrainingDiverged(
        f"loss became {loss} at step {step}; stopped without saving, the last good "
        f"checkpoint is {kept}: lower --learning_rate or set --clip_gradient_norm")


def build_train_graph(cfg, spec, split, num_classes, bn, image_size, preprocessing,
                      create_aux_logits=True):
    """Build the training graph in the current default graph; returns a dict of tensors.

    ``create_aux_logits=False`` leaves out an auxiliary head (see :func:`_with_aux_head`).
    """
    import tensorflow as tf

    slim = compat.apply()
    v1 = tf.compat.v1
    if cfg.seed is not None:
        v1.set_random_seed(cfg.seed)
    global_step = v1.train.get_or_create_global_step()
    with tf.device("/cpu:0"):
        data = pipeline.batches(split, preprocessing, image_size, cfg.batch_size, True,
                                num_classes, cfg.labels_offset, seed=cfg.seed,
                                deterministic=deterministic(cfg))
        images, labels = v1.data.make_one_shot_iterator(data).get_next()
    logits, end_points = spec.build(images, num_classes, is_training=True, batch_norm=bn,
                                    weight_decay=cfg.weight_decay,
                                    create_aux_logits=create_aux_logits)
    one_hot = tf.one_hot(labels, num_classes)
    if spec.aux_logits and spec.aux_logits in end_points:
        aux = end_points[spec.aux_logits]
        if aux.shape.rank == 4:
            aux = tf.squeeze(aux, axis=[1, 2])
        v1.losses.softmax_cross_entropy(one_hot, aux, label_smoothing=cfg.label_smoothing,
                                        weights=0.4, scope="aux_loss")
    cross_entropy = v1.losses.softmax_cross_entropy(
        one_hot, logits, label_smoothing=cfg.label_smoothing)
    total_loss = v1.losses.get_total_loss(name="total_loss")
    accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), labels), tf.float32))

    lr = optim.learning_rate(cfg, global_step, split.num_samples)
    opt = optim.optimizer(cfg, lr)
    update_ops = list(v1.get_collection(v1.GraphKeys.UPDATE_OPS))
    if bn is not None and bn.mode == bn_lib.FROZEN and update_ops:
        raise RuntimeError("internal: frozen BatchNorm still created update ops: "
                           + ", ".join(op.name for op in update_ops[:3]))
    if cfg.moving_average_decay:
        ema = tf.train.ExponentialMovingAverage(cfg.moving_average_decay, global_step)
        update_ops.append(ema.apply(slim.get_model_variables()))
    train_op = slim.learning.create_train_op(
        total_loss, opt, global_step=global_step, update_ops=update_ops,
        variables_to_train=_variables_to_train(cfg),
        clip_gradient_norm=cfg.clip_gradient_norm or 0)

    check_images, check_logits = _final_check_tensors(cfg, spec, split, num_classes, bn,
                                                      image_size, preprocessing,
                                                      create_aux_logits)
    images_per_sec = v1.placeholder_with_default(0.0, [], name="images_per_sec")
    summaries = [
        v1.summary.scalar("losses/total_loss", total_loss),
        v1.summary.scalar("losses/cross_entropy", cross_entropy),
        v1.summary.scalar("training/learning_rate", lr),
        v1.summary.scalar("training/train_batch_accuracy", accuracy),
        v1.summary.scalar("training/images_per_sec", images_per_sec),
    ]
    for var in _bn_moving_variables(tf.compat.v1.get_default_graph()):
        summaries.append(v1.summary.histogram("batch_norm/" + var.op.name, var))
    return {
        "global_step": global_step, "train_op": train_op, "lr": lr, "accuracy": accuracy,
        "summary": v1.summary.merge(summaries), "images_per_sec": images_per_sec,
        "check_images": check_images, "check_logits": check_logits,
    }


def _final_check_tensors(cfg, spec, split, num_classes, bn, image_size, preprocessing,
                         create_aux_logits):
    """``(images, logits)``: the network in inference mode, sharing the training
    variables, on one batch of the training split with evaluation preprocessing (at
    least :data:`FINAL_CHECK_IMAGES` images).  Run once after the final save, in the
    training session, so the check costs no second graph, session or restore."""
    import tensorflow as tf

    v1 = tf.compat.v1
    with tf.device("/cpu:0"), tf.name_scope("final_check"):
        data = pipeline.batches(split, preprocessing, image_size,
                                max(cfg.batch_size, FINAL_CHECK_IMAGES), False, num_classes,
                                cfg.labels_offset)
        images, _ = v1.data.make_one_shot_iterator(data).get_next()
    with v1.variable_scope(v1.get_variable_scope(), reuse=True):
        logits, _ = spec.build(images, num_classes, is_training=False, batch_norm=bn,
                               create_aux_logits=create_aux_logits)
    return images, logits


def _with_aux_head(cfg, spec, log):
    """Whether the training graph gets the network's auxiliary head, read from the
    checkpoint the run starts from.

    research/slim always builds it, and so does a fresh run.  A checkpoint saved without
    one (``create_aux_logits=False``) cannot restore it: resuming such a run, or
    warm-starting from such a checkpoint, builds the graph without it, unless the head is
    asked for by --checkpoint_exclude_scopes covering it or --ignore_missing_vars (a new
    head then starts from its initial values, as in research/slim).
    """
    import tensorflow as tf

    if not spec.aux_logits:
        return False
    latest = tf.train.latest_checkpoint(cfg.train_dir)
    if latest:
        held = spec.holds_aux_logits(checkpoint.read_shapes(latest))
        if not held:
            log(f"{latest} has no auxiliary head ({spec.aux_scope}): resuming without it")
        return held
    if not cfg.checkpoint_path:
        return True
    prefix = checkpoint.resolve(cfg.checkpoint_path)
    if spec.holds_aux_logits(checkpoint.read_shapes(prefix)):
        return True
    excluded = checkpoint.split_scopes(cfg.checkpoint_exclude_scopes)
    if cfg.ignore_missing_vars or checkpoint.in_scopes(spec.aux_scope, excluded):
        log(f"{prefix} has no auxiliary head: training a new {spec.aux_scope} from its "
            "initial values")
        return True
    log(f"{prefix} has no auxiliary head ({spec.aux_scope}): training without it (add "
        f"{spec.aux_scope} to --checkpoint_exclude_scopes to train a new one)")
    return False


def _warm_start_plan(cfg, spec, log):
    """A Saver restoring the checkpoint_path variables, or None (resume or fresh start).

    Built (and checked against the checkpoint) before the graph is finalized, so a
    checkpoint that does not fit fails before any training step.
    """
    import tensorflow as tf

    slim = compat.apply()
    if not cfg.checkpoint_path:
        return None
    if tf.train.latest_checkpoint(cfg.train_dir):
        log(f"--checkpoint_path ignored: {cfg.train_dir} already holds a checkpoint to resume")
        return None
    prefix = checkpoint.resolve(cfg.checkpoint_path)
    restore, missing = checkpoint.plan_restore(
        slim.get_model_variables(), prefix,
        checkpoint.split_scopes(cfg.checkpoint_exclude_scopes),
        cfg.ignore_missing_vars, spec.logits_scopes)
    log(f"Fine-tuning from {prefix}: {len(restore)} variables"
        + (f", {len(missing)} missing kept at their initial values" if missing else ""))
    return prefix, tf.compat.v1.train.Saver(var_list=restore)


def train(cfg: TrainConfig, log=_log) -> TrainResult:
    """Run training to ``max_number_of_steps``; returns the final checkpoint and step."""
    with compat.op_determinism(deterministic(cfg)):
        return _train(cfg, log)


def _train(cfg, log):
    import tensorflow as tf

    compat.apply()
    v1 = tf.compat.v1
    spec = registry.get(cfg.model_name)
    image_size = _validate(cfg, spec)
    bn = batch_norm_config(spec, cfg)
    preprocessing = cfg.preprocessing_name or spec.preprocessing
    split = pipeline.open_split(cfg.dataset_name, cfg.dataset_dir, cfg.dataset_split_name,
                                cfg.dataset_file_pattern)
    num_classes = split.num_classes - cfg.labels_offset
    if num_classes < 2:
        raise UsageError(f"--labels_offset={cfg.labels_offset} leaves {num_classes} classes "
                         f"of {split.num_classes}")
    os.makedirs(cfg.train_dir, exist_ok=True)
    run_meta = _run_metadata(cfg, spec, split, num_classes, bn, image_size, preprocessing)
    _check_resume_compatible(cfg.train_dir, run_meta)

    graph = tf.Graph()
    with graph.as_default():
        t = build_train_graph(cfg, spec, split, num_classes, bn, image_size, preprocessing,
                              _with_aux_head(cfg, spec, log))
        saver = v1.train.Saver(max_to_keep=cfg.keep_checkpoint_max)
        warm_start = _warm_start_plan(cfg, spec, log)
        init_op = v1.global_variables_initializer()
        graph.finalize()
    reported = _report_graph_findings(graph, log)

    metadata.write(cfg.train_dir, run_meta)
    prefix = os.path.join(cfg.train_dir, CHECKPOINT_BASENAME)
    bn_text = (f"BN decay {bn.decay} epsilon {bn.epsilon} scale {bn.scale} mode {bn.mode}"
               if bn else "no BatchNorm")
    log(f"Training {spec.name} on {cfg.dataset_name}/{cfg.dataset_split_name} "
        f"({split.num_samples} images, {num_classes} classes) at {image_size}px, "
        f"batch {cfg.batch_size}, {preprocessing} preprocessing, {bn_text}"
        + ("" if cfg.seed is None else f", seed {cfg.seed}"
           + (" (deterministic)" if deterministic(cfg) else "")))

    started = time.monotonic()
    with v1.Session(graph=graph) as sess:
        writer = v1.summary.FileWriter(cfg.train_dir, graph=graph)
        latest = tf.train.latest_checkpoint(cfg.train_dir)
        if latest:
            saver.restore(sess, latest)
            log(f"Resuming from {latest}")
        else:
            sess.run(init_op)
            if warm_start:
                warm_start[1].restore(sess, warm_start[0])
        step = int(sess.run(t["global_step"]))
        if cfg.max_number_of_steps and step >= cfg.max_number_of_steps:
            # No step runs; a --precise_bn_batches cut short last time still happens below.
            log(f"Already at step {step} >= --max_number_of_steps; nothing to do")
        meter = Meter(cfg.batch_size, step, cfg.max_number_of_steps)
        last_save = last_summary = time.monotonic()
        last_saved_step = step if tf.train.latest_checkpoint(cfg.train_dir) else None
        loss = float("nan")
        while cfg.max_number_of_steps is None or step < cfg.max_number_of_steps:
            now = time.monotonic()
            want_summary = now - last_summary >= cfg.save_summaries_secs or step == 0
            fetches = [t["train_op"], t["lr"], t["accuracy"]]
            if want_summary:
                fetches.append(t["summary"])
            try:
                out = sess.run(fetches, {t["images_per_sec"]: meter.images_per_sec})
            except tf.errors.InvalidArgumentError as e:
                writer.close()
                if "is inf or nan" in e.message:  # create_train_op's CheckNumerics
                    raise _diverged("NaN or infinite", step + 1, cfg.train_dir) from None
                error = _input_error(e, split, num_classes, cfg.labels_offset)
                if error is None:
                    raise
                raise error from None
            # Each run of the train op increments global_step by exactly one; reading the
            # variable in the same run would race with that increment.
            loss, step = float(out[0]), step + 1
            if not math.isfinite(loss):
                writer.close()
                raise _diverged(loss, step, cfg.train_dir)
            if want_summary:
                writer.add_summary(out[3], step)
                last_summary = now
            if step % cfg.log_every_n_steps == 0 or step == cfg.max_number_of_steps:
                meter.tick(step)
                log(meter.line(step, loss=f"{loss:.4f}", lr=f"{float(out[1]):.2e}",
                               acc=f"{float(out[2]):.3f}"))
            due_steps = cfg.save_interval_steps and step % cfg.save_interval_steps == 0
            if due_steps or time.monotonic() - last_save >= cfg.save_interval_secs:
                saver.save(sess, prefix, global_step=step)
                last_save, last_saved_step = time.monotonic(), step
        if last_saved_step != step:
            saver.save(sess, prefix, global_step=step)
        writer.flush()
        writer.close()
        check_images, check_logits = sess.run([t["check_images"], t["check_logits"]])
    seconds = time.monotonic() - started
    final = tf.train.latest_checkpoint(cfg.train_dir)
    log(f"Finished at step {step} in {format_seconds(seconds)}: {final}")
    if not np.all(np.isfinite(check_logits)):
        _name_non_finite(spec, final, check_images, num_classes, bn, log)
    if cfg.precise_bn_batches and not os.path.basename(final).startswith(PRECISE_BASENAME):
        final = _precise_batch_norm(cfg, spec, split, bn, image_size, preprocessing,
                                    num_classes, final, log)
    _report_doctor_findings(final, log, reported)
    return TrainResult(final, step, loss, seconds)


def _name_non_finite(spec, prefix, images, num_classes, bn, log):
    """The final checkpoint gave non-finite inference outputs on the check batch: warn,
    naming the first end point that goes non-finite and the largest weights (a run can
    end with weights that overflowed while its training loss still looked finite)."""
    import tensorflow as tf

    from slimtune import slim_run

    try:
        slim_run.slim_outputs(spec, prefix, images, num_classes, bn)
        log(f"WARNING: {prefix} gives non-finite inference outputs on some images")
    except BrokenCheckpoint as e:
        log(f"WARNING: {str(e).splitlines()[0]}")
    except tf.errors.OpError as e:  # a check must never fail a finished run
        log(f"could not check the outputs of {prefix}: {e.message.splitlines()[0]}")


def _precise_batch_norm(cfg, spec, split, bn, image_size, preprocessing, num_classes, raw,
                        log):
    """Re-estimate the BatchNorm statistics of the final checkpoint ``raw`` and make the
    result the train dir's latest checkpoint (``precise_bn.ckpt-<step>``); returns it.

    The statistics are measured on ``precise_bn_batches`` batches of the training split
    with evaluation preprocessing, as ``slimtune-recalibrate`` does by default (they serve
    inference, whose inputs are evaluation-preprocessed), seeded by ``--seed``.  The raw
    checkpoint stays; resuming continues from the recalibrated one, which holds every
    other tensor (global step, optimizer slots) unchanged.
    """
    import tensorflow as tf

    name = f"{PRECISE_BASENAME}-{raw.rsplit('-', 1)[1]}"
    prefix = os.path.join(cfg.train_dir, name)
    log(f"Re-estimating the BatchNorm statistics of {raw} over {cfg.precise_bn_batches} "
        f"batches of {split.dataset_name}/{split.split} (--precise_bn_batches), "
        f"{preprocessing} evaluation preprocessing")
    batches = batch_statistics.image_batches(split, preprocessing, image_size, cfg.batch_size,
                                             cfg.seed or 0)
    tensors, layers, note = batch_statistics.recalibrated_checkpoint(
        spec, raw, checkpoint.read_tensors(raw), num_classes, bn, batches,
        cfg.precise_bn_batches, log)
    batch_statistics.write_checkpoint(prefix, tensors, raw)
    state = tf.train.get_checkpoint_state(cfg.train_dir)
    kept = [p for p in state.all_model_checkpoint_paths if p != prefix] if state else [raw]
    tf.compat.v1.train.update_checkpoint_state(cfg.train_dir, prefix, kept + [prefix])
    entry = batch_statistics.record(
        name, os.path.abspath(raw), split, cfg.precise_bn_batches, cfg.batch_size,
        cfg.precise_bn_batches * cfg.batch_size, preprocessing, False, image_size, layers,
        note=note)
    metadata.write(cfg.train_dir, batch_statistics.with_record(metadata.read(cfg.train_dir),
                                                               entry))
    log(f"Final checkpoint {prefix}: {layers} BatchNorm layers re-estimated, every other "
        f"tensor as in {os.path.basename(raw)} (kept)")
    return prefix


def _report_graph_findings(graph, log):
    """Before the first step, print the doctor's findings about the training graph's
    BatchNorm layers (one value per channel, or so few that training can explode)."""
    from slimtune.checks import graph_checks

    findings = graph_checks.batch_norm_size_findings(graph)
    for finding in findings:
        for line in finding.lines():
            log(line)
    return {finding.code for finding in findings}


def _report_doctor_findings(prefix, log, already=()):
    """Print the BatchNorm doctor's checkpoint findings (errors and warnings only; not
    the ``already`` reported codes again)."""
    from slimtune.checks import checkpoint_checks
    from slimtune.findings import NOTE

    try:
        report = checkpoint_checks.checkpoint_report(prefix)
    except Exception as e:  # a diagnosis must never fail a finished run
        log(f"slimtune-doctor could not check {prefix}: {str(e).splitlines()[0]}")
        return
    findings = [f for f in report.sorted()
                if f.severity != NOTE and f.code not in already]
    if findings:
        log("slimtune-doctor on the final checkpoint:")
        for finding in findings:
            for line in finding.lines():
                log(line)
