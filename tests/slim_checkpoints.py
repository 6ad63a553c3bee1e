"""Make slim checkpoints for tests: random weights, biases and BatchNorm statistics.

Untouched BN statistics (mean 0, variance 1) hide epsilon, scale and ordering bugs,
so every test checkpoint gets the distributions of ENGINEERING section 7.
"""

import numpy as np
import tensorflow as tf

from slimtune import checkpoint, registry

v1 = tf.compat.v1


def randomise_batch_norm(sess, variables, seed=0):
    """Give BN statistics, gamma, beta and biases the distributions of ENGINEERING 7.

    All values are fed in one run: ``var.load`` per variable costs one graph run each,
    most of a deep net's checkpoint-making time.
    """
    rng = np.random.RandomState(seed)
    feeds, assigns = {}, []
    for var in variables:
        name, shape = var.op.name, var.shape.as_list()
        if name.endswith("moving_mean"):
            value = rng.normal(0.0, 0.5, shape)
        elif name.endswith("moving_variance"):
            value = rng.uniform(0.5, 2.0, shape)
        elif name.endswith("/gamma"):
            value = rng.uniform(0.5, 1.5, shape)
        elif name.endswith("/beta") or name.endswith("/biases"):
            # Biases start at 0 (or a constant); random ones catch a bias ported to the
            # wrong layer or dropped.
            value = rng.normal(0.0, 0.1, shape)
        else:
            continue
        placeholder = v1.placeholder(var.dtype.base_dtype, shape)
        assigns.append(v1.assign(var, placeholder))
        feeds[placeholder] = value.astype(np.float32)
    sess.run(assigns, feeds)


def make_checkpoint(prefix, model_name, num_classes, image_size=32, seed=0, global_step=1000,
                    run_on=None, end_point_keys=(), aux_logits=True):
    """Save a checkpoint of ``model_name`` with ``num_classes`` logits; returns the prefix.

    ``aux_logits=False`` saves an Inception without its auxiliary head, as fine-tuning
    recipes with ``create_aux_logits=False`` do.

    With ``run_on`` (an image batch) the same inference graph also computes the logits
    and the requested end points of the saved weights, and ``(prefix, logits,
    end_points)`` is returned: one slim graph build instead of two, which is most of a
    deep net's parity-test time.
    """
    spec = registry.get(model_name)
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(seed)
        step = v1.train.get_or_create_global_step()
        images = v1.placeholder(tf.float32, [None, image_size, image_size, 3])
        logits, end_points = spec.build(images, num_classes, is_training=False,
                                        create_aux_logits=aux_logits)
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            randomise_batch_norm(sess, v1.global_variables(), seed)
            step.load(global_step, sess)
            saved = v1.train.Saver().save(sess, prefix, global_step=global_step)
            if run_on is None:
                return saved
            out = sess.run({"logits": logits,
                            "end_points": {k: end_points[k] for k in end_point_keys}},
                           {images: run_on})
            return saved, out["logits"], out["end_points"]


def read(prefix):
    """``{name: array}`` of every variable in a checkpoint."""
    return checkpoint.read_tensors(prefix)


def write(prefix, tensors):
    """Save ``{name: array}`` as a checkpoint (to plant faults in real ones)."""
    return checkpoint.write(prefix, tensors)


def freeze(prefix, path, model_name, size, num_classes, is_training, batch_norm=None):
    """Write a frozen GraphDef (nodes ``input`` -> ``logits``) of a checkpoint, built with
    any ``is_training``: what research/slim's export_inference_graph.py --is_training +
    freeze_graph produced, mistakes included."""
    from slimtune import compat

    compat.apply()
    spec = registry.get(model_name)
    with tf.Graph().as_default() as graph:
        images = v1.placeholder(tf.float32, [None, size, size, 3], name="input")
        logits, _ = spec.build(images, num_classes, is_training=is_training,
                               batch_norm=batch_norm)
        tf.identity(logits, name="logits")
        with v1.Session() as sess:
            v1.train.Saver().restore(sess, prefix)
            frozen = v1.graph_util.convert_variables_to_constants(
                sess, graph.as_graph_def(), ["logits"])
    with open(path, "wb") as f:
        f.write(frozen.SerializeToString())
