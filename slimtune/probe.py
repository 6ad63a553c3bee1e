"""Probe what a slim checkpoint computes: seeded inputs, and a true answer for NaN.

A run whose weights overflow (a BatchNorm normalising a handful of values per channel
at a high learning rate, say) can save a checkpoint whose own inference graph computes
NaN or inf.  Compared with anything else, it gives a meaningless "max rel nan", and
evaluated, a loss of nan; the true answer is that the checkpoint is broken.
:func:`check` gives it as a :class:`~slimtune.errors.BrokenCheckpoint`: the first end
point, in network order, whose value is not finite, and the largest-magnitude
variables.  Every tool that runs a checkpoint's graph calls it on what it computed.
:func:`check_keras` does the same for a Keras model: the first layer whose output is not
finite, by its slim end point (the architecture's end-point table) or the slim scope of
the variables it holds (the Keras naming rule), and the largest Keras weights.
"""

import numpy as np

from slimtune import taps
from slimtune.errors import BrokenCheckpoint

FIX = ("retrain with a lower --learning_rate or with --clip_gradient_norm, a larger "
       "--batch_size or --train_image_size, or use an earlier checkpoint of the run")


def random_images(batch, size, seed=0, channels=3):
    """A seeded batch in [-1, 1], the range both preprocessings roughly produce
    (``channels`` 1 for a grayscale run's network)."""
    rng = np.random.RandomState(seed)
    return rng.uniform(-1.0, 1.0, (batch, size, size, channels)).astype(np.float32)


def first_non_finite(sess, tensors, feed):
    """Key of the first of ``{key: tensor}`` in network order (op creation order) whose
    value for ``feed`` holds NaN or inf; ``None`` when every one is finite."""
    order = {op.name: i for i, op in enumerate(sess.graph.get_operations())}
    keys = sorted(tensors, key=lambda k: order.get(tensors[k].op.name, len(order)))
    values = sess.run({k: tensors[k] for k in keys}, feed)
    return next((k for k in keys if not np.all(np.isfinite(values[k]))), None)


def largest_weights(sess, count=3):
    """``[(variable name, max |value|)]`` of the graph's largest variables, largest first;
    a variable holding NaN or inf counts as the largest."""
    import tensorflow as tf

    variables = [v for v in sess.graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES)
                 if v.dtype.base_dtype.is_floating]
    return _largest(sess.run({v.op.name: v for v in variables}), count)


def _largest(values, count):
    """``[(name, max |value|)]`` of the ``count`` largest of ``{name: array}``."""
    sizes = []
    for name, value in values.items():
        value = np.abs(np.asarray(value, np.float64))
        size = float(value.max()) if value.size else 0.0
        sizes.append((name, size))
    sizes.sort(key=lambda item: np.inf if not np.isfinite(item[1]) else item[1], reverse=True)
    return sizes[:count]


def _short(value):
    text = f"{value:.2g}"
    return text.replace("e+0", "e").replace("e+", "e").replace("e-0", "e-")


def check(prefix, sess, logits_value, end_points, images, images_value, logits=None):
    """Raise :class:`BrokenCheckpoint` when ``logits_value`` (what the graph in ``sess``
    computed from ``images_value`` fed to ``images``) holds NaN or inf.

    The end points are run again on the first image whose logits are not finite (the
    whole batch when the graph's batch size is fixed) to find where it starts.
    """
    feed = _first_bad_image(logits_value, images_value)
    if feed is None:
        return
    if not (images.shape.rank and images.shape[0] is None):
        feed = images_value  # the graph's batch size is fixed
    tensors = dict(end_points)
    if logits is not None and not any(t is logits for t in tensors.values()):
        tensors["logits"] = logits
    first = first_non_finite(sess, tensors, {images: feed}) or "logits"
    raise _broken(f"checkpoint {prefix}", f"end point {first}", first, largest_weights(sess))


def _first_bad_image(logits_value, images_value):
    """The first image of ``images_value`` whose row of ``logits_value`` is not finite
    (a batch of one), or ``None`` when every row is finite."""
    logits_value = np.asarray(logits_value)
    if np.all(np.isfinite(logits_value)):
        return None
    bad = np.flatnonzero(~np.isfinite(logits_value.reshape(len(logits_value), -1)).all(1))
    return np.asarray(images_value)[bad[0]:bad[0] + 1]


