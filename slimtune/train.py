"""slimtune-train: fine-tune a slim network; flags -> run -> engine.

The command decides what the run is (:func:`run_info`: architecture, classes and labels
of the dataset, BatchNorm parameters, image size, preprocessing), refuses a train dir
that holds another run, records the run in ``slimtune.json`` and hands it to the
engine, which trains (:mod:`slimtune.slim_engine`: a TF1 graph whose train op runs the
BatchNorm updates, in our own session loop).

Start-up order: a checkpoint already in ``train_dir`` is resumed (global step and all);
otherwise ``checkpoint_path`` warm-starts the model variables outside
``checkpoint_exclude_scopes``; otherwise every variable starts from its initialiser.

A seeded run is deterministic by default: TensorFlow's op determinism is on while the
run's graph is built and run, and two runs with the same seed on the same machine give
bit-identical checkpoints (see the engine for how).

Checks around the training: before the first step, the doctor's findings on BatchNorm
layers over too few values per channel; after the final save, the engine's check of the
final checkpoint in inference mode, then the doctor's findings on it.
"""

import dataclasses
import functools
import os
from typing import Optional

from slimtune import (checkpoint, compat, distribute, metadata, optim, precision, slim_engine,
                      start_plan)
from slimtune.checks import training_checks
from slimtune.data import pipeline, preprocessing
from slimtune.errors import UsageError
from slimtune.nets import batch_norm as bn_lib
from slimtune.progress import log as _log


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
    use_grayscale: bool = False  # research/slim's: images converted to one channel
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
    # research/slim's schedule counts epochs in one clone's batch (and --sync_replicas
    # divides by --replicas_to_aggregate); True: in global batches (slimtune.optim).
    decay_per_global_batch: bool = False
    sync_replicas: bool = False
    replicas_to_aggregate: int = 1
    # Set by the command from the placement (optim.decay_batch_size): the batch the
    # schedule counts in, kept when an engine gives its step the global batch.
    decay_batch_size: Optional[int] = None
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
    # None: the architecture's (research/slim's); 1.0 turns dropout off.
    dropout_keep_prob: Optional[float] = None
    moving_average_decay: Optional[float] = None
    clip_gradient_norm: float = 0.0
    # BatchNorm (None: the architecture's published value)
    batch_norm_decay: Optional[float] = None
    batch_norm_epsilon: Optional[float] = None
    freeze_batch_norm: bool = False
    # Several replicas, --engine=keras: normalise with the global batch's statistics
    # (an all-reduce per BatchNorm layer and step) instead of each replica's own batch.
    sync_batch_norm: bool = False
    # Logging and saving
    log_every_n_steps: int = 10
    save_interval_secs: int = 600
    save_interval_steps: Optional[int] = None
    save_summaries_secs: int = 600
    keep_checkpoint_max: int = 5
    seed: Optional[int] = None
    deterministic: Optional[bool] = None  # None: when seeded
    # After the last step, re-estimate the BatchNorm statistics over this many batches
    # of the training split (0: keep the moving averages); see slim_engine.finish.
    precise_bn_batches: int = 0
    # Where the replicas are (slimtune.distribute): several workers (--worker_hosts and
    # --task, or TF_CONFIG), or --num_clones devices of one machine.  --batch_size is
    # per replica: the global batch is batch_size x num_clones x workers.
    worker_hosts: Optional[str] = None
    task: int = 0
    worker_replicas: int = 1
    num_clones: int = 1
    clone_on_cpu: bool = False
    num_ps_tasks: int = 0
    # Input parallelism (slimtune.data.pipeline.parallelism; None: its defaults)
    num_readers: Optional[int] = None
    num_preprocessing_threads: Optional[int] = None
    # What trains: "slim" (the TF1 graph, slimtune.slim_engine) or "keras" (the Keras 3
    # mirror with slim's training semantics, slimtune.keras_engine).
    engine: str = metadata.SLIM_ENGINE
    # The number format the convolutions compute in (slimtune.precision): variables,
    # statistics, slots, the loss and the checkpoint stay float32 in every mode.
    mixed_precision: str = precision.FLOAT32


@dataclasses.dataclass
class TrainResult:
    checkpoint: str
    global_step: int
    loss: float
    seconds: float
    start: object = None  # the run's slimtune.start_plan.StartPlan
    # () -> [slimtune.outcome.FinalWeight]: the final weights, named as slim names them,
    # in either engine (read when called: a slim run's come from its checkpoint).
    final_weights: object = dataclasses.field(default=None, repr=False, compare=False)


def deterministic(cfg):
    """Whether the run is to be bit-identical to another with its seed (default: if seeded)."""
    wanted = cfg.seed is not None if cfg.deterministic is None else cfg.deterministic
    if wanted and cfg.seed is None:
        raise UsageError("--deterministic needs a --seed=N: runs repeat only with the same "
                         "seed")
    return wanted


