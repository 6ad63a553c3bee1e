"""MobileNet v1 and v2 as Keras 3 models laid out like research/slim's checkpoints.

v1: a 3x3/2 stem conv, then 13 pairs of a 3x3 depthwise conv (Keras ``DepthwiseConv2D``,
whose kernel ``[3, 3, C, 1]`` is slim's ``depthwise_weights`` as stored) and a 1x1
pointwise conv, each with BatchNorm and relu6, all TF SAME; a VALID average pool of
``min(7, final map)`` (a global average for every input up to 224 px, where slim's
logits are 1x1), dropout (inactive at inference), and the 1x1-conv logits as a Dense
layer.  No input size is baked in.

v2: the stem conv, 17 inverted residual blocks (``expand`` 1x1 with relu6 when the
expansion is above 1, ``depthwise`` 3x3 with relu6, linear ``project`` 1x1, the input
added back where slim adds it), ``Conv_1`` 1x1 with relu6, the global average,
dropout and the logits.  The layer plans are ``slimtune.nets.mobilenet``'s.
"""

from slimtune.keras_nets import layers as L
from slimtune.nets import mobilenet as nets


def _depthwise(x, scope, stride, bn):
    x = L.depthwise_conv2d(x, scope, 3, stride)
    x = L.batch_norm(x, scope + "/BatchNorm", bn)
    return L.activation(x, scope, "relu6")


def mobilenet_v1(multiplier, num_classes, batch_norm=nets.MOBILENET_V1_BN,
                 dropout_keep_prob=nets.DROPOUT_KEEP, weight_decay=0.0, image_size=None,
                 name="MobilenetV1"):
    """MobileNet v1 with this depth multiplier and ``num_classes`` logits (random weights)."""
    bn = batch_norm
    inputs = L.images(image_size)
    x = L.conv2d(inputs, "Conv2d_0", nets.channels(nets.STEM_CHANNELS, multiplier), 3, 2,
                 bn=bn, fn="relu6")
    for i, (stride, depth) in enumerate(nets.SEPARABLE, 1):
        x = _depthwise(x, f"Conv2d_{i}_depthwise", stride, bn)
        x = L.conv2d(x, f"Conv2d_{i}_pointwise", nets.channels(depth, multiplier), 1, bn=bn,
                     fn="relu6")
    # slim pools min(7, side) VALID: over the whole final map whenever the logits are
    # 1x1, i.e. for every input up to 224 px.  A global average is that, at any size.
    x = L.global_average_pool(x, "Logits.AvgPool_1a")
    x = L.dropout(x, "Logits/Dropout_1b", dropout_keep_prob)
    logits = L.logits_dense(x, "Logits/Conv2d_1c_1x1", num_classes)
    return L.with_weight_decay(L.model(inputs, logits, name), weight_decay)


def mobilenet_v2(multiplier, num_classes, batch_norm=nets.MOBILENET_V2_BN,
                 dropout_keep_prob=nets.V2_DROPOUT_KEEP, weight_decay=0.0, image_size=None,
                 name="MobilenetV2"):
    """MobileNet v2 with this depth multiplier and ``num_classes`` logits (random weights)."""
    bn = batch_norm
    inputs = L.images(image_size)
    x = L.conv2d(inputs, "Conv", nets.divisible(32 * multiplier), 3, 2, bn=bn, fn="relu6")
    for block, inner, out, stride, residual in nets.v2_plan(multiplier):
        y = x
        if inner:
            y = L.conv2d(y, block + "/expand", inner, 1, bn=bn, fn="relu6")
        y = _depthwise(y, block + "/depthwise", stride, bn)
        y = L.conv2d(y, block + "/project", out, 1, bn=bn, fn=None)
        x = L.add([y, x], block + L.SEP + "add") if residual else y
    x = L.conv2d(x, "Conv_1", nets.v2_final_depth(multiplier), 1, bn=bn, fn="relu6")
    x = L.global_average_pool(x, "Logits.global_pool")
    x = L.dropout(x, "Logits/Dropout", dropout_keep_prob)
    logits = L.logits_dense(x, "Logits/Conv2d_1c_1x1", num_classes)
    return L.with_weight_decay(L.model(inputs, logits, name), weight_decay)
