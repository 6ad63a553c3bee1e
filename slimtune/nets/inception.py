"""Inception v1, v2 and v3 from ``tf_slim.nets``, with a configurable BN arg scope.

Upstream ``inception_v1_arg_scope`` and ``inception_v2_arg_scope`` hard-code the
BatchNorm decay; this arg scope has their structure (and v3's) with the decay,
epsilon and scale taken from a :class:`BatchNormConfig`.  Published Inception
checkpoints have no ``gamma``: ``scale=False``.
"""

from slimtune import compat
from slimtune.nets.batch_norm import BatchNormConfig, slim_params
from slimtune.registry import ModelSpec

INCEPTION_BN = BatchNormConfig(decay=0.9997, epsilon=1e-3, scale=False)


def inception_arg_scope(weight_decay, bn):
    slim = compat.apply()
    import tensorflow as tf

    params = slim_params(bn)
    params["variables_collections"] = {
        "beta": None, "gamma": None,
        "moving_mean": ["moving_vars"], "moving_variance": ["moving_vars"],
    }
    with slim.arg_scope([slim.conv2d, slim.fully_connected],
                        weights_regularizer=slim.l2_regularizer(weight_decay)):
        with slim.arg_scope([slim.conv2d],
                            weights_initializer=slim.variance_scaling_initializer(),
                            activation_fn=tf.nn.relu,
                            normalizer_fn=slim.batch_norm,
                            normalizer_params=params) as scope:
            return scope


def _net(version):
    def build(images, num_classes, is_training, scope, **aux):
        compat.apply()
        from tf_slim.nets import inception

        fn = getattr(inception, f"inception_v{version}")
        return fn(images, num_classes=num_classes, is_training=is_training, scope=scope, **aux)

    return build


def _spec(version, default_size, min_size):
    scope = f"InceptionV{version}"
    logits = (f"{scope}/Logits",) + ((f"{scope}/AuxLogits",) if version == 3 else ())
    return ModelSpec(
        name=f"inception_v{version}",
        family="inception",
        scope=scope,
        net_fn=_net(version),
        arg_scope_fn=inception_arg_scope,
        default_image_size=default_size,
        min_image_size=min_size,
        num_classes=1001,
        logits_scopes=logits,
        preprocessing="inception",
        batch_norm=INCEPTION_BN,
        has_dropout=True,
        aux_logits="AuxLogits" if version == 3 else None,
    )


# Smallest sizes that build (measured): v1 ends in a fixed 7x7 VALID average pool;
# v3's VALID stem and auxiliary head need 107 px; v2 shrinks every kernel for small
# inputs and builds at any size, 16 px is a floor below which nothing is learned.
SPECS = (
    _spec(1, 224, 193),
    _spec(2, 224, 16),
    _spec(3, 299, 107),
)
