"""After the last step: name an end point that went non-finite, and (--precise_bn_batches)
re-estimate the final checkpoint's BatchNorm statistics."""

import os

from slimtune import batch_statistics, checkpoint, recalibration
from slimtune.errors import BrokenCheckpoint

# --precise_bn_batches: the final checkpoint with re-estimated BatchNorm statistics.
PRECISE_BASENAME = "precise_bn.ckpt"


def is_precise(prefix):
    """Whether ``prefix`` is already a --precise_bn_batches checkpoint."""
    return os.path.basename(prefix).startswith(PRECISE_BASENAME)


def name_non_finite(run, prefix, images, log):
    """The final checkpoint gave non-finite inference outputs on the check batch: warn,
    naming the first end point that goes non-finite and the largest weights (a run can
    end with weights that overflowed while its training loss still looked finite)."""
    import tensorflow as tf

    from slimtune import slim_run

    try:
        slim_run.slim_outputs(run.spec, prefix, images, run.num_classes, run.batch_norm)
        log(f"WARNING: {prefix} gives non-finite inference outputs on some images")
    except BrokenCheckpoint as e:
        log(f"WARNING: {str(e).splitlines()[0]}")
    except tf.errors.OpError as e:  # a check must never fail a finished run
        log(f"could not check the outputs of {prefix}: {e.message.splitlines()[0]}")


def precise_batch_norm(cfg, run, split, raw, log):
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
        f"{run.preprocessing} evaluation preprocessing")
    batches = batch_statistics.image_batches(split, run.preprocessing, run.image_size,
                                             cfg.batch_size, cfg.seed or 0,
                                             grayscale=run.grayscale)
    tensors, layers, note = recalibration.recalibrated_checkpoint(
        run.spec, raw, checkpoint.read_tensors(raw), run.num_classes, run.batch_norm,
        batches, cfg.precise_bn_batches, log)
    recalibration.write_checkpoint(prefix, tensors, raw)
    state = tf.train.get_checkpoint_state(cfg.train_dir)
    kept = [p for p in state.all_model_checkpoint_paths if p != prefix] if state else [raw]
    tf.compat.v1.train.update_checkpoint_state(cfg.train_dir, prefix, kept + [prefix])
    recalibration.record_precise(cfg, run, split, name, raw, layers, note=note)
    log(f"Final checkpoint {prefix}: {layers} BatchNorm layers re-estimated, every other "
        f"tensor as in {os.path.basename(raw)} (kept)")
    return prefix