def _validate(cfg):
    """The flags about the training itself (the run's are checked as it is resolved)."""
    if cfg.batch_size <= 0:
        raise UsageError(f"--batch_size={cfg.batch_size} must be positive")
    if cfg.max_number_of_steps is not None and cfg.max_number_of_steps <= 0:
        raise UsageError(f"--max_number_of_steps={cfg.max_number_of_steps} must be positive")
    if cfg.optimizer not in optim.OPTIMIZERS:
        raise UsageError(f"unknown --optimizer {cfg.optimizer!r}: choose one of "
                         f"{', '.join(optim.OPTIMIZERS)}")
    if cfg.learning_rate_decay_type not in optim.DECAY_TYPES:
        raise UsageError(f"unknown --learning_rate_decay_type {cfg.learning_rate_decay_type!r}: "
                         f"choose one of {', '.join(optim.DECAY_TYPES)}")
    if cfg.precise_bn_batches < 0:
        raise UsageError(f"--precise_bn_batches={cfg.precise_bn_batches} must be 0 (off) or "
                         "a number of batches")
    if cfg.dropout_keep_prob is not None and not 0 < cfg.dropout_keep_prob <= 1:
        raise UsageError(f"--dropout_keep_prob={cfg.dropout_keep_prob} must be in (0, 1] "
                         "(1 turns dropout off; unset: the architecture's)")
    if cfg.moving_average_decay and not 0 < cfg.moving_average_decay < 1:
        raise UsageError(f"--moving_average_decay={cfg.moving_average_decay} must be between "
                         "0 and 1 (research/slim's recipes use 0.9999; unset: no averages)")
    if cfg.engine not in metadata.ENGINES:
        raise UsageError(f"unknown --engine {cfg.engine!r}: choose one of "
                         f"{', '.join(metadata.ENGINES)}")
    precision.check_available(cfg.mixed_precision)
    if cfg.sync_batch_norm and cfg.engine != metadata.KERAS_ENGINE:
        raise UsageError("--sync_batch_norm is for --engine=keras: the slim engine normalises "
                         "each replica's batch on its own (drop the flag or add "
                         "--engine=keras)")


def _resolve(cfg):
    """The run the flags ask for, before the data is opened: a run is what its flags say
    over the architecture's defaults (a train dir's slimtune.json is only checked
    against it, see :func:`_check_resume_compatible`)."""
    flags = metadata.RunInfo(
        model_name=cfg.model_name, image_size=cfg.train_image_size,
        preprocessing=cfg.preprocessing_name, labels_offset=cfg.labels_offset,
        grayscale=cfg.use_grayscale or None,
        batch_norm=metadata.batch_norm_flags(
            cfg.batch_norm_decay, cfg.batch_norm_epsilon,
            mode=bn_lib.FROZEN if cfg.freeze_batch_norm else None),
        warm_start=cfg.checkpoint_path, engine=cfg.engine)
    run = metadata.resolve(flags, size_flag="--train_image_size",
                           mode_flag="--freeze_batch_norm")
    if cfg.precise_bn_batches and (run.batch_norm is None or cfg.freeze_batch_norm):
        raise UsageError("--precise_bn_batches re-estimates BatchNorm statistics, but "
                         + (f"{run.model_name} has no BatchNorm" if run.batch_norm is None
                            else "--freeze_batch_norm keeps them fixed by design (training "
                            "normalised with them)") + ": drop one of the two flags")
    return run


def _on_split(cfg, run, split):
    """``run`` with the classes and labels of ``split`` (after --labels_offset)."""
    offset = run.labels_offset
    num_classes = split.num_classes - offset
    if num_classes < 2:
        raise UsageError(f"--labels_offset={offset} leaves {num_classes} classes "
                         f"of {split.num_classes}")
    labels = {k - offset: v for k, v in split.labels.items() if 0 <= k - offset < num_classes}
    return dataclasses.replace(
        run, num_classes=num_classes, labels=labels,
        dataset=metadata.Dataset(cfg.dataset_name, split.dataset_dir, cfg.dataset_split_name))


def run_info(cfg, split):
    """The run ``cfg`` describes on ``split``: a resolved :class:`metadata.RunInfo`."""
    return _on_split(cfg, _resolve(cfg), split)


def _check_resume_compatible(train_dir, run):
    old = metadata.recorded(train_dir)
    for key, was, now in (("model_name", old.model_name, run.model_name),
                          ("num_classes", old.num_classes, run.num_classes),
                          ("engine", old.model_name and (old.engine or metadata.SLIM_ENGINE),
                           run.engine),
                          ("grayscale", old.model_name and bool(old.grayscale),
                           run.grayscale)):
        if was is not None and was != now:
            raise UsageError(
                f"{train_dir} holds a run with {key}={was!r}, this command asks for "
                f"{now!r}: use a new --train_dir (or delete the old one)")


