"""slimtune-recalibrate: re-estimate BatchNorm moving statistics for the final weights.

The moving mean and variance a checkpoint serves with (``is_training=False``) are an
exponential average over training steps, taken with earlier weights; if the update ops
never ran or the decay was slow for the run's length, they are mostly their starting
values and served accuracy trails training.  This command measures them instead (see
``slimtune.batch_statistics``): N batches through the network with the weights fixed
and BatchNorm in training mode, each layer's input mean and variance merged exactly
over all N batches, and writes a new checkpoint (or ``.keras``) with those statistics
and every other tensor unchanged.

Nothing is written in place: the output directory must be new or empty and is filled
under a temporary name, renamed when complete.
"""

import dataclasses
import os
import time
from typing import Optional

from slimtune import batch_statistics, checkpoint, files, metadata, recalibration, registry
from slimtune import sources
from slimtune.data import pipeline
from slimtune.errors import UsageError
from slimtune.nets import batch_norm as bn_lib
from slimtune.progress import format_seconds, log as _log

KERAS_FILE = metadata.KERAS_FILE


@dataclasses.dataclass
class RecalibrateConfig:
    """What ``slimtune-recalibrate`` takes; field names are its flag names."""

    checkpoint_path: str
    output_dir: str
    dataset_name: Optional[str] = None  # default: the data the run was trained on
    dataset_dir: Optional[str] = None
    dataset_split_name: str = "train"
    dataset_file_pattern: Optional[str] = None
    num_batches: int = 50
    batch_size: int = 32
    model_name: Optional[str] = None  # default: slimtune.json, then the variable names
    preprocessing_name: Optional[str] = None
    image_size: Optional[int] = None
    train_preprocessing: bool = False
    include_frozen: bool = False
    seed: int = 0


def _check_flags(cfg):
    if not cfg.checkpoint_path:
        raise UsageError("no --checkpoint_path given: pass a checkpoint prefix, a train dir, "
                         "a published checkpoint's name, a .tar.gz or a .keras file")
    if not cfg.output_dir:
        raise UsageError("no --output_dir given: name a new directory for the recalibrated "
                         "checkpoint (the source is never changed)")
    if cfg.num_batches <= 0:
        raise UsageError(f"--num_batches={cfg.num_batches} must be positive (50-200 batches "
                         "give stable statistics)")
    if cfg.batch_size < 2:
        raise UsageError(f"--batch_size={cfg.batch_size} is too small: BatchNorm in training "
                         "mode needs several images per batch (16 or more is usual)")
    path = cfg.checkpoint_path.rstrip("/")
    # A directory, or a prefix / .keras file inside one (what resolving finds is checked
    # again once resolved).
    _check_not_in_place(cfg, path if os.path.isdir(path) else os.path.dirname(path) or ".")
    if os.path.exists(cfg.output_dir) and (not os.path.isdir(cfg.output_dir)
                                           or os.listdir(cfg.output_dir)):
        raise UsageError(f"--output_dir={cfg.output_dir} exists and is not empty: choose a new "
                         "directory (recalibration never overwrites)")


def _check_not_in_place(cfg, source_dir):
    if os.path.realpath(cfg.output_dir) == os.path.realpath(source_dir):
        raise UsageError(f"--output_dir={cfg.output_dir} is the directory of the checkpoint "
                         "itself: recalibration never writes in place; choose a new directory")


def _split(cfg, run):
    """The split to measure on: the flags, else the data the run was trained on."""
    dataset = run.dataset or metadata.Dataset()
    if not dataset.name:
        raise UsageError("no --dataset_name given and the checkpoint's slimtune.json names "
                         "no training data: pass --dataset_name (and --dataset_dir)")
    return pipeline.open_split(dataset.name, dataset.dir, dataset.split,
                               cfg.dataset_file_pattern)


def _run_info(cfg, on_file, identify):
    """Flags, else slimtune.json, else the architecture's defaults (``identify``)."""
    flags = metadata.RunInfo(
        model_name=cfg.model_name, image_size=cfg.image_size,
        preprocessing=cfg.preprocessing_name,
        dataset=metadata.Dataset(cfg.dataset_name, cfg.dataset_dir, cfg.dataset_split_name))
    return metadata.resolve(flags, on_file, identify=identify)


def _batches(cfg, split, preprocessing, size, grayscale=False):
    return batch_statistics.image_batches(split, preprocessing, size, cfg.batch_size,
                                          cfg.seed, cfg.train_preprocessing, grayscale)


def _announce(cfg, split, preprocessing, size, what, log):
    images = cfg.num_batches * cfg.batch_size
    mode = "training" if cfg.train_preprocessing else "evaluation"
    repeat = (f"; the split has {split.num_samples}, so images repeat in other batches"
              if images > split.num_samples else "")
    log(f"re-estimating BatchNorm statistics of {what} on {split.dataset_name}/{split.split}: "
        f"{cfg.num_batches} batches of {cfg.batch_size} ({images} images{repeat}) at "
        f"{size}px, {preprocessing} {mode} preprocessing")


def _record(cfg, name, source, split, preprocessing, size, layers, left_alone=(), note=None):
    return recalibration.record(name, source, split, cfg.num_batches, cfg.batch_size,
                                preprocessing, cfg.train_preprocessing, size, layers,
                                left_alone, note)


