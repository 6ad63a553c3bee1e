"""The Keras mirrors built from plain arguments, as the Keras training engine will use them.

Weight decay: slim's ``l2_regularizer(wd)`` adds ``wd * sum(w^2) / 2`` per regularised
variable, Keras' ``L2(l)`` adds ``l * sum(w^2)``; the mirrors use ``L2(wd / 2)`` on exactly
the kernels slim's arg scopes regularise.  ResNet v2 has conv biases (not regularised),
MobileNet v1 depthwise kernels (not regularised by its arg scope) and Inception v2 a
separable stem conv (outside the arg scope): each would show up in the count or the sum.
"""

import numpy as np
import pytest
import tensorflow as tf

from slimtune import compat, registry
from slimtune.keras_nets import mobilenet, resnet

v1 = tf.compat.v1
WEIGHT_DECAY = 4e-5


def _slim_regularization(spec, size, num_classes):
    """``(number of regularisation losses, their sum, {variable: value})`` of the slim
    graph built with WEIGHT_DECAY and randomly initialised."""
    compat.apply()
    with tf.Graph().as_default():
        v1.set_random_seed(0)
        images = v1.placeholder(tf.float32, [None, size, size, 3])
        spec.build(images, num_classes, is_training=False, weight_decay=WEIGHT_DECAY)
        losses = v1.get_collection(v1.GraphKeys.REGULARIZATION_LOSSES)
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            tensors = sess.run({v.op.name: v for v in v1.global_variables()})
            return len(losses), float(sess.run(tf.add_n(losses))), tensors


# LeNet regularises every conv and fully connected kernel, logits too; CifarNet only fc3
# and fc4 (not its convs, not its logits).
@pytest.mark.parametrize("model_name", ["resnet_v2_50", "mobilenet_v1_025", "lenet", "cifarnet",
                                        "mobilenet_v3_small",
                                        pytest.param("inception_v2", marks=pytest.mark.slow)])
def test_weight_decay_equals_slim_regularization_losses(model_name):
    spec = registry.get(model_name)
    count, slim_total, tensors = _slim_regularization(spec, 32, 5)
    model = spec.keras_from_tensors(tensors, 5, weight_decay=WEIGHT_DECAY, image_size=32)
    keras_total = float(sum(float(loss) for loss in model.losses))
    print(f"{model_name}: {count} slim losses sum {slim_total:.6g}; {len(model.losses)} "
          f"Keras losses sum {keras_total:.6g}")
    assert len(model.losses) == count
    assert slim_total > 0 and abs(keras_total - slim_total) <= 1e-5 * slim_total
    # Without weight decay the same mirror carries no penalty at all.
    assert spec.build_keras(5).losses == []


def test_mirrors_build_from_plain_arguments():
    """No registry entry, no converter: the class count, BatchNorm config, dropout,
    weight decay and input size go straight into the builder."""
    from slimtune.nets.batch_norm import BatchNormConfig

    bn = BatchNormConfig(decay=0.9, epsilon=1e-4, scale=False)
    model = resnet.resnet(1, 50, num_classes=3, batch_norm=bn, image_size=40)
    assert model.input_shape == (None, 40, 40, 3) and model.output_shape == (None, 3)
    norm = model.get_layer("conv1.BatchNorm")
    assert (norm.momentum, norm.epsilon, norm.scale) == (0.9, 1e-4, False)
    model = mobilenet.mobilenet_v1(0.25, num_classes=4, dropout_keep_prob=0.5,
                                   weight_decay=1e-4)
    assert model.get_layer("Logits.Dropout_1b").rate == 0.5
    assert model.get_layer("Conv2d_1_depthwise").depthwise_regularizer is None
    kernel = model.get_layer("Conv2d_1_pointwise").kernel
    assert kernel.regularizer.l2 == pytest.approx(5e-5)
    out = model(np.ones((2, 32, 32, 3), np.float32), training=False)
    assert out.shape == (2, 4)
