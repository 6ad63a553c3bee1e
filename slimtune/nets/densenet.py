"""DenseNet 121/161/169 as slim graphs, laid out like pudae/tensorflow-densenet's checkpoints.

``tf_slim.nets`` has no DenseNet; the published slim-style checkpoints come from
pudae/tensorflow-densenet, so the variable scopes here are theirs (ENGINEERING 4):

    densenet121/conv1/weights                      7x7/2 stem conv, no bias
    densenet121/BatchNorm/...                      the stem's BatchNorm (unnamed scope)
    densenet121/dense_block1/conv_block1/x1/{BatchNorm,Conv}/...   1x1 bottleneck
    densenet121/dense_block1/conv_block1/x2/{BatchNorm,Conv}/...   3x3 growth conv
    densenet121/transition_block1/blk/{BatchNorm,Conv}/...         1x1 compression
    densenet121/final_block/BatchNorm/...
    densenet121/logits/{weights,biases}            1x1 conv on the pooled map

Every conv inside the blocks is pre-activation (BatchNorm -> relu -> conv, no bias) and
a conv block's output is its input concatenated with the ``growth``-channel result.  A
transition halves the channels (compression 0.5) and average-pools 2x2/2 VALID.  The
logits are ``[B, 1, 1, C]`` (squeezed by the registry).
"""

from slimtune import compat
from slimtune.nets.batch_norm import BatchNormConfig, slim_params

# pudae's densenet_arg_scope: decay 0.99, epsilon 1.1e-5, with gamma; weight decay 1e-4.
DENSENET_BN = BatchNormConfig(decay=0.99, epsilon=1.1e-5, scale=True)

COMPRESSION = 0.5


def densenet_arg_scope(weight_decay, bn):
    """Convs without bias or activation (BN and relu come before them), BN with ``bn``."""
    slim = compat.apply()
    with slim.arg_scope([slim.conv2d], weights_regularizer=slim.l2_regularizer(weight_decay),
                        activation_fn=None, biases_initializer=None):
        with slim.arg_scope([slim.batch_norm], **slim_params(bn)) as scope:
            return scope


def _preact_conv(net, filters, kernel, scope, end_points):
    """BatchNorm -> relu -> conv, the variables under ``scope/BatchNorm`` and ``scope/Conv``."""
    import tensorflow as tf

    slim = compat.apply()
    with tf.compat.v1.variable_scope(scope) as sc:
        net = slim.batch_norm(net, scope="BatchNorm")
        net = tf.nn.relu(net)
        net = slim.conv2d(net, filters, kernel, scope="Conv")
    end_points[sc.name] = net
    return net


def network(growth, stem_filters, blocks):
    """The slim DenseNet with this growth rate, stem width and conv blocks per dense block."""

    def build(images, num_classes, is_training, scope):
        import tensorflow as tf

        slim = compat.apply()
        end_points = {}
        with tf.compat.v1.variable_scope(scope, "densenet", [images]) as root, \
                slim.arg_scope([slim.batch_norm], is_training=is_training):
            net = slim.conv2d(images, stem_filters, 7, stride=2, scope="conv1")
            end_points[root.name + "/conv1"] = net
            net = tf.nn.relu(slim.batch_norm(net, scope="BatchNorm"))
            net = slim.max_pool2d(net, 3, stride=2, padding="SAME", scope="pool1")
            filters = stem_filters
            for b, count in enumerate(blocks, 1):
                with tf.compat.v1.variable_scope(f"dense_block{b}") as block:
                    for i in range(1, count + 1):
                        with tf.compat.v1.variable_scope(f"conv_block{i}") as unit:
                            branch = _preact_conv(net, 4 * growth, 1, "x1", end_points)
                            branch = _preact_conv(branch, growth, 3, "x2", end_points)
                            net = tf.concat([net, branch], axis=3)
                        end_points[unit.name] = net
                        filters += growth
                end_points[block.name] = net
                if b == len(blocks):
                    break
                filters = int(filters * COMPRESSION)
                with tf.compat.v1.variable_scope(f"transition_block{b}") as transition:
                    net = _preact_conv(net, filters, 1, "blk", end_points)
                    net = slim.avg_pool2d(net, 2, stride=2, padding="VALID")
                end_points[transition.name] = net
            with tf.compat.v1.variable_scope("final_block") as final:
                net = tf.nn.relu(slim.batch_norm(net, scope="BatchNorm"))
                net = tf.reduce_mean(net, axis=[1, 2], keepdims=True, name="global_avg_pool")
            end_points[final.name] = net
            net = slim.conv2d(net, num_classes, 1, biases_initializer=tf.zeros_initializer(),
                              scope="logits")
            end_points[root.name + "/logits"] = net
        return net, end_points

    return build
