"""MobileNet v1 (depth multipliers 1.0, 0.75, 0.5, 0.25) and v2 (1.0, 1.4) as slim
graphs, with the variable layout of research/slim's published checkpoints.

``tf_slim.nets`` has no MobileNet.  The published checkpoints hold, under the scope
``MobilenetV1``:

    Conv2d_0/weights                         3x3/2 stem conv, no bias, BatchNorm
    Conv2d_<i>_depthwise/depthwise_weights   3x3 depthwise conv (i = 1..13), BatchNorm
    Conv2d_<i>_pointwise/weights             1x1 conv, BatchNorm
    Logits/Conv2d_1c_1x1/{weights,biases}    1x1 conv logits after the average pool

Every conv is SAME-padded and followed by BatchNorm (with gamma) and relu6.  The
average pool is 7x7 VALID, shrunk to the final map when the input is smaller than
224 px, so the logits are always 1x1.  A depth multiplier scales every conv's
channels (never below 8), not the logits.

MobileNet v2, under ``MobilenetV2``: a 3x3/2 ``Conv`` (BN, relu6); 17 inverted
residual blocks ``expanded_conv`` and ``expanded_conv_1`` .. ``_16``, each an
optional 1x1 ``expand`` (to 6x its input; BN, relu6), a 3x3 ``depthwise`` (BN, relu6)
and a linear 1x1 ``project`` (BN, no activation), with the input added back when the
stride is 1 and the depth unchanged; a 1x1 ``Conv_1`` to 1280 (BN, relu6); a global
average, dropout and ``Logits/Conv2d_1c_1x1``.  Depths are rounded to multiples of 8.
"""

from slimtune import compat
from slimtune.nets.batch_norm import BatchNormConfig, slim_params

# research/slim mobilenet_arg_scope: decay 0.9997, epsilon 1e-3, with gamma.
MOBILENET_V1_BN = BatchNormConfig(decay=0.9997, epsilon=1e-3, scale=True)

# (stride, channels at multiplier 1.0) of the 13 depthwise-separable layers.
SEPARABLE = ((1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512), (1, 512),
             (1, 512), (1, 512), (1, 512), (1, 512), (2, 1024), (1, 1024))
STEM_CHANNELS = 32
MIN_DEPTH = 8
DROPOUT_KEEP = 0.999  # research/slim's default for MobileNet v1


def channels(depth, multiplier):
    return max(int(depth * multiplier), MIN_DEPTH)


def pool_size(final_map):
    """The average pool's kernel: 7, or the final map's side when it is smaller."""
    return min(7, final_map)


def mobilenet_arg_scope(weight_decay, bn):
    """relu6 convs with BatchNorm; ``normalizer_params`` given explicitly so a forced BN
    mode beats the network's own ``arg_scope([batch_norm], is_training=...)``.  As
    upstream, depthwise kernels get no weight decay."""
    slim = compat.apply()
    import tensorflow as tf

    params = slim_params(bn)
    with slim.arg_scope([slim.conv2d, slim.separable_conv2d], activation_fn=tf.nn.relu6,
                        normalizer_fn=slim.batch_norm, normalizer_params=params,
                        weights_initializer=tf.compat.v1.truncated_normal_initializer(
                            stddev=0.09), padding="SAME"):
        with slim.arg_scope([slim.conv2d],
                            weights_regularizer=slim.l2_regularizer(weight_decay)) as scope:
            return scope


def network_v1(multiplier):
    """The slim MobileNet v1 with this depth multiplier."""

    def build(images, num_classes, is_training, scope, dropout_keep_prob=DROPOUT_KEEP):
        import tensorflow as tf

        slim = compat.apply()
        end_points = {}
        with tf.compat.v1.variable_scope(scope, "MobilenetV1", [images]), \
                slim.arg_scope([slim.batch_norm, slim.dropout], is_training=is_training):
            net = slim.conv2d(images, channels(STEM_CHANNELS, multiplier), [3, 3], stride=2,
                              scope="Conv2d_0")
            end_points["Conv2d_0"] = net
            for i, (stride, depth) in enumerate(SEPARABLE, 1):
                point = f"Conv2d_{i}_depthwise"
                net = slim.separable_conv2d(net, None, [3, 3], depth_multiplier=1,
                                            stride=stride, scope=point)
                end_points[point] = net
                point = f"Conv2d_{i}_pointwise"
                net = slim.conv2d(net, channels(depth, multiplier), [1, 1], scope=point)
                end_points[point] = net
            with tf.compat.v1.variable_scope("Logits"):
                side = net.shape[1]
                kernel = [pool_size(side), pool_size(net.shape[2])] if side else [7, 7]
                net = slim.avg_pool2d(net, kernel, padding="VALID", scope="AvgPool_1a")
                end_points["AvgPool_1a"] = net
                net = slim.dropout(net, keep_prob=dropout_keep_prob, scope="Dropout_1b")
                net = slim.conv2d(net, num_classes, [1, 1], activation_fn=None,
                                  normalizer_fn=None, scope="Conv2d_1c_1x1")
            end_points["Logits"] = net
        return net, end_points

    return build


