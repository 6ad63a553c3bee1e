"""Exact population statistics of every BatchNorm layer's input ("precise BatchNorm").

A BatchNorm layer's moving mean and variance are exponential averages over the last
training steps, each taken with other weights than the final ones; with a slow decay,
or update ops that never ran, they are mostly their starting values.  Serving
(``is_training=False``) needs the statistics of the final weights.  Here they are
measured: the weights stay fixed, BatchNorm runs in training mode (every layer
normalises with its own batch's statistics, as during training, so each layer sees the
inputs training gave it), and each layer's input is summarised per batch and merged
exactly.  The result over N batches is the mean and variance of the concatenation of
the N batches' inputs, not a moving average.

The variance is the one slim's fused BatchNorm feeds into its moving average, the
unbiased (Bessel-corrected) variance, here over the whole concatenation: ``n`` =
batches x batch size x height x width values per channel.

Two engines share the merging: slim checkpoints (the graph built with BatchNorm forced
to batch statistics, dropout still off) and Keras models (a probe model of the BN
layers' inputs, called with ``training=True``).  :mod:`slimtune.recalibration` writes
what they measure into a checkpoint or model (``slimtune-recalibrate``, ``slimtune-train
--precise_bn_batches``); the doctor reads the same layer inputs in inference mode.  This
module only measures.
"""

import itertools

import numpy as np

from slimtune import bn_layers, taps
from slimtune.errors import CheckpointError, DataError, UsageError
from slimtune.progress import Meter

class Moments:
    """Per-channel count, mean and sum of squared deviations, merged batch by batch.

    Merging two parts uses the pairwise update of Chan, Golub and LeVeque in float64,
    so the result equals the statistics of the concatenated parts up to round-off,
    without the cancellation of a sum-of-squares formula.
    """

    def __init__(self):
        self.count = 0
        self.mean = None
        self.m2 = None  # sum over values of (value - mean)**2, per channel

    def add(self, count, mean, variance):
        """Merge ``count`` values per channel with this ``mean`` and biased ``variance``."""
        mean = np.asarray(mean, np.float64)
        m2 = np.asarray(variance, np.float64) * count
        if self.count == 0:
            self.count, self.mean, self.m2 = count, mean, m2
            return
        total = self.count + count
        delta = mean - self.mean
        self.mean = self.mean + delta * (count / total)
        self.m2 = self.m2 + m2 + delta * delta * (self.count * count / total)
        self.count = total

    def variance(self, ddof=1):
        """``ddof=1``: the unbiased variance fused BatchNorm uses; ``0``: the biased one."""
        return self.m2 / max(self.count - ddof, 1)


def moment_tensors(x, channel_axis=-1):
    """``(values per channel, mean, biased variance)`` tensors of ``x`` over every axis
    but the channel axis (two-pass, as ``tf.nn.moments``)."""
    import tensorflow as tf

    rank = x.shape.rank
    channel_axis %= rank
    mean, variance = tf.nn.moments(x, [a for a in range(rank) if a != channel_axis])
    return tf.size(x, tf.int64) // tf.cast(tf.shape(x)[channel_axis], tf.int64), mean, variance


# --- slim graphs -------------------------------------------------------------------------

def slim_statistics(spec, prefix, num_classes, bn, batches, num_batches, log=print,
                    variable_map=None):
    """Re-estimate the moving statistics of a slim checkpoint's BatchNorm layers.

    The network is built with BatchNorm forced to batch statistics (dropout off), every
    variable restored from ``prefix`` (``variable_map``: ``{variable: checkpoint name}``),
    and ``num_batches`` image arrays from ``batches`` are run through it.  Returns
    ``{layer name: Moments}`` in network order.
    """
    import tensorflow as tf

    from slimtune import compat, slim_run
    from slimtune.nets import batch_norm

    compat.apply()
    v1 = tf.compat.v1
    batches = iter(batches)
    first = _first_batch(batches)
    graph = tf.Graph()
    with graph.as_default():
        images = v1.placeholder(tf.float32, (None,) + first.shape[1:], name="images")
        net = slim_run.inference_network(spec, prefix, images, num_classes,
                                         bn.replace(mode=batch_norm.BATCH_STATS), variable_map)
        layers = bn_layers.slim_layers(graph)
        inference = [layer.name for layer in layers if not layer.training]
        if inference:
            raise RuntimeError("internal: BatchNorm forced to batch statistics, yet these "
                               "layers run in inference mode: " + ", ".join(inference[:3]))
        fetch = {layer.name: moment_tensors(layer.input, layer.channel_axis)
                 for layer in layers}
    # Not ``with Session``: that makes the graph the default one, and the batches come
    # from an eager tf.data iterator, which cannot run inside a graph.
    sess = v1.Session(graph=graph)
    try:
        with graph.as_default():
            net.saver.restore(sess, prefix)
        moments = accumulate(lambda x: sess.run(fetch, {images: x}),
                             itertools.chain([first], batches), num_batches, log)
    finally:
        sess.close()
    return {layer.name: moments[layer.name] for layer in layers}


# --- Keras models ------------------------------------------------------------------------

# Layers whose output is random under training=True.  The probe model runs with
# training=True so that BatchNorm uses batch statistics; any of these between the input
# and a BatchNorm would make the measured inputs differ from what serving feeds.
_RANDOM_IN_TRAINING = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
                       "GaussianNoise", "GaussianDropout", "AlphaDropout")


