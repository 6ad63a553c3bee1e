"""With data: do the BatchNorm moving statistics describe the data the model sees?

Two measurements on the same images:

* **per layer**, the statistics of the layer's input in inference mode (earlier layers
  on their moving statistics, as when serving) against the layer's moving statistics:
  the standardised mean shift ``|batch mean - moving mean| / sqrt(moving var + eps)``
  and the log variance ratio ``log((batch var + eps) / (moving var + eps))``, each
  summarised by its median over channels.  A healthy layer is near 0 on both; a layer
  whose statistics never updated, or are still mostly their starting values, is far
  off, and the first such layer in network order is where served outputs go wrong.
* **end to end** (slim checkpoints), the same network with BatchNorm on the batch's
  own statistics (what ``is_training=True`` does to BN, dropout still off).  If that
  scores far better than inference mode, the weights are fine and the moving
  statistics are the cause: seed 001's "train accuracy 0.95, test accuracy 0.1".  A gap
  counts only when it is beyond chance on the images given
  (:func:`slimtune.stats.chance_of_gap`): 64 images cannot tell a 5-point gap from luck.
"""

import dataclasses

import numpy as np

from slimtune import batch_statistics, bn_layers, probe, slim_run, taps
from slimtune.findings import ERROR, NOTE, WARNING, Finding, listed
from slimtune.nets import batch_norm
from slimtune.stats import GAP_CHANCE, chance_of_gap, disagreements

# A layer is off when the median channel is shifted by more than one moving standard
# deviation, or its variance is off by more than a factor of 4 either way.
MEAN_SHIFT_LIMIT = 1.0
LOG_VARIANCE_LIMIT = float(np.log(4.0))
# Batch-statistics top-1 minus inference-mode top-1 that is an error / a warning; it is
# reported only when it is beyond chance (stats.GAP_CHANCE, a one-sided sign test on
# the images the two modes classify differently).
GAP_ERROR, GAP_WARNING = 0.2, 0.05


@dataclasses.dataclass
class LayerStatistics:
    """One BatchNorm layer: its moving statistics against its input's on the data."""

    name: str
    mean_shift: float  # median over channels of the standardised mean shift
    log_variance_ratio: float  # median over channels, signed

    @property
    def off(self):
        return (self.mean_shift > MEAN_SHIFT_LIMIT
                or abs(self.log_variance_ratio) > LOG_VARIANCE_LIMIT)

    def text(self):
        return (f"{self.name} (mean shift {self.mean_shift:.2g} sd, variance x"
                f"{np.exp(self.log_variance_ratio):.2g})")


def compare(name, batch_mean, batch_variance, moving_mean, moving_variance, epsilon):
    """:class:`LayerStatistics` from per-channel arrays."""
    scale = np.sqrt(np.asarray(moving_variance, np.float64) + epsilon)
    shift = np.abs(np.asarray(batch_mean, np.float64) - moving_mean) / scale
    ratio = np.log((np.asarray(batch_variance, np.float64) + epsilon)
                   / (np.asarray(moving_variance, np.float64) + epsilon))
    return LayerStatistics(name, float(np.median(shift)), float(np.median(ratio)))


def slim_measurements(spec, prefix, images, num_classes, bn):
    """Run a slim checkpoint on ``images`` in inference mode and with batch statistics.

    Returns ``(inference logits, batch-statistics logits, [LayerStatistics])`` with the
    layers in network order (graph construction order).
    """
    with slim_run.restored(spec, prefix, images.shape[1:], num_classes, bn) as run:
        fetch = {}
        for layer in bn_layers.slim_layers(run.graph):
            if not layer.training:
                _, mean, variance = batch_statistics.moment_tensors(layer.input,
                                                                    layer.channel_axis)
                fetch[layer.name] = (mean, variance, layer.op.inputs[3], layer.op.inputs[4],
                                     layer.epsilon)
        served, values = run.sess.run([run.logits, {k: v[:4] for k, v in fetch.items()}],
                                      {run.images: images})
        probe.check(prefix, run.sess, served, run.end_points, run.images, images, run.logits)
    layers = [compare(name, *values[name], fetch[name][4]) for name in fetch]
    batch_logits, _ = slim_run.slim_outputs(spec, prefix, images, num_classes,
                                            bn.replace(mode=batch_norm.BATCH_STATS))
    return served, batch_logits, layers


def keras_layer_statistics(model, images, chunk=16):
    """``[LayerStatistics]`` of a functional Keras model's BatchNorm layers, or ``None``
    when their inputs cannot be reached from the model's input (nested models)."""
    layers = bn_layers.keras_layers(model)
    probe_model = taps.keras_tap(model, [layer.input for layer in layers])
    if probe_model is None:
        return None
    chunks = [images[start:start + chunk] for start in range(0, len(images), chunk)]
    moments = batch_statistics.keras_input_moments(probe_model, layers, chunks, len(chunks),
                                                   training=False)
    return [compare(layer.name, moments[layer.name].mean, moments[layer.name].variance(0),
                    np.asarray(layer.moving_mean), np.asarray(layer.moving_variance),
                    layer.epsilon) for layer in layers]