def _refuse_frozen(cfg, on_file, path):
    if (on_file.batch_norm and on_file.batch_norm.mode == bn_lib.FROZEN
            and not cfg.include_frozen):
        raise UsageError(
            f"{path} was trained with frozen BatchNorm (slimtune.json batch_norm.mode is "
            "'frozen'): training normalised with these moving statistics, so serving already "
            "matches it; nothing written. Pass --include_frozen to re-estimate them anyway")


def _write(cfg, fill, name, what, started, log):
    """Fill the output directory all at once (see files.write_directory)."""
    files.write_directory(cfg.output_dir, fill)
    log(f"wrote {os.path.join(cfg.output_dir, name)}: {what}, in "
        f"{format_seconds(time.monotonic() - started)}")


def recalibrate_slim(cfg, log=_log):
    prefix = sources.checkpoint_prefix(cfg.checkpoint_path)
    _check_not_in_place(cfg, os.path.dirname(prefix) or ".")
    on_file = metadata.recorded(prefix)
    tensors = checkpoint.read_tensors(prefix)
    # The moving statistics are what is re-estimated (from batch statistics, never read):
    # a negative or non-finite one is the repair's case, not a reason to refuse.
    checkpoint.refuse_broken(prefix, names=[n for n in tensors if not n.endswith(
        ("/moving_mean", "/moving_variance"))], tensors=tensors)
    run = _run_info(cfg, on_file, _identify(tensors))
    spec = run.spec
    if spec.batch_norm is None:
        raise UsageError(f"{spec.name} has no BatchNorm layers: there are no statistics to "
                         "re-estimate")
    _refuse_frozen(cfg, on_file, prefix)
    # The class count the checkpoint's logits have, whatever a file says.
    run = dataclasses.replace(run, num_classes=checkpoint.logits_classes(spec, tensors, prefix))
    split = _split(cfg, run)
    _announce(cfg, split, run.preprocessing, run.image_size, f"{spec.name} {prefix}", log)
    started = time.monotonic()
    new, layers, note = recalibration.recalibrated_checkpoint(
        spec, prefix, tensors, run.num_classes, run.batch_norm,
        _batches(cfg, split, run.preprocessing, run.image_size,
                 run.grayscale or checkpoint.input_channels(tensors) == 1),
        cfg.num_batches, log)
    name = os.path.basename(prefix)
    entry = _record(cfg, name, prefix, split, run.preprocessing, run.image_size, layers,
                    note=note)
    # A checkpoint without slimtune.json (a hand-written run) gets what later tools need.
    meta_out = metadata.with_recalibration(metadata.completed(on_file, run), entry)

    def fill(tmp):
        import tensorflow as tf

        recalibration.write_checkpoint(os.path.join(tmp, name), new, prefix)
        tf.compat.v1.train.update_checkpoint_state(tmp, name)
        metadata.write(tmp, meta_out)

    _write(cfg, fill, name, f"new moving statistics for {layers} BatchNorm layers, the "
           f"other {len(new) - 2 * layers} tensors unchanged", started, log)
    return entry


def _identify(tensors):
    """The architecture: the name given (flag or slimtune.json) checked against the
    checkpoint's variables, else read from them."""
    return lambda name: registry.identify(tensors, name)


def _not_in_registry(name):
    """A .keras model is built from no registry entry: no architecture defaults."""
    return None


def recalibrate_keras(cfg, log=_log):
    path = sources.keras_path(cfg.checkpoint_path)
    if not os.path.isfile(path):
        raise UsageError(f"Keras model {path} does not exist: check --checkpoint_path")
    source_dir = os.path.dirname(os.path.abspath(path))
    _check_not_in_place(cfg, source_dir)
    on_file = metadata.recorded(source_dir)
    model = sources.load_keras(path)
    _refuse_frozen(cfg, on_file, path)
    run = _run_info(cfg, on_file, _not_in_registry)
    fixed = model.input_shape[1] if len(model.input_shape) == 4 else None
    size, preprocessing = run.image_size or fixed, run.preprocessing
    if not size or not preprocessing:
        raise UsageError(f"{path} has no slimtune.json saying its input size and "
                         "preprocessing: pass --image_size and --preprocessing_name")
    run = dataclasses.replace(run, image_size=size)
    split = _split(cfg, run)
    _announce(cfg, split, preprocessing, size, f"Keras model {path}", log)
    started = time.monotonic()
    layers, left_alone = recalibration.recalibrate_keras_model(
        model, _batches(cfg, split, preprocessing, size,
                        run.grayscale or model.input_shape[-1] == 1), cfg.num_batches,
        cfg.include_frozen, log)
    entry = _record(cfg, KERAS_FILE, path, split, preprocessing, size, layers, left_alone)
    # Only the .keras is written; a SavedModel beside the source would be stale.
    meta_out = metadata.with_recalibration(
        metadata.completed(on_file, run, files={"keras": KERAS_FILE}), entry)

    def fill(tmp):
        model.save(os.path.join(tmp, KERAS_FILE))
        metadata.write(tmp, meta_out)

    _write(cfg, fill, KERAS_FILE, f"new moving statistics for {layers} "
           "BatchNormalization layers, every other weight unchanged", started, log)
    return entry


def recalibrate(cfg: RecalibrateConfig, log=_log):
    """Recalibrate a slim checkpoint or a ``.keras`` model; returns the slimtune.json
    record of what was done."""
    from slimtune import compat

    compat.apply()
    _check_flags(cfg)
    if sources.keras_path(cfg.checkpoint_path):
        return recalibrate_keras(cfg, log)
    return recalibrate_slim(cfg, log)
