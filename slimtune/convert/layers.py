"""Keras 3 building blocks that compute exactly what the slim layers compute.

Naming rule: a Keras layer is named after the slim scope of the variables it holds,
relative to the network's root scope, with ``/`` (forbidden in Keras names) replaced by
``.``: slim ``resnet_v1_50/block3/unit_5/bottleneck_v1/conv2`` becomes the layer
``block3.unit_5.bottleneck_v1.conv2`` of the model ``resnet_v1_50``; its BatchNorm is
``block3.unit_5.bottleneck_v1.conv2.BatchNorm``.  The port tables rely on this rule.

Padding: on the TensorFlow backend Keras ``padding="same"`` is TF SAME (asymmetric for
stride 2, -inf for max-pooling, padded cells excluded from averages), which is what
slim uses; slim's ``conv2d_same`` is symmetric explicit zero padding then VALID.
"""

import keras

from slimtune.nets.batch_norm import BatchNormConfig

SEP = "."


def keras_name(scope):
    """Keras layer name of a slim scope (relative to the network root)."""
    return scope.replace("/", SEP)


def batch_norm(x, scope, bn: BatchNormConfig):
    """slim.batch_norm at ``scope`` (the BatchNorm's own scope, e.g. ``.../conv1/BatchNorm``).

    Keras ``momentum`` is slim's ``decay``; ``scale=False`` means no gamma, as in the
    Inception checkpoints.
    """
    return keras.layers.BatchNormalization(
        axis=-1, momentum=bn.decay, epsilon=bn.epsilon, center=True, scale=bn.scale,
        name=keras_name(scope))(x)


def activation(x, scope, fn="relu"):
    """The activation of a slim layer, named ``<scope>.<fn>``; ``None`` = linear."""
    if fn is None:
        return x
    if fn == "relu":
        return keras.layers.ReLU(name=keras_name(scope) + SEP + "relu")(x)
    if fn == "relu6":
        return keras.layers.ReLU(max_value=6.0, name=keras_name(scope) + SEP + "relu6")(x)
    raise ValueError(f"unsupported activation {fn!r}")


def conv2d(x, scope, filters, kernel, strides=1, padding="same", bn=None, fn="relu",
           dilation=1, use_bias=None):
    """slim.conv2d: convolution, then BatchNorm if ``bn`` else a bias, then activation.

    slim adds biases only when there is no normaliser; ``use_bias`` overrides that
    (ResNet v2's final ``conv3`` and ``shortcut`` have biases and no BN).
    """
    if use_bias is None:
        use_bias = bn is None
    x = keras.layers.Conv2D(filters, kernel, strides=strides, padding=padding,
                            dilation_rate=dilation, use_bias=use_bias,
                            name=keras_name(scope))(x)
    if bn is not None:
        x = batch_norm(x, scope + "/BatchNorm", bn)
    return activation(x, scope, fn)


def conv2d_same(x, scope, filters, kernel, strides, bn=None, fn="relu"):
    """resnet_utils.conv2d_same: stride 1 is SAME; stride > 1 pads (k-1)//2 and k-1 - that
    on both sides, symmetric, whatever the input size, then VALID."""
    if strides == 1:
        return conv2d(x, scope, filters, kernel, 1, "same", bn, fn)
    total = kernel - 1
    begin = total // 2
    x = keras.layers.ZeroPadding2D(((begin, total - begin), (begin, total - begin)),
                                   name=keras_name(scope) + SEP + "pad")(x)
    return conv2d(x, scope, filters, kernel, strides, "valid", bn, fn)


def max_pool(x, scope, size, strides, padding="same"):
    return keras.layers.MaxPooling2D(size, strides, padding=padding, name=keras_name(scope))(x)


def avg_pool(x, scope, size, strides, padding="same"):
    return keras.layers.AveragePooling2D(size, strides, padding=padding,
                                         name=keras_name(scope))(x)


def logits_dense(x, scope, num_classes):
    """A 1x1-conv logits layer on a 1x1 map, as the equivalent Dense layer."""
    return keras.layers.Dense(num_classes, name=keras_name(scope))(x)