# MobileNet v2: (expansion, output depth at 1.0, stride) of each inverted residual block.
V2_BLOCKS = ((1, 16, 1),
             (6, 24, 2), (6, 24, 1),
             (6, 32, 2), (6, 32, 1), (6, 32, 1),
             (6, 64, 2), (6, 64, 1), (6, 64, 1), (6, 64, 1),
             (6, 96, 1), (6, 96, 1), (6, 96, 1),
             (6, 160, 2), (6, 160, 1), (6, 160, 1),
             (6, 320, 1))
V2_FINAL = 1280
V2_DROPOUT_KEEP = 0.8  # research/slim's mobilenet_v2 training scope
# research/slim mobilenet_v2 training_scope: decay 0.997, epsilon 1e-3, with gamma.
MOBILENET_V2_BN = BatchNormConfig(decay=0.997, epsilon=1e-3, scale=True)


def divisible(value, divisor=8):
    """Round to the nearest multiple of ``divisor`` (at least ``divisor``), going up a
    step when rounding down would lose more than 10%: MobileNet v2's depth rule."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def v2_plan(multiplier):
    """``(scope, expanded depth or None, output depth, stride, residual)`` per block."""
    rows, depth_in = [], divisible(32 * multiplier)
    for i, (expansion, depth, stride) in enumerate(V2_BLOCKS):
        out = divisible(depth * multiplier)
        inner = divisible(depth_in * expansion) if expansion > 1 else None
        scope = "expanded_conv" + (f"_{i}" if i else "")
        rows.append((scope, inner, out, stride, stride == 1 and depth_in == out))
        depth_in = out
    return rows


def v2_final_depth(multiplier):
    return divisible(V2_FINAL * max(multiplier, 1.0))


def network_v2(multiplier):
    """The slim MobileNet v2 with this depth multiplier."""

    def build(images, num_classes, is_training, scope, dropout_keep_prob=V2_DROPOUT_KEEP):
        import tensorflow as tf

        slim = compat.apply()
        end_points = {}
        with tf.compat.v1.variable_scope(scope, "MobilenetV2", [images]), \
                slim.arg_scope([slim.batch_norm, slim.dropout], is_training=is_training):
            net = slim.conv2d(images, divisible(32 * multiplier), [3, 3], stride=2,
                              scope="Conv")
            end_points["Conv"] = net
            for block, inner, out, stride, residual in v2_plan(multiplier):
                with tf.compat.v1.variable_scope(block):
                    x = net
                    if inner:
                        x = slim.conv2d(x, inner, [1, 1], scope="expand")
                    x = slim.separable_conv2d(x, None, [3, 3], depth_multiplier=1,
                                              stride=stride, scope="depthwise")
                    x = slim.conv2d(x, out, [1, 1], activation_fn=None, scope="project")
                    net = x + net if residual else x
                end_points[block] = net
            net = slim.conv2d(net, v2_final_depth(multiplier), [1, 1], scope="Conv_1")
            end_points["Conv_1"] = net
            net = end_points["Logits"] = logits_head(net, num_classes, dropout_keep_prob)
        return net, end_points

    return build


def logits_head(net, num_classes, dropout_keep_prob):
    """research/slim's mobilenet ``Logits`` scope (v2, v3, EdgeTPU): the global average,
    dropout and the 1x1 conv ``Conv2d_1c_1x1`` with zero-initialised biases."""
    import tensorflow as tf

    slim = compat.apply()
    with tf.compat.v1.variable_scope("Logits"):
        net = tf.reduce_mean(net, axis=[1, 2], keepdims=True, name="global_pool")
        net = slim.dropout(net, keep_prob=dropout_keep_prob, scope="Dropout")
        return slim.conv2d(net, num_classes, [1, 1], activation_fn=None, normalizer_fn=None,
                           biases_initializer=tf.zeros_initializer(), scope="Conv2d_1c_1x1")
