"""MobileNet v3 (large, small and their minimalistic forms) and MobileNet EdgeTPU as
slim graphs, with the variable layout of research/slim's published checkpoints.

research/slim builds these from ``nets/mobilenet/mobilenet_v3.py`` conv defs; the
checkpoints hold, under ``MobilenetV3`` (or ``MobilenetEdgeTPU``):

    Conv/weights + BatchNorm                 3x3/2 stem
    expanded_conv[_N]/expand                 1x1 conv (BN, activation), only when the
                                             expanded depth exceeds the input's
    expanded_conv[_N]/depthwise              kxk depthwise (BN, activation)
    expanded_conv[_N]/squeeze_excite/Conv    1x1 conv with biases, relu
    expanded_conv[_N]/squeeze_excite/Conv_1  1x1 conv with biases, hard sigmoid gate
    expanded_conv[_N]/project                linear 1x1 conv (BN), input added back when
                                             the stride is 1 and the depth unchanged
    Conv_1 + BatchNorm                       1x1 conv (960 / 576 / 1280)
    Conv_2/{weights,biases}                  v3 only: 1x1 conv without BN on the pooled
                                             map (1280 / 1024)
    Logits/Conv2d_1c_1x1/{weights,biases}

EdgeTPU's first nine blocks are "fused": the expansion is a kxk conv with the block's
stride and there is no depthwise conv.  The minimalistic forms drop squeeze-excite,
hard-swish and 5x5 kernels (every kernel 3x3, every activation relu).  Activations are
relu unless the table says hard-swish, ``x * relu6(x + 3) * (1/6)``, computed in that
order; squeeze-excite's gate is ``relu6(x + 3) * 0.16667`` (not 1/6: research/slim's
constant).  Depths follow MobileNet v2's rule (:func:`mobilenet.divisible`); the
squeeze depth is ``divisible(expanded depth / 4)``, never scaled by the multiplier.
"""

import collections

from slimtune import compat
from slimtune.nets.mobilenet import divisible, logits_head

HARD_SWISH, RELU = "hard_swish", "relu"
GATE_SCALE = 0.16667  # research/slim's hard-sigmoid gate multiplies by this, not by 1/6
SQUEEZE_FACTOR = 4

# One inverted-residual block at depth multiplier 1.0.
Block = collections.namedtuple(
    "Block", "kernel expansion depth stride se act fused residual",
    defaults=(False, True))


def _b(kernel, expansion, depth, stride, se=False, act=RELU, **kw):
    return Block(kernel, expansion, depth, stride, se, act, **kw)


# (stem depth, stem act), blocks, (Conv_1 depth, act), (Conv_2 depth, act) or None.
Plan = collections.namedtuple("Plan", "scope stem blocks head pooled")
HS = HARD_SWISH

V3_LARGE = Plan("MobilenetV3", (16, HS), (
    _b(3, 1, 16, 1), _b(3, 4, 24, 2), _b(3, 3, 24, 1),
    _b(5, 3, 40, 2, se=True), _b(5, 3, 40, 1, se=True), _b(5, 3, 40, 1, se=True),
    _b(3, 6, 80, 2, act=HS), _b(3, 2.5, 80, 1, act=HS),
    _b(3, 184 / 80., 80, 1, act=HS), _b(3, 184 / 80., 80, 1, act=HS),
    _b(3, 6, 112, 1, se=True, act=HS), _b(3, 6, 112, 1, se=True, act=HS),
    _b(5, 6, 160, 2, se=True, act=HS), _b(5, 6, 160, 1, se=True, act=HS),
    _b(5, 6, 160, 1, se=True, act=HS),
), (960, HS), (1280, HS))

