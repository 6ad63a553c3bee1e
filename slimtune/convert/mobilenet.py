"""MobileNet v1 (1.0, 0.75, 0.5, 0.25): Keras mirrors and weight tables.

A 3x3/2 stem conv, then 13 pairs of a 3x3 depthwise conv (Keras ``DepthwiseConv2D``,
whose kernel ``[3, 3, C, 1]`` is slim's ``depthwise_weights`` as stored) and a 1x1
pointwise conv, each with BatchNorm and relu6, all TF SAME; a VALID average pool of
``min(7, final map)`` (a global average for every input up to 224 px, where slim's
logits are 1x1), dropout (inactive at inference), and the 1x1-conv logits as a Dense
layer.  No input size is baked in.
"""

import keras

from slimtune.convert import layers as L
from slimtune.nets.mobilenet import DROPOUT_KEEP, MULTIPLIERS, SEPARABLE, STEM_CHANNELS, channels

MODELS = tuple(MULTIPLIERS)


def _depthwise(x, scope, stride, bn):
    x = keras.layers.DepthwiseConv2D(3, strides=stride, padding="same", depth_multiplier=1,
                                     use_bias=False, name=L.keras_name(scope))(x)
    x = L.batch_norm(x, scope + "/BatchNorm", bn)
    return L.activation(x, scope, "relu6")


def build(spec, num_classes, bn, include_aux_logits=False, image_size=None):
    multiplier = MULTIPLIERS[spec.name]
    inputs = keras.Input((image_size, image_size, 3), name="images")
    x = L.conv2d(inputs, "Conv2d_0", channels(STEM_CHANNELS, multiplier), 3, 2, bn=bn,
                 fn="relu6")
    for i, (stride, depth) in enumerate(SEPARABLE, 1):
        x = _depthwise(x, f"Conv2d_{i}_depthwise", stride, bn)
        x = L.conv2d(x, f"Conv2d_{i}_pointwise", channels(depth, multiplier), 1, bn=bn,
                     fn="relu6")
    # slim pools min(7, side) VALID: over the whole final map whenever the logits are
    # 1x1, i.e. for every input up to 224 px.  A global average is that, at any size.
    x = keras.layers.GlobalAveragePooling2D(name="Logits.AvgPool_1a")(x)
    x = keras.layers.Dropout(1.0 - DROPOUT_KEEP, name="Logits.Dropout_1b")(x)
    logits = L.logits_dense(x, "Logits/Conv2d_1c_1x1", num_classes)
    return keras.Model(inputs, logits, name=spec.scope)


def port(porter, spec, bn, drop_background=False, include_aux_logits=False):
    porter.conv("Conv2d_0", bn=True)
    for i in range(1, len(SEPARABLE) + 1):
        scope = f"Conv2d_{i}_depthwise"
        porter.port_weight(porter.layer(scope).kernel, porter.key(scope, "depthwise_weights"))
        porter.batch_norm(scope + "/BatchNorm")
        porter.conv(f"Conv2d_{i}_pointwise", bn=True)
    porter.dense_from_conv("Logits/Conv2d_1c_1x1", drop_background)


def aux_scopes(spec):
    return ()


def end_points(spec):
    """Every conv's output after BatchNorm and relu6 (slim's end points of the same
    names) and the average pool."""
    points = [("Conv2d_0", "Conv2d_0.relu6")]
    for i in range(1, len(SEPARABLE) + 1):
        for kind in ("depthwise", "pointwise"):
            point = f"Conv2d_{i}_{kind}"
            points.append((point, point + ".relu6"))
    return points  # slim's AvgPool_1a is [B,1,1,C], the Keras global average [B,C]
