"""Probe what a slim checkpoint computes: seeded inputs, and a true answer for NaN.

A run whose weights overflow (a BatchNorm normalising a handful of values per channel
at a high learning rate, say) can save a checkpoint whose own inference graph computes
NaN or inf.  Compared with anything else, it gives a meaningless "max rel nan", and
evaluated, a loss of nan; the true answer is that the checkpoint is broken.
:func:`check` gives it as a :class:`~slimtune.errors.BrokenCheckpoint`: the first end
point, in network order, whose value is not finite, and the largest-magnitude
variables.  Every tool that runs a checkpoint's graph calls it on what it computed.
"""

import numpy as np

from slimtune.errors import BrokenCheckpoint

FIX = ("retrain with a lower --learning_rate or with --clip_gradient_norm, a larger "
       "--batch_size or --train_image_size, or use an earlier checkpoint of the run")


def random_images(batch, size, seed=0):
    """A seeded batch in [-1, 1], the range both preprocessings roughly produce."""
    rng = np.random.RandomState(seed)
    return rng.uniform(-1.0, 1.0, (batch, size, size, 3)).astype(np.float32)


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
    values = sess.run({v.op.name: v for v in variables})
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
    logits_value = np.asarray(logits_value)
    if np.all(np.isfinite(logits_value)):
        return
    bad_rows = np.flatnonzero(~np.isfinite(logits_value.reshape(len(logits_value), -1)).all(1))
    feed = images_value
    if images.shape.rank and images.shape[0] is None and len(bad_rows):
        feed = images_value[bad_rows[0]:bad_rows[0] + 1]
    tensors = dict(end_points)
    if logits is not None and not any(t is logits for t in tensors.values()):
        tensors["logits"] = logits
    first = first_non_finite(sess, tensors, {images: feed}) or "logits"
    weights = ", ".join(f"{name} ({_short(size)})" for name, size in largest_weights(sess))
    error = BrokenCheckpoint(
        f"checkpoint {prefix} computes non-finite outputs (NaN/inf): first at end point "
        f"{first}; largest weights: {weights}. Its weights overflowed in training: {FIX}")
    error.end_point, error.weights = first, weights
    raise error
