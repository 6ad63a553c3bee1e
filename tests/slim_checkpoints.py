"""Slim checkpoints for tests: random ones (made by slimtune.testing, with the BatchNorm
statistics of ENGINEERING section 7), reading and writing raw tensors, freezing.
"""

import tensorflow as tf

from slimtune import checkpoint, registry
from slimtune.testing import make_checkpoint  # noqa: F401  (the tests' one import point)

v1 = tf.compat.v1


def read(prefix):
    """``{name: array}`` of every variable in a checkpoint."""
    return checkpoint.read_tensors(prefix)


def write(prefix, tensors):
    """Save ``{name: array}`` as a checkpoint (to plant faults in real ones)."""
    return checkpoint.write(prefix, tensors)


def write_v1(path, tensors):
    """Save ``{name: array}`` in TF1's V1 format: the one ``.ckpt`` file (no ``.index`` or
    ``.data``) that research/slim's 2016-2017 archives hold, written by a V1 ``Saver``."""
    import os

    graph = tf.Graph()
    with graph.as_default():
        variables = [v1.Variable(value, name=name) for name, value in tensors.items()]
        saver = v1.train.Saver(variables, write_version=v1.train.SaverDef.V1)
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            saver.save(sess, path, write_meta_graph=False, write_state=False)
    assert os.path.isfile(path) and not os.path.exists(path + ".index")
    return path


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
