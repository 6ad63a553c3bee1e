"""MobileNet v1 (1.0, 0.75, 0.5, 0.25) and v2 (1.0, 1.4): Keras mirrors and weight tables.

A 3x3/2 stem conv, then 13 pairs of a 3x3 depthwise conv (Keras ``DepthwiseConv2D``,
whose kernel ``[3, 3, C, 1]`` is slim's ``depthwise_weights`` as stored) and a 1x1
pointwise conv, each with BatchNorm and relu6, all TF SAME; a VALID average pool of
``min(7, final map)`` (a global average for every input up to 224 px, where slim's
logits are 1x1), dropout (inactive at inference), and the 1x1-conv logits as a Dense
layer.  No input size is baked in.

v2: the stem conv, 17 inverted residual blocks (``expand`` 1x1 with relu6 when the
expansion is above 1, ``depthwise`` 3x3 with relu6, linear ``project`` 1x1, the input
added back where slim adds it), ``Conv_1`` 1x1 with relu6, the global average,
dropout and the logits.
"""

import keras

from slimtune.convert import layers as L
from slimtune.nets import mobilenet as nets
from slimtune.nets.mobilenet import DROPOUT_KEEP, MULTIPLIERS, SEPARABLE, STEM_CHANNELS, channels

MODELS = tuple(MULTIPLIERS) + tuple(nets.V2_MULTIPLIERS)


def _depthwise(x, scope, stride, bn):
    x = keras.layers.DepthwiseConv2D(3, strides=stride, padding="same", depth_multiplier=1,
                                     use_bias=False, name=L.keras_name(scope))(x)
    x = L.batch_norm(x, scope + "/BatchNorm", bn)
    return L.activation(x, scope, "relu6")


def build(spec, num_classes, bn, include_aux_logits=False, image_size=None):
    if spec.family == "mobilenet_v2":
        return _build_v2(spec, num_classes, bn, image_size)
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


def _build_v2(spec, num_classes, bn, image_size):
    multiplier = nets.V2_MULTIPLIERS[spec.name]
    inputs = keras.Input((image_size, image_size, 3), name="images")
    x = L.conv2d(inputs, "Conv", nets.divisible(32 * multiplier), 3, 2, bn=bn, fn="relu6")
    for block, inner, out, stride, residual in nets.v2_plan(multiplier):
        y = x
        if inner:
            y = L.conv2d(y, block + "/expand", inner, 1, bn=bn, fn="relu6")
        y = _depthwise(y, block + "/depthwise", stride, bn)
        y = L.conv2d(y, block + "/project", out, 1, bn=bn, fn=None)
        x = keras.layers.Add(name=block + L.SEP + "add")([y, x]) if residual else y
    x = L.conv2d(x, "Conv_1", nets.v2_final_depth(multiplier), 1, bn=bn, fn="relu6")
    x = keras.layers.GlobalAveragePooling2D(name="Logits.global_pool")(x)
    x = keras.layers.Dropout(1.0 - nets.V2_DROPOUT_KEEP, name="Logits.Dropout")(x)
    logits = L.logits_dense(x, "Logits/Conv2d_1c_1x1", num_classes)
    return keras.Model(inputs, logits, name=spec.scope)


def _port_depthwise(porter, scope):
    porter.port_weight(porter.layer(scope).kernel, porter.key(scope, "depthwise_weights"))
    porter.batch_norm(scope + "/BatchNorm")


def port(porter, spec, bn, drop_background=False, include_aux_logits=False):
    if spec.family == "mobilenet_v2":
        porter.conv("Conv", bn=True)
        for block, inner, _, _, _ in nets.v2_plan(nets.V2_MULTIPLIERS[spec.name]):
            if inner:
                porter.conv(block + "/expand", bn=True)
            _port_depthwise(porter, block + "/depthwise")
            porter.conv(block + "/project", bn=True)
        porter.conv("Conv_1", bn=True)
        porter.dense_from_conv("Logits/Conv2d_1c_1x1", drop_background)
        return
    porter.conv("Conv2d_0", bn=True)
    for i in range(1, len(SEPARABLE) + 1):
        _port_depthwise(porter, f"Conv2d_{i}_depthwise")
        porter.conv(f"Conv2d_{i}_pointwise", bn=True)
    porter.dense_from_conv("Logits/Conv2d_1c_1x1", drop_background)


def end_points(spec):
    """Every conv's output after BatchNorm and relu6 (v1), every block's output (v2):
    slim's end points of the same names."""
    if spec.family == "mobilenet_v2":
        points = [("Conv", "Conv.relu6")]
        for block, _, _, _, residual in nets.v2_plan(nets.V2_MULTIPLIERS[spec.name]):
            points.append((block, block + (".add" if residual else ".project.BatchNorm")))
        return points + [("Conv_1", "Conv_1.relu6")]
    points = [("Conv2d_0", "Conv2d_0.relu6")]
    for i in range(1, len(SEPARABLE) + 1):
        for kind in ("depthwise", "pointwise"):
            point = f"Conv2d_{i}_{kind}"
            points.append((point, point + ".relu6"))
    return points  # slim's AvgPool_1a is [B,1,1,C], the Keras global average [B,C]