def layer_findings(layers, where):
    """A warning naming the layers whose moving statistics do not describe the data."""
    if not layers:
        return []
    off = [layer for layer in layers if layer.off]
    worst = max(layers, key=lambda l: max(l.mean_shift, abs(l.log_variance_ratio)))
    if not off:
        return [Finding(NOTE, "bn-stats-match-data", "BatchNorm statistics describe the data",
                        f"{len(layers)} layers in {where}; the worst is {worst.text()}",
                        "inference mode normalises these images about as training did",
                        "nothing to do")]
    return [Finding(
        WARNING, "bn-stats-mismatch", "BatchNorm moving statistics do not describe the data",
        f"{len(off)} of {len(layers)} layers are off by more than {MEAN_SHIFT_LIMIT:g} sd "
        f"in mean or x{np.exp(LOG_VARIANCE_LIMIT):.0f} in variance (channel medians); "
        + _first_and_worst(off, worst),
        "these layers normalise served inputs with statistics of other data (initial 0/1, "
        "stale pretrained values, or another preprocessing), and every later layer sees "
        "inputs it was not trained on",
        "make the update ops run and train long enough for the decay (decay**steps small), "
        "or re-estimate the statistics on this data (slimtune-recalibrate); check the "
        "preprocessing matches training")]


def _first_and_worst(off, worst):
    if len(off) == 1:
        return f"it is {off[0].text()}"
    text = f"first in network order: {off[0].text()}"
    if worst is not off[0]:
        text += f"; worst: {worst.text()}"
    return text + f"; also {listed([l.name for l in off[1:] if l is not worst], 2)}"


def gap_findings(served, batch_logits, labels, layers, where, repair="slimtune-recalibrate"):
    """Inference mode against batch statistics, by top-1 when labels are known.

    ``repair``: the ``slimtune-recalibrate`` command line the fix offers.
    """
    served_top1 = served.argmax(1)
    batch_top1 = batch_logits.argmax(1)
    first_off = next((layer for layer in layers if layer.off), None)
    cause = f"; the first layer off is {first_off.text()}" if first_off else ""
    if labels is None:
        agree = float(np.mean(served_top1 == batch_top1))
        if agree >= 0.5:
            return []
        return [Finding(
            WARNING, "bn-eval-disagrees", "inference mode and batch statistics disagree",
            f"top-1 agrees on {agree:.0%} of {len(served)} images in {where}{cause}",
            "the moving statistics give another network than the one training saw",
            "run with labelled data (--dataset_name) to see which is right; see the "
            "other BatchNorm findings")]
    served_acc = float(np.mean(served_top1 == labels))
    batch_acc = float(np.mean(batch_top1 == labels))
    gap = batch_acc - served_acc
    batch_only, served_only = disagreements(batch_top1 == labels, served_top1 == labels)
    chance = chance_of_gap(batch_only, served_only)
    evidence = (f"top-1 {served_acc:.3f} in inference mode vs {batch_acc:.3f} with BatchNorm "
                f"on batch statistics, same {len(labels)} images and weights, in {where}")
    if gap < GAP_WARNING:
        return [Finding(NOTE, "bn-eval-gap-ok", "inference mode scores like training mode",
                        evidence, "the moving statistics serve the data as well as batch "
                        "statistics do", "nothing to do")]
    if chance >= GAP_CHANCE:
        return [Finding(
            NOTE, "bn-eval-gap-ok", "inference mode scores like training mode, within chance",
            f"{evidence}; {batch_only} images right only with batch statistics, "
            f"{served_only} only in inference mode: a healthy model shows such a gap "
            f"{chance:.0%} of the time", "the gap is too small for this many images to "
            "blame the moving statistics", "run on more images (--max_images) to measure "
            "a small gap")]
    evidence += f" (chance {chance:.2g} for a healthy model)"
    return [Finding(
        ERROR if gap >= GAP_ERROR else WARNING, "bn-eval-gap",
        "eval accuracy trails train-mode accuracy because of BatchNorm",
        evidence + cause,
        "only the BatchNorm statistics differ between the two runs, so the weights are "
        "fine and the moving statistics are the cause: they were never updated, or the "
        "decay is too slow for the number of steps",
        f"re-estimate the moving statistics for these weights on your training data: "
        f"{repair}, then evaluate again; next time train with the UPDATE_OPS dependencies "
        "(slim.learning.create_train_op) and a decay with decay**steps small "
        "(slimtune-train --batch_norm_decay=0.99 for short runs, or --precise_bn_batches)")]
