"""Random slim checkpoints that exercise a conversion: for tests and benchmarks.

A checkpoint straight from the initialisers has BatchNorm mean 0, variance 1, gamma 1
and beta 0, which hides epsilon, scale and ordering mistakes (ENGINEERING section 7):
two models that disagree on them still compute the same function.  The checkpoints made
here give those variables, and the biases, the distributions of real trained ones, so
a parity check on them means something.  slimtune's own tests and benchmarks use it;
so can anyone checking a tool that reads slim checkpoints.
"""

import numpy as np


def randomise_batch_norm(sess, variables, seed=0):
    """Give BN statistics, gamma, beta and biases the distributions of ENGINEERING 7.

    All values are fed in one run: ``var.load`` per variable costs one graph run each,
    most of a deep net's checkpoint-making time.
    """
    import tensorflow as tf

    v1 = tf.compat.v1
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
    """Save a random checkpoint of ``model_name`` with ``num_classes`` logits; returns the
    prefix.

    ``aux_logits=False`` saves an Inception without its auxiliary head, as fine-tuning
    recipes with ``create_aux_logits=False`` do.

    With ``run_on`` (an image batch) the same inference graph also computes the logits
    and the requested end points of the saved weights, and ``(prefix, logits,
    end_points)`` is returned: one slim graph build instead of two, which is most of a
    deep net's parity-test time.
    """
    import tensorflow as tf

    from slimtune import registry

    v1 = tf.compat.v1
    spec = registry.get(model_name)
    with tf.Graph().as_default():
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


def photos(size):
    """Four scikit-image photos (astronaut, coffee, cat, rocket), whole, resized to
    ``size`` and scaled to [-1, 1]: real images for parity checks, whose statistics random
    noise does not have.  Needs scikit-image (a test dependency)."""
    from skimage import data, transform

    pictures = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    return np.stack([transform.resize(p, (size, size), anti_aliasing=True) * 2.0 - 1.0
                     for p in pictures]).astype(np.float32)
