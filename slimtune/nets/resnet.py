"""ResNet v1 and v2 (50/101/152/200) from ``tf_slim.nets``, with a configurable BN arg scope.

The arg scope has the structure of ``tf_slim.nets.resnet_utils.resnet_arg_scope``
(conv2d with BN normaliser, the same params on bare ``batch_norm`` calls such as
v2's ``preact``/``postnorm``, SAME max-pooling) but takes a :class:`BatchNormConfig`.
"""

from slimtune import compat
from slimtune.nets.batch_norm import BatchNormConfig, slim_params
from slimtune.registry import ModelSpec

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


def _net(version, depth):
    def build(images, num_classes, is_training, scope):
        compat.apply()
        from tf_slim.nets import resnet_v1, resnet_v2

        module = resnet_v1 if version == 1 else resnet_v2
        fn = getattr(module, f"resnet_v{version}_{depth}")
        return fn(images, num_classes=num_classes, is_training=is_training, scope=scope)

    return build


def _spec(version, depth):
    name = f"resnet_v{version}_{depth}"
    return ModelSpec(
        name=name,
        family=f"resnet_v{version}",
        scope=name,
        net_fn=_net(version, depth),
        arg_scope_fn=resnet_arg_scope,
        # v1 checkpoints were trained with VGG preprocessing at 224 on 1000 classes;
        # v2 checkpoints with Inception preprocessing at 299 on 1001 (0 = background).
        default_image_size=224 if version == 1 else 299,
        min_image_size=32,
        num_classes=1000 if version == 1 else 1001,
        logits_scopes=(f"{name}/logits",),
        preprocessing="vgg" if version == 1 else "inception",
        batch_norm=RESNET_BN,
        has_dropout=False,
    )


SPECS = tuple(_spec(v, d) for v in (1, 2) for d in (50, 101, 152, 200))
