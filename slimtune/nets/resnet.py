"""ResNet v1 and v2 (50/101/152/200) from ``tf_slim.nets``, with a configurable BN arg scope.

The arg scope has the structure of ``tf_slim.nets.resnet_utils.resnet_arg_scope``
(conv2d with BN normaliser, the same params on bare ``batch_norm`` calls such as
v2's ``preact``/``postnorm``, SAME max-pooling) but takes a :class:`BatchNormConfig`.
"""

from slimtune import compat
from slimtune.nets.batch_norm import BatchNormConfig, slim_params

# Published ResNet checkpoints: decay 0.997, epsilon 1e-5, with gamma.
RESNET_BN = BatchNormConfig(decay=0.997, epsilon=1e-5, scale=True)


def resnet_arg_scope(weight_decay, bn):
    slim = compat.apply()
    import tensorflow as tf

    params = slim_params(bn)
    with slim.arg_scope(
            [slim.conv2d],
            weights_regularizer=slim.l2_regularizer(weight_decay),
            weights_initializer=slim.variance_scaling_initializer(),
            activation_fn=tf.nn.relu,
            normalizer_fn=slim.batch_norm,
            normalizer_params=params):
        with slim.arg_scope([slim.batch_norm], **params):
            with slim.arg_scope([slim.max_pool2d], padding="SAME") as scope:
                return scope


def network(version, depth):
    """``resnet_v<version>_<depth>`` of ``tf_slim.nets`` (the registry's ``net_fn``)."""

    def build(images, num_classes, is_training, scope):
        compat.apply()
        from tf_slim.nets import resnet_v1, resnet_v2

        module = resnet_v1 if version == 1 else resnet_v2
        fn = getattr(module, f"resnet_v{version}_{depth}")
        return fn(images, num_classes=num_classes, is_training=is_training, scope=scope)

    return build
