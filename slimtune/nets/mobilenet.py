"""MobileNet v1 (depth multipliers 1.0, 0.75, 0.5, 0.25) as slim graphs, with the
variable layout of research/slim's published checkpoints.

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
"""

from slimtune import compat
from slimtune.nets.batch_norm import BatchNormConfig, slim_params
from slimtune.registry import ModelSpec

# research/slim mobilenet_v1_arg_scope: decay 0.9997, epsilon 1e-3, with gamma.
MOBILENET_V1_BN = BatchNormConfig(decay=0.9997, epsilon=1e-3, scale=True)

# (stride, channels at multiplier 1.0) of the 13 depthwise-separable layers.
SEPARABLE = ((1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512), (1, 512),
             (1, 512), (1, 512), (1, 512), (1, 512), (2, 1024), (1, 1024))
STEM_CHANNELS = 32
MIN_DEPTH = 8
DROPOUT_KEEP = 0.999  # research/slim's default for MobileNet v1
MULTIPLIERS = {"mobilenet_v1": 1.0, "mobilenet_v1_075": 0.75, "mobilenet_v1_050": 0.5,
               "mobilenet_v1_025": 0.25}


def channels(depth, multiplier):
    return max(int(depth * multiplier), MIN_DEPTH)


def pool_size(final_map):
    """The average pool's kernel: 7, or the final map's side when it is smaller."""
    return min(7, final_map)


def mobilenet_v1_arg_scope(weight_decay, bn):
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


def _net(name):
    multiplier = MULTIPLIERS[name]

    def build(images, num_classes, is_training, scope):
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
                net = slim.dropout(net, keep_prob=DROPOUT_KEEP, scope="Dropout_1b")
                net = slim.conv2d(net, num_classes, [1, 1], activation_fn=None,
                                  normalizer_fn=None, scope="Conv2d_1c_1x1")
            end_points["Logits"] = net
        return net, end_points

    return build


def _spec(name):
    return ModelSpec(
        name=name,
        family="mobilenet_v1",
        scope="MobilenetV1",
        net_fn=_net(name),
        arg_scope_fn=mobilenet_v1_arg_scope,
        default_image_size=224,
        min_image_size=32,
        num_classes=1001,
        logits_scopes=("MobilenetV1/Logits",),
        preprocessing="inception",
        batch_norm=MOBILENET_V1_BN,
        has_dropout=True,
    )


SPECS = tuple(_spec(name) for name in MULTIPLIERS)
