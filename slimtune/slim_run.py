"""Build a slim network's inference graph, restore it from a checkpoint and run it.

The graph is built exactly as evaluation builds it (``is_training=False``, BatchNorm as
given) in its own ``tf.Graph``, with an auxiliary head only if the checkpoint holds one,
so what runs is the function the checkpoint actually computes, not our reading of it:
the reference of the conversion's parity check, of slimtune-verify for a checkpoint and
of the doctor's live checks.  Logits that are not finite raise
:class:`~slimtune.errors.BrokenCheckpoint` (see ``slimtune.probe``); the session runs
without grappler's Conv2D + BatchNorm + Relu fusion, whose ReLU turns NaN into 0.
"""

import contextlib
import dataclasses


@dataclasses.dataclass
class Restored:
    """The restored inference graph: feed ``images``, fetch ``logits``/``end_points``."""

    sess: object
    images: object  # the placeholder, [None, H, W, C]
    logits: object
    end_points: dict
    graph: object


@dataclasses.dataclass
class Inference:
    """A slim network built for inference in the default graph, and how to restore it."""

    logits: object
    end_points: dict
    saver: object  # restores the network (and the global step, when asked) from the prefix
    global_step: object = None  # the global step variable, when asked for


def inference_network(spec, prefix, images, num_classes, bn, variable_map=None,
                      moving_average_decay=None, global_step=False):
    """Build ``spec``'s network on ``images`` in the default graph as serving computes it
    (``is_training=False``, BatchNorm ``bn``) and plan its restore from ``prefix``: the one
    place every slim inference graph (conversion parity, verify, export, eval, the
    doctor, batch statistics) decides these things.

    - The auxiliary head is built only if the checkpoint holds one.
    - ``variable_map`` (``{graph variable name: checkpoint name}``) restores variables
      from other tensors, e.g. ExponentialMovingAverage shadows; ``moving_average_decay``
      restores research/slim's averages of the model variables instead of the variables.
      Without either, the architecture's default decides
      (``checkpoint.averages_to_read``: the shadows of a published MobileNet v3 or
      EdgeTPU checkpoint); ``{}`` restores the variables as named.
    - ``global_step``: also create the global step, restored when the checkpoint has one.
    - A variable of the graph that the checkpoint lacks or holds in another shape is a
      :class:`~slimtune.errors.CheckpointError` naming it (``checkpoint.plan_restore``).
    """
    import tensorflow as tf

    from slimtune import checkpoint, compat

    slim = compat.apply()
    v1 = tf.compat.v1
    names = checkpoint.read_shapes(prefix)
    logits, end_points = spec.build(images, num_classes, is_training=False, batch_norm=bn,
                                    create_aux_logits=spec.holds_aux_logits(names))
    if moving_average_decay:
        ema = tf.train.ExponentialMovingAverage(moving_average_decay)
        wanted = ema.variables_to_restore(slim.get_model_variables())
    else:
        if variable_map is None:
            use, _ = checkpoint.averages_to_read(spec, names)
            variable_map = checkpoint.average_map(names) if use else {}
            if use:  # the shadows are what runs: judged before anything restores them
                checkpoint.refuse_broken(prefix, averages=True)
        wanted = {variable_map.get(v.op.name, v.op.name): v for v in v1.global_variables()}
    restore, _ = checkpoint.plan_restore(wanted, prefix)
    step = None
    if global_step:
        step = v1.train.get_or_create_global_step()
        if step.op.name in names:
            restore[step.op.name] = step
    return Inference(logits, end_points, v1.train.Saver(var_list=restore), step)


@contextlib.contextmanager
def restored(spec, prefix, image_shape, num_classes, bn, variable_map=None):
    """Yield :class:`Restored` for checkpoint ``prefix``, images of ``image_shape``
    ``(H, W, C)`` (C = 1 for a grayscale run); the session closes when the block ends.

    ``variable_map`` (``{graph variable name: checkpoint name}``) restores some
    variables from other tensors than their own, e.g. ExponentialMovingAverage shadows.
    """
    import tensorflow as tf

    from slimtune import compat

    compat.apply()
    v1 = tf.compat.v1
    with tf.Graph().as_default() as graph:
        images = v1.placeholder(tf.float32, [None] + list(image_shape), name="images")
        net = inference_network(spec, prefix, images, num_classes, bn, variable_map)
        # Unfused: the probe must see every NaN (compat.session_config).
        with v1.Session(config=compat.session_config(fuse=False)) as sess:
            net.saver.restore(sess, prefix)
            yield Restored(sess, images, net.logits, net.end_points, graph)


def slim_outputs(spec, checkpoint_prefix, images, num_classes, bn, end_point_keys=(),
                 drop_background=False, variable_map=None):
    """Logits (and the requested end points) of the slim graph restored from a checkpoint.

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
    from slimtune import probe

    shape = next(iter(batches.values())).shape[1:]
    if any(images.shape[1:] != shape for images in batches.values()):
        raise ValueError(f"image batches of several shapes: "
                         f"{[images.shape for images in batches.values()]}")
    outputs = {}
    with restored(spec, checkpoint_prefix, shape, num_classes, bn, variable_map) as run:
        logits = run.logits[:, 1:] if drop_background else run.logits
        fetch = {"logits": logits,
                 "end_points": {k: run.end_points[k] for k in end_point_keys}}
        for name, images in batches.items():
            out = run.sess.run(fetch, {run.images: images})
            probe.check(checkpoint_prefix, run.sess, out["logits"], run.end_points,
                        run.images, images, logits)
            outputs[name] = out["logits"], out["end_points"]
    return outputs