V3_SMALL = Plan("MobilenetV3", (16, HS), (
    _b(3, 1, 16, 2, se=True), _b(3, 72. / 16, 24, 2), _b(3, 88. / 24, 24, 1),
    _b(5, 4, 40, 2, se=True, act=HS), _b(5, 6, 40, 1, se=True, act=HS),
    _b(5, 6, 40, 1, se=True, act=HS), _b(5, 3, 48, 1, se=True, act=HS),
    _b(5, 3, 48, 1, se=True, act=HS), _b(5, 6, 96, 2, se=True, act=HS),
    _b(5, 6, 96, 1, se=True, act=HS), _b(5, 6, 96, 1, se=True, act=HS),
), (576, HS), (1024, HS))


def _fused(expansion, depth, stride):
    return _b(3, expansion, depth, stride, fused=True)


EDGETPU = Plan("MobilenetEdgeTPU", (32, RELU), (
    _fused(1, 16, 1), _fused(8, 32, 2), _fused(4, 32, 1), _fused(4, 32, 1), _fused(4, 32, 1),
    _fused(8, 48, 2), _fused(4, 48, 1), _fused(4, 48, 1), _fused(4, 48, 1),
    _b(3, 8, 96, 2), _b(3, 4, 96, 1), _b(3, 4, 96, 1), _b(3, 4, 96, 1),
    _b(3, 8, 96, 1, residual=False), _b(3, 4, 96, 1), _b(3, 4, 96, 1), _b(3, 4, 96, 1),
    _b(5, 8, 160, 2), _b(5, 4, 160, 1), _b(5, 4, 160, 1), _b(5, 4, 160, 1),
    _b(3, 8, 192, 1),
), (1280, RELU), None)


def minimalistic(plan):
    """The plan without squeeze-excite, hard-swish and 5x5 kernels (research/slim's
    V3_*_MINIMALISTIC have the same depths, strides and expansions)."""
    blocks = tuple(b._replace(kernel=3, se=False, act=RELU) for b in plan.blocks)
    return plan._replace(stem=(plan.stem[0], RELU), blocks=blocks,
                         head=(plan.head[0], RELU), pooled=(plan.pooled[0], RELU))


# research/slim's nets_factory names mobilenet_v3_<key>.
V3_PLANS = {"small": V3_SMALL, "large": V3_LARGE, "small_minimalistic": minimalistic(V3_SMALL),
            "large_minimalistic": minimalistic(V3_LARGE)}

# research/slim's mobilenet training_scope: decay 0.997, slim's epsilon 1e-3, with gamma
# (MobileNet v2's settings), dropout keep 0.8 before the logits.
DROPOUT_KEEP = 0.8

Row = collections.namedtuple(
    "Row", "scope inner out kernel stride squeeze act fused residual")


def plan_rows(plan, multiplier=1.0):
    """``Row(scope, expanded depth or None, output depth, kernel, stride, squeeze depth
    or None, activation, fused, residual)`` per block, at this depth multiplier."""
    rows, depth_in = [], divisible(plan.stem[0] * multiplier)
    for i, b in enumerate(plan.blocks):
        out = divisible(b.depth * multiplier)
        inner = divisible(depth_in * b.expansion)
        inner = inner if inner > depth_in else None  # no expand conv otherwise
        squeeze = divisible((inner or depth_in) / SQUEEZE_FACTOR) if b.se else None
        scope = "expanded_conv" + (f"_{i}" if i else "")
        rows.append(Row(scope, inner, out, b.kernel, b.stride, squeeze, b.act, b.fused,
                        b.residual and b.stride == 1 and depth_in == out))
        depth_in = out
    return rows


def head_depths(plan, multiplier=1.0, finegrain=False):
    """``(Conv_1 depth, Conv_2 depth or None)``; with ``finegrain`` (research/slim's
    finegrain_classification_mode) the network's last conv keeps its depth."""
    head = divisible(plan.head[0] * multiplier)
    if plan.pooled is None:
        return (plan.head[0] if finegrain else head), None
    return head, (plan.pooled[0] if finegrain else divisible(plan.pooled[0] * multiplier))