def _start_line(cfg, run, split, placement):
    bn = run.batch_norm
    bn_text = (f"BN decay {bn.decay} epsilon {bn.epsilon} scale {bn.scale} mode {bn.mode}"
               if bn else "no BatchNorm")
    return (f"Training {run.model_name} on {cfg.dataset_name}/{cfg.dataset_split_name} "
            f"({split.num_samples} images, {run.num_classes} classes) at {run.image_size}px, "
            f"batch {cfg.batch_size}{_replicas_text(cfg, placement)}, {run.preprocessing} "
            f"preprocessing{' (grayscale)' if run.grayscale else ''}, {bn_text}"
            + ("" if cfg.seed is None else f", seed {cfg.seed}"
               + (" (deterministic)" if deterministic(cfg) else ""))
            + ("" if cfg.mixed_precision == precision.FLOAT32
               else f", {cfg.mixed_precision} mixed precision (float32 variables)"))


def _replicas_text(cfg, placement):
    if not placement.distributed:
        return ""
    return (f" per replica x {placement.num_replicas} replicas = global batch "
            f"{cfg.batch_size * placement.num_replicas} on {placement.describe()}")


def train(cfg: TrainConfig, log=_log) -> TrainResult:
    """Run training to ``max_number_of_steps``; returns the final checkpoint and step."""
    with compat.op_determinism(deterministic(cfg)), pipeline.parallelism(
            cfg.num_readers, cfg.num_preprocessing_threads):
        return _train(cfg, log)


def _train(cfg, log):
    compat.apply()
    _validate(cfg)
    placement = distribute.placement(cfg)
    cfg = dataclasses.replace(cfg, decay_batch_size=optim.decay_batch_size(cfg, placement))
    keras_engine = cfg.engine == metadata.KERAS_ENGINE
    if placement.distributed:
        cfg = dataclasses.replace(cfg, train_dir=placement.own_dir(cfg.train_dir))
        lock = distribute.lock_dir(cfg.train_dir, placement)  # noqa: F841 (held to the end)
    # Before any other TensorFlow op:
    strategy = (distribute.keras_strategy if keras_engine else distribute.slim_strategy)(
        placement)
    trainer, run, split = _open(cfg, log, placement, strategy)
    reported = training_checks.report_before_training(trainer, log)
    # Every worker's dir says what run it holds (slimtune-doctor and a resume read it).
    metadata.write(cfg.train_dir, metadata.training_document(
        run, weight_decay=cfg.weight_decay, moving_average_decay=cfg.moving_average_decay,
        exclude_scopes=checkpoint.split_scopes(cfg.checkpoint_exclude_scopes),
        seed=cfg.seed, deterministic=deterministic(cfg), mixed_precision=cfg.mixed_precision,
        files=getattr(trainer, "files", None), start=trainer.start.record()))
    log(_start_line(cfg, run, split, placement))
    log(optim.describe_decay(cfg, split.num_samples))
    if cfg.preprocessing_name is None:
        note = preprocessing.upstream_difference(run.model_name, run.preprocessing,
                                                 run.image_size)
        if note:
            log(note)
    final, step, loss, seconds = trainer.train()
    if placement.is_chief or not keras_engine:  # a Keras run's model.keras is the chief's
        training_checks.report_after_training(run, cfg.train_dir, final, log, reported)
    return TrainResult(final, step, loss, seconds, trainer.start,
                       functools.partial(trainer.final_weights, final))


def _open(cfg, log, placement=None, strategy=None):
    """``(trainer, run, split)``: the run resolved on its data and its engine's trainer
    built, resumed or warm-started; nothing trained or written yet."""
    if cfg.decay_batch_size is None:
        cfg = dataclasses.replace(cfg, decay_batch_size=optim.decay_batch_size(
            cfg, placement or distribute.Placement()))
    run = _resolve(cfg)
    split = pipeline.open_split(cfg.dataset_name, cfg.dataset_dir, cfg.dataset_split_name,
                                cfg.dataset_file_pattern)
    run = _on_split(cfg, run, split)
    created = not os.path.isdir(cfg.train_dir)
    os.makedirs(cfg.train_dir, exist_ok=True)
    try:
        checkpoint.relocate(cfg.train_dir, log)  # a train dir copied from another machine
        _check_resume_compatible(cfg.train_dir, run)
        start = start_plan.plan(cfg, run.spec, log)  # decided once, for either engine
        run = dataclasses.replace(run, include_aux_logits=start.aux_head)
        if cfg.engine == metadata.KERAS_ENGINE:
            from slimtune.keras_engine.trainer import Trainer  # only for runs using it

            return Trainer(cfg, run, split, log, start, placement, strategy), run, split
        return slim_engine.Trainer(cfg, run, split, log, start, placement, strategy), run, split
    except BaseException:
        # A run refused before it starts (a broken warm-start checkpoint, a mismatch)
        # leaves no empty train dir behind.
        if created and not os.listdir(cfg.train_dir):
            os.rmdir(cfg.train_dir)
        raise


def open_trainer(cfg: TrainConfig, log=_log):
    """The engine's trainer for ``cfg``, resumed from its train dir or warm-started, before
    any step: what a test or notebook inspects (its weights, its model)."""
    compat.apply()
    _validate(cfg)
    return _open(cfg, log)[0]