def _broken(what, where, end_point, largest):
    """The :class:`BrokenCheckpoint` for ``what`` going non-finite first at ``where``."""
    weights = ", ".join(f"{name} ({_short(size)})" for name, size in largest)
    error = BrokenCheckpoint(
        f"{what} computes non-finite outputs (NaN/inf): first at {where}; largest "
        f"weights: {weights}. Its weights overflowed in training: {FIX}")
    error.end_point, error.weights = end_point, weights
    return error


def first_non_finite_layer(model, images):
    """The first layer of Keras ``model`` (in the order the model runs them) whose output
    for ``images`` holds NaN or inf; ``None`` when every one is finite, or when the
    layers' outputs cannot be fetched (a layer called more than once)."""
    import keras

    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    outputs = taps.keras_tap(model, [layer.output for layer in layers])
    if outputs is None:
        return None
    values = outputs(images, training=False)
    for layer, value in zip(layers, values):
        parts = value if isinstance(value, (list, tuple)) else [value]
        if not all(np.all(np.isfinite(np.asarray(part))) for part in parts):
            return layer
    return None


def keras_location(layer, spec=None):
    """``(where, end point)`` of Keras ``layer`` in a model of ``spec`` (a registry entry,
    or ``None``): its slim end point when the architecture's table lists it, else the
    slim scope of the variables it holds, else the layer alone."""
    from slimtune.keras_nets.layers import SEP

    end_points = {name: key for key, name in spec.end_points()} if spec else {}
    if layer.name in end_points:
        key = end_points[layer.name]
        return f"end point {key} (Keras layer {layer.name})", key
    if spec is not None and layer.weights:
        scope = spec.variable(layer.name.replace(SEP, '/'))
        return f"Keras layer {layer.name} (slim scope {scope})", scope
    return f"Keras layer {layer.name}", layer.name


def check_keras(path, model, logits_value, images_value, spec=None):
    """:func:`check` for Keras ``model`` (loaded from ``path``, a mirror of ``spec`` when
    known): raise :class:`BrokenCheckpoint` when ``logits_value``, what it computed from
    ``images_value``, holds NaN or inf, naming the first layer whose output is not finite
    on the first such image (:func:`keras_location`) and the largest weights."""
    feed = _first_bad_image(logits_value, images_value)
    if feed is None:
        return
    layer = first_non_finite_layer(model, feed)
    where, end_point = keras_location(layer, spec) if layer is not None else ("logits",) * 2
    largest = _largest({w.path: np.asarray(w.numpy()) for w in model.weights
                        if np.issubdtype(np.dtype(w.dtype), np.floating)}, 3)
    raise _broken(f"Keras model {path}", where, end_point, largest)


def feeding_weights(layer):
    """``[(weight path, max |value|)]`` of Keras ``layer``'s weights and of the layers
    whose outputs it reads, largest first: what a non-finite output is computed from."""
    layers = [layer]
    inputs = layer.input if isinstance(layer.input, (list, tuple)) else [layer.input]
    for tensor in inputs:
        history = getattr(tensor, "_keras_history", None)
        if history is not None and history[0] is not layer:
            layers.append(history[0])
    values = {w.path: np.asarray(w.numpy()) for source in layers for w in source.weights
              if np.issubdtype(np.dtype(w.dtype), np.floating)}
    return _largest(values, len(values))


def keras_only_non_finite(model, logits_value, images_value, spec=None):
    """Where Keras ``model`` goes non-finite on ``images_value`` (``logits_value`` being
    what it computed), in words naming the first such layer and the weights that feed it,
    for when the other form computed finite values; ``None`` when its logits are
    finite."""
    feed = _first_bad_image(logits_value, images_value)
    if feed is None:
        return None
    layer = first_non_finite_layer(model, feed)
    if layer is None:
        return "the Keras model computes non-finite logits (NaN/inf)"
    where, _ = keras_location(layer, spec)
    weights = ", ".join(f"{name} ({_short(size)})" for name, size in feeding_weights(layer))
    return (f"the Keras model computes non-finite outputs (NaN/inf), first at {where}"
            + (f", from weights {weights}" if weights else ""))
