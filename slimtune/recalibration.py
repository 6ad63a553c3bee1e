"""Writing re-estimated BatchNorm statistics: into a Keras model, into a slim
checkpoint's tensors (a new checkpoint, never in place), and the record slimtune.json
keeps of it.  The measuring is :mod:`slimtune.batch_statistics`'; ``slimtune-recalibrate``
and both engines' ``--precise_bn_batches`` write through here.
"""

import os

import numpy as np

from slimtune import batch_statistics, bn_layers, checkpoint


def recalibrate_keras_model(model, batches, num_batches, include_frozen=False, log=print):
    """Re-estimate the moving statistics of ``model``'s BatchNormalization layers on
    ``num_batches`` of ``batches`` and write them into it (see
    :func:`slimtune.batch_statistics.keras_statistics`);
    returns ``(layers re-estimated, [names of frozen layers left alone])``."""
    moments, left_alone = batch_statistics.keras_statistics(model, batches, num_batches, include_frozen, log)
    if left_alone and log:
        log(f"left alone: {len(left_alone)} frozen BatchNormalization layers "
            f"(trainable=False; --include_frozen re-estimates them): "
            f"{', '.join(left_alone[:3])}{' ...' if len(left_alone) > 3 else ''}")
    assign_keras(model, moments)
    return len(moments), left_alone




def assign_keras(model, moments):
    """Write ``{layer name: Moments}`` into the model's moving statistics."""
    for layer in bn_layers.keras_layers(model):
        if layer.name in moments:
            layer.moving_mean.assign(moments[layer.name].mean.astype(np.float32))
            layer.moving_variance.assign(moments[layer.name].variance().astype(np.float32))




def _statistics_shadows(tensors):
    return [n for n in tensors if n.endswith(("moving_mean/ExponentialMovingAverage",
                                              "moving_variance/ExponentialMovingAverage"))]


def ema_note(tensors, averaged=False):
    """What happens to ExponentialMovingAverage shadows of the statistics, or None;
    ``averaged``: the statistics were measured with the averaged weights and written
    into the shadows too."""
    shadows = _statistics_shadows(tensors)
    if not shadows:
        return None
    if averaged:
        return (f"{len(shadows)} ExponentialMovingAverage shadows of BatchNorm statistics "
                "hold the new statistics too: they were measured with the averaged weights, "
                "which the tools read by default for this architecture")
    return (f"{len(shadows)} ExponentialMovingAverage shadows of BatchNorm statistics are "
            "left unchanged: they belong to the averaged weights (evaluation with "
            "--moving_average_decay), which these statistics were not measured with")




def recalibrated_checkpoint(spec, prefix, tensors, num_classes, bn, batches, num_batches,
                            log=print):
    """``tensors`` (every tensor of checkpoint ``prefix``) with each BatchNorm layer's
    moving_mean and moving_variance re-estimated on ``batches``, every other tensor as it
    was; returns ``(new tensors, layers re-estimated, note on EMA shadows or None)``."""
    tensors = dict(tensors)
    # The graph measured with reads the averages where the architecture's default says
    # so (slim_run.inference_network); the statistics then go where that graph reads them.
    averaged, _ = checkpoint.averages_to_read(spec, tensors)
    moments = batch_statistics.slim_statistics(spec, prefix, num_classes, bn, batches, num_batches, log)
    for layer, m in moments.items():
        for name, value in (("moving_mean", m.mean), ("moving_variance", m.variance())):
            targets = [f"{layer}/{name}"] + ([f"{layer}/{name}/ExponentialMovingAverage"]
                                             if averaged else [])
            for target in targets:
                if target in tensors or target == targets[0]:
                    tensors[target] = value.astype(np.float32)
    notes = [ema_note(tensors, averaged)]
    outside = sorted(n[: -len("/moving_mean")] for n in tensors if n.endswith("/moving_mean")
                     and n[: -len("/moving_mean")] not in moments)
    if outside:
        notes.append(f"{len(outside)} BatchNorm layers of the checkpoint are not in the "
                     f"{spec.name} graph and keep their statistics: {', '.join(outside[:3])}"
                     + (" ..." if len(outside) > 3 else ""))
    note = "; ".join(n for n in notes if n) or None
    if note and log:
        log(note)
    return tensors, len(moments), note




def record(name, source, split, num_batches, batch_size, preprocessing, augment, image_size,
           layers, left_alone=(), note=None):
    """slimtune.json's record of statistics re-estimated from ``source`` into ``name`` over
    ``num_batches`` batches of ``batch_size`` images of ``split``: the one record
    ``slimtune-recalibrate`` and ``--precise_bn_batches`` both keep."""
    from slimtune import metadata

    return metadata.recalibration_record(
        name, os.path.abspath(source), split, num_batches, batch_size,
        num_batches * batch_size, preprocessing, augment, image_size, layers, left_alone,
        note)


def record_precise(cfg, run, split, name, source, layers, left_alone=(), note=None):
    """Add to the train dir's slimtune.json the record of ``slimtune-train
    --precise_bn_batches`` (``cfg``, a ``train.TrainConfig``) having re-estimated the
    statistics of ``source`` into ``name``: what slimtune-recalibrate records."""
    from slimtune import metadata

    entry = record(name, source, split, cfg.precise_bn_batches, cfg.batch_size,
                   run.preprocessing, False, run.image_size, layers, left_alone, note)
    metadata.write(cfg.train_dir, metadata.with_recalibration(
        metadata.recorded(cfg.train_dir).document, entry))
    return entry




def write_checkpoint(prefix, tensors, source):
    """Save ``tensors`` at ``prefix``, with the source checkpoint's ``.meta`` (the training
    graph, which the doctor reads) beside it when there is one."""
    import shutil

    from slimtune import checkpoint

    checkpoint.write(prefix, tensors)
    if os.path.exists(source + ".meta"):
        shutil.copyfile(source + ".meta", prefix + ".meta")
    return prefix