def keras_input_moments(probe, layers, batches, num_batches, training, log=None):
    """``{layer name: Moments}`` of the inputs of ``layers`` (the outputs of ``probe``)."""
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def run(images):
        outputs = probe(images, training=training)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return {layer.name: moment_tensors(out, layer.axis if isinstance(layer.axis, int)
                                           else layer.axis[0])
                for layer, out in zip(layers, outputs)}

    return accumulate(lambda x: {k: tuple(np.asarray(t) for t in v)
                                 for k, v in run(tf.constant(x)).items()},
                      batches, num_batches, log)


def keras_statistics(model, batches, num_batches, include_frozen=False, log=print):
    """Re-estimate the moving statistics of a Keras model's BatchNormalization layers.

    BatchNorm layers with ``trainable=False`` are frozen (Keras runs them in inference
    mode even under ``training=True``): they stay as they are, and normalise with their
    moving statistics while the others are measured, as in training, unless
    ``include_frozen``.  Returns ``({layer name: Moments}, [names left alone])``.
    """
    layers = bn_layers.keras_layers(model)
    if not layers:
        raise UsageError(f"Keras model {model.name} has no BatchNormalization layers: "
                         "there are no statistics to re-estimate")
    frozen = [layer for layer in layers if not layer.trainable]
    chosen = layers if include_frozen else [layer for layer in layers if layer.trainable]
    if not chosen:
        raise UsageError(
            f"every BatchNormalization layer of {model.name} is frozen (trainable=False): "
            "training normalised with these moving statistics, so serving already matches "
            "it; nothing written. Pass --include_frozen to re-estimate them anyway")
    probe = taps.keras_tap(model, [layer.input for layer in chosen])
    if probe is None:
        raise UsageError(f"the BatchNormalization layers of {model.name} sit inside nested "
                         "models, whose inputs cannot be reached from the model's input: "
                         "flatten the model (one functional graph) and try again")
    random = [layer.name for layer in probe.layers
              if type(layer).__name__ in _RANDOM_IN_TRAINING
              or type(layer).__name__.startswith("Random")]
    if random:
        raise UsageError(f"{model.name} has layers that are random in training mode before "
                         f"a BatchNormalization layer ({', '.join(random[:3])}): the "
                         "statistics would be measured on inputs serving never sees; "
                         "remove those layers from a copy of the model and recalibrate it")
    thawed = [layer for layer in frozen if layer in chosen]
    for layer in thawed:
        layer.trainable = True
    try:
        moments = keras_input_moments(probe, chosen, batches, num_batches, True, log)
    finally:
        for layer in thawed:
            layer.trainable = False
    left_alone = [layer.name for layer in layers if layer not in chosen]
    return {layer.name: moments[layer.name] for layer in chosen}, left_alone


# --- shared ------------------------------------------------------------------------------

def _first_batch(batches):
    first = next(batches, None)
    if first is None:
        raise DataError("the data gave no batch: the split holds fewer images than "
                        "--batch_size; lower --batch_size or use a larger split")
    return np.asarray(first)


def accumulate(run, batches, num_batches, log=None):
    """Merge ``run(images) -> {name: (count, mean, biased variance)}`` over
    ``num_batches`` batches; progress lines (batches, images/s, ETA) go to ``log``."""
    moments, meter, seen, done = {}, None, 0, 0
    every = max(1, num_batches // 10)
    for images in itertools.islice(batches, num_batches):
        images = np.asarray(images)
        if meter is None:
            meter = Meter(len(images), 0, num_batches)
        for name, (count, mean, variance) in run(images).items():
            moments.setdefault(name, Moments()).add(int(count), mean, variance)
        seen += len(images)
        done += 1
        if log and (done % every == 0 or done == num_batches):
            meter.tick(done)
            log(meter.line(done, label="batch", images=seen))
    if done < num_batches:
        raise DataError(f"the data gave {done} batches, {num_batches} were asked for: lower "
                        "--num_batches or use a larger split")
    bad = next((name for name, m in moments.items()
                if not (np.all(np.isfinite(m.mean)) and np.all(np.isfinite(m.m2)))), None)
    if bad is not None:
        raise CheckpointError(f"the input of BatchNorm layer {bad} is not finite on these "
                              "images: the weights themselves compute NaN or infinity, which "
                              "new statistics cannot fix; nothing written")
    return moments


def image_batches(split, preprocessing, image_size, batch_size, seed, augment=False,
                  grayscale=False):
    """Numpy image batches of ``split``, shuffled with ``seed`` and repeated as needed
    (1-channel with ``grayscale``, research/slim's ``--use_grayscale``).

    Evaluation preprocessing unless ``augment``: the statistics serve inference, whose
    inputs are evaluation-preprocessed.  Labels are not used (any label is in range).
    The order of images follows ``seed``; augmented images do not repeat exactly, since
    the pipeline draws its random crops and flips in parallel map calls.
    """
    from slimtune.data import pipeline

    data = pipeline.batches(split, preprocessing, image_size, batch_size, is_training=True,
                            num_classes=split.num_classes, seed=seed, augment=augment,
                            grayscale=grayscale)
    return (images.numpy() for images, _ in data)
