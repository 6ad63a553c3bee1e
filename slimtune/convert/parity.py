"""Run the slim graph and a Keras model on the same inputs and measure how far apart they are.

The slim side is built exactly as evaluation builds it (``is_training=False``) in its own
``tf.Graph`` and restored from the checkpoint, so the reference is the function the
checkpoint actually computes, not our reading of it.
"""

import dataclasses

import numpy as np

from slimtune.probe import random_images  # noqa: F401  (parity.random_images for callers)


def slim_outputs(spec, checkpoint_prefix, images, num_classes, bn, end_point_keys=(),
                 drop_background=False, variable_map=None):
    """Logits (and the requested end points) of the slim graph restored from a checkpoint.

    The graph has an auxiliary head only if the checkpoint holds one.  ``variable_map``
    (``{graph variable name: checkpoint name}``) restores some variables from other
    tensors than their own, e.g. ExponentialMovingAverage shadows.  Logits that are not
    finite raise :class:`~slimtune.errors.BrokenCheckpoint` (see ``slimtune.probe``).
    Returns ``(logits [B, C], {key: array})``.
    """
    return slim_outputs_each(spec, checkpoint_prefix, {"images": images}, num_classes, bn,
                             end_point_keys, drop_background, variable_map)["images"]


def slim_outputs_each(spec, checkpoint_prefix, batches, num_classes, bn, end_point_keys=(),
                      drop_background=False, variable_map=None):
    """:func:`slim_outputs` of each batch in ``batches`` (``{name: images}``, one shape).

    The graph is built and restored once for all of them (a deep net's build costs more
    than running it), and closed before returning.  Returns ``{name: (logits, points)}``.
    """
    import tensorflow as tf

    from slimtune import checkpoint, compat, probe

    compat.apply()
    v1 = tf.compat.v1
    shape = next(iter(batches.values())).shape[1:]
    if any(images.shape[1:] != shape for images in batches.values()):
        raise ValueError(f"image batches of several shapes: "
                         f"{[images.shape for images in batches.values()]}")
    aux = spec.holds_aux_logits(checkpoint.read_shapes(checkpoint_prefix))
    with tf.Graph().as_default():
        x = v1.placeholder(tf.float32, [None] + list(shape), name="images")
        logits, end_points = spec.build(x, num_classes, is_training=False, batch_norm=bn,
                                        create_aux_logits=aux)
        if drop_background:
            logits = logits[:, 1:]
        variable_map = variable_map or {}
        saver = v1.train.Saver({variable_map.get(v.op.name, v.op.name): v
                                for v in v1.global_variables()})
        fetch = {"logits": logits, "end_points": {k: end_points[k] for k in end_point_keys}}
        outputs = {}
        with v1.Session() as sess:
            saver.restore(sess, checkpoint_prefix)
            for name, images in batches.items():
                out = sess.run(fetch, {x: images})
                probe.check(checkpoint_prefix, sess, out["logits"], end_points, x, images,
                            logits)
                outputs[name] = out["logits"], out["end_points"]
    return outputs


@dataclasses.dataclass
class Difference:
    """How far ``candidate`` is from ``reference``, class by class (never sorted)."""

    max_abs: float
    max_rel: float  # max_abs / max(1, max |reference|)
    mean_abs: float
    top1_agreement: float
    count: int
    reference_max: float  # max |reference|: a zero difference of all-zero outputs proves nothing

    def line(self):
        return (f"max |ref| {self.reference_max:.3g}, max abs {self.max_abs:.3g}, max rel {self.max_rel:.3g}, mean abs "
                f"{self.mean_abs:.3g}, top-1 agreement {self.top1_agreement:.4f} "
                f"over {self.count} images")


def difference(reference, candidate):
    reference = np.asarray(reference, np.float64)
    candidate = np.asarray(candidate, np.float64)
    if reference.shape != candidate.shape:
        raise ValueError(f"shapes differ: reference {reference.shape}, "
                         f"candidate {candidate.shape}")
    diff = np.abs(reference - candidate)
    max_abs = float(diff.max()) if diff.size else 0.0
    reference_max = float(np.abs(reference).max()) if diff.size else 0.0
    scale = max(1.0, reference_max)
    if reference.ndim >= 2:
        top1 = float(np.mean(reference.reshape(len(reference), -1).argmax(-1)
                             == candidate.reshape(len(candidate), -1).argmax(-1)))
    else:
        top1 = 1.0
    return Difference(max_abs, max_abs / scale, float(diff.mean()) if diff.size else 0.0,
                      top1, len(reference), reference_max)