def _activation_fn(name):
    import numpy as np
    import tensorflow as tf

    if name == RELU:
        return tf.nn.relu

    def hard_swish(x):
        with tf.compat.v1.name_scope("hard_swish"):
            return x * tf.nn.relu6(x + np.float32(3)) * np.float32(1. / 6.)

    return hard_swish


def _hard_sigmoid_gate(x):
    import tensorflow as tf

    return tf.nn.relu6(x + 3) * GATE_SCALE


def _global_average(net, name):
    """An average pool over the whole map (research/slim's pooling), or a mean when the
    map's size is not known while building."""
    import tensorflow as tf

    side = net.shape[1:3]
    if side[0] is None or side[1] is None:
        return tf.reduce_mean(net, axis=[1, 2], keepdims=True, name=name)
    return tf.nn.avg_pool2d(net, [1, side[0], side[1], 1], [1, 1, 1, 1], "VALID", name=name)


def _squeeze_excite(net, squeeze):
    """x * gate(Conv_1(relu(Conv(mean of x)))), the 1x1 convs with biases, no BN."""
    import tensorflow as tf

    slim = compat.apply()
    with tf.compat.v1.variable_scope("squeeze_excite"):
        pooled = _global_average(net, "pool")
        x = slim.conv2d(pooled, squeeze, [1, 1], normalizer_fn=None, activation_fn=tf.nn.relu,
                        scope="Conv")
        gate = slim.conv2d(x, net.shape[-1], [1, 1], normalizer_fn=None,
                           activation_fn=_hard_sigmoid_gate, scope="Conv_1")
        return net * gate


def network(plan, multiplier=1.0, finegrain=False):
    """The slim MobileNet v3 / EdgeTPU of this plan and depth multiplier."""

    def build(images, num_classes, is_training, scope, dropout_keep_prob=DROPOUT_KEEP):
        import tensorflow as tf

        slim = compat.apply()
        end_points = {}
        head, pooled = head_depths(plan, multiplier, finegrain)
        with tf.compat.v1.variable_scope(scope, plan.scope, [images]), \
                slim.arg_scope([slim.batch_norm, slim.dropout], is_training=is_training):
            net = slim.conv2d(images, divisible(plan.stem[0] * multiplier), [3, 3], stride=2,
                              activation_fn=_activation_fn(plan.stem[1]), scope="Conv")
            end_points["Conv"] = net
            for row in plan_rows(plan, multiplier):
                act = _activation_fn(row.act)
                with tf.compat.v1.variable_scope(row.scope):
                    x = net
                    if row.fused:
                        if row.inner:
                            x = slim.conv2d(x, row.inner, [row.kernel] * 2, stride=row.stride,
                                            activation_fn=act, scope="expand")
                    else:
                        if row.inner:
                            x = slim.conv2d(x, row.inner, [1, 1], activation_fn=act,
                                            scope="expand")
                        x = slim.separable_conv2d(x, None, [row.kernel] * 2, depth_multiplier=1,
                                                  stride=row.stride, activation_fn=act,
                                                  scope="depthwise")
                    if row.squeeze:
                        x = _squeeze_excite(x, row.squeeze)
                    x = slim.conv2d(x, row.out, [1, 1], activation_fn=None, scope="project")
                    net = x + net if row.residual else x
                end_points[row.scope] = net
            net = slim.conv2d(net, head, [1, 1], activation_fn=_activation_fn(plan.head[1]),
                              scope="Conv_1")
            end_points["Conv_1"] = net
            if pooled:
                net = _global_average(net, "AvgPool2D")
                net = slim.conv2d(net, pooled, [1, 1], normalizer_fn=None,
                                  activation_fn=_activation_fn(plan.pooled[1]), scope="Conv_2")
                end_points["Conv_2"] = net
            net = end_points["Logits"] = logits_head(net, num_classes, dropout_keep_prob)
        return net, end_points

    return build
