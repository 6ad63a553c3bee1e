"""Inception v1, v2 and v3 from ``tf_slim.nets``, with a configurable BN arg scope, and
their layouts as tables (``slimtune.nets.inception_table``) for the Keras mirrors.

Upstream ``inception_v1_arg_scope`` and ``inception_v2_arg_scope`` hard-code the
BatchNorm decay; this arg scope has their structure (and v3's) with the decay,
epsilon and scale taken from a :class:`BatchNormConfig`.  Published Inception
checkpoints have no ``gamma``: ``scale=False``.

The tables are tf_slim's layouts, typos included (v1 ``Mixed_5b`` has ``Conv2d_0a_3x3``,
v3 ``Mixed_5c`` has ``Conv_1_0c_5x5`` and ``Mixed_6a`` names its 3x3 convs
``Conv2d_1a_1x1``).  Every body convolution is conv -> BatchNorm -> relu without bias;
v2's stem ``Conv2d_1a_7x7`` is a ``slim.separable_conv2d`` (depth multiplier 8) that the
arg scope does not reach: biases, no BatchNorm, no weight decay.

Logits heads: slim average-pools the last map with a VALID window, applies dropout and
a 1x1 conv.  v1's window is a fixed 7x7 with stride 1 (named ``MaxPool_0a_7x7``, an
average pool all the same); v2's 7x7 and v3's 8x8 shrink to a smaller map, with stride
2.  v3's auxiliary head sits on ``Mixed_6e``; its second conv is
``Conv2d_2a_{k}x{k}``, ``k = min(5, pooled map)``.
"""

from slimtune import compat
from slimtune.nets.batch_norm import BatchNormConfig, slim_params
from slimtune.nets.inception_table import (AuxHead, Block, Conv, Fork, Head, Pool,
                                           SeparableConv, Table, conv_branch)

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


def network(version):
    """``inception_v<version>`` of ``tf_slim.nets`` (v1, v2, v3)."""

    def build(images, num_classes, is_training, scope, **options):
        """``options``: ``create_aux_logits`` (v3), ``dropout_keep_prob``."""
        compat.apply()
        from tf_slim.nets import inception

        fn = getattr(inception, f"inception_v{version}")
        return fn(images, num_classes=num_classes, is_training=is_training, scope=scope,
                  **options)

    return build


# -- Inception v1 (GoogLeNet with BatchNorm) -----------------------------------------------
def _v1_mixed(name, b0, b1, b2, b3, b2_scope="Conv2d_0b_3x3"):
    """GoogLeNet's module: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 | max-pool -> 1x1.

    ``b1``/``b2`` are (reduce, out) widths.  The paper's 5x5 branch is a 3x3 in slim.
    """
    return Block(name, (
        conv_branch(("Conv2d_0a_1x1", b0, 1)),
        conv_branch(("Conv2d_0a_1x1", b1[0], 1), ("Conv2d_0b_3x3", b1[1], 3)),
        conv_branch(("Conv2d_0a_1x1", b2[0], 1), (b2_scope, b2[1], 3)),
        (Pool("MaxPool_0a_3x3", "max", 3), Conv("Conv2d_0b_1x1", b3, 1)),
    ))


_V1_LAYERS = (  # every layer SAME
    Conv("Conv2d_1a_7x7", 64, 7, 2),
    Pool("MaxPool_2a_3x3", "max", 3, 2),
    Conv("Conv2d_2b_1x1", 64, 1),
    Conv("Conv2d_2c_3x3", 192, 3),
    Pool("MaxPool_3a_3x3", "max", 3, 2),
    _v1_mixed("Mixed_3b", 64, (96, 128), (16, 32), 32),
    _v1_mixed("Mixed_3c", 128, (128, 192), (32, 96), 64),
    Pool("MaxPool_4a_3x3", "max", 3, 2),
    _v1_mixed("Mixed_4b", 192, (96, 208), (16, 48), 64),
    _v1_mixed("Mixed_4c", 160, (112, 224), (24, 64), 64),
    _v1_mixed("Mixed_4d", 128, (128, 256), (24, 64), 64),
    _v1_mixed("Mixed_4e", 112, (144, 288), (32, 64), 64),
    _v1_mixed("Mixed_4f", 256, (160, 320), (32, 128), 128),
    Pool("MaxPool_5a_2x2", "max", 2, 2),
    _v1_mixed("Mixed_5b", 256, (160, 320), (32, 128), 128, b2_scope="Conv2d_0a_3x3"),
    _v1_mixed("Mixed_5c", 384, (192, 384), (48, 128), 128),
)


# -- Inception v2 (BN-Inception) -----------------------------------------------------------
def _v2_mixed(name, b0, b1, b2, b3, pool="avg"):
    """1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 -> 3x3 | pool -> 1x1; ``b1``/``b2`` (reduce, out)."""
    pool_scope = {"avg": "AvgPool_0a_3x3", "max": "MaxPool_0a_3x3"}[pool]
    return Block(name, (
        conv_branch(("Conv2d_0a_1x1", b0, 1)),
        conv_branch(("Conv2d_0a_1x1", b1[0], 1), ("Conv2d_0b_3x3", b1[1], 3)),
        conv_branch(("Conv2d_0a_1x1", b2[0], 1), ("Conv2d_0b_3x3", b2[1], 3),
                     ("Conv2d_0c_3x3", b2[1], 3)),
        (Pool(pool_scope, pool, 3), Conv("Conv2d_0b_1x1", b3, 1)),
    ))


def _v2_reduction(name, b0, b1):
    """Grid reduction, stride 2 SAME: 1x1 -> 3x3/2 | 1x1 -> 3x3 -> 3x3/2 | max-pool/2."""
    return Block(name, (
        conv_branch(("Conv2d_0a_1x1", b0[0], 1), ("Conv2d_1a_3x3", b0[1], 3, 2)),
        conv_branch(("Conv2d_0a_1x1", b1[0], 1), ("Conv2d_0b_3x3", b1[1], 3),
                     ("Conv2d_1a_3x3", b1[1], 3, 2)),
        (Pool("MaxPool_1a_3x3", "max", 3, 2),),
    ))


_V2_LAYERS = (  # every layer SAME; depthwise multiplier min(int(64 / 3), 8) = 8
    SeparableConv("Conv2d_1a_7x7", 64, 7, 8, 2),
    Pool("MaxPool_2a_3x3", "max", 3, 2),
    Conv("Conv2d_2b_1x1", 64, 1),
    Conv("Conv2d_2c_3x3", 192, 3),
    Pool("MaxPool_3a_3x3", "max", 3, 2),
    _v2_mixed("Mixed_3b", 64, (64, 64), (64, 96), 32),
    _v2_mixed("Mixed_3c", 64, (64, 96), (64, 96), 64),
    _v2_reduction("Mixed_4a", (128, 160), (64, 96)),
    _v2_mixed("Mixed_4b", 224, (64, 96), (96, 128), 128),
    _v2_mixed("Mixed_4c", 192, (96, 128), (96, 128), 128),
    _v2_mixed("Mixed_4d", 160, (128, 160), (128, 160), 96),
    _v2_mixed("Mixed_4e", 96, (128, 192), (160, 192), 96),
    _v2_reduction("Mixed_5a", (128, 192), (192, 256)),
    _v2_mixed("Mixed_5b", 352, (192, 320), (160, 224), 128),
    _v2_mixed("Mixed_5c", 352, (192, 320), (192, 224), 128, pool="max"),
)


# -- Inception v3 ---------------------------------------------------------------------------
def _v3_mixed_35(name, pool_width, branch_1=("Conv2d_0a_1x1", "Conv2d_0b_5x5")):
    """35x35 module: 1x1 | 1x1 -> 5x5 | 1x1 -> 3x3 -> 3x3 | avg-pool -> 1x1."""
    return Block(name, (
        conv_branch(("Conv2d_0a_1x1", 64, 1)),
        conv_branch((branch_1[0], 48, 1), (branch_1[1], 64, 5)),
        conv_branch(("Conv2d_0a_1x1", 64, 1), ("Conv2d_0b_3x3", 96, 3),
                     ("Conv2d_0c_3x3", 96, 3)),
        (Pool("AvgPool_0a_3x3", "avg", 3), Conv("Conv2d_0b_1x1", pool_width, 1)),
    ))


def _v3_mixed_17(name, c7):
    """17x17 module with factorised 7x7s (``(1, 7)`` is height 1, width 7, as in slim)."""
    return Block(name, (
        conv_branch(("Conv2d_0a_1x1", 192, 1)),
        conv_branch(("Conv2d_0a_1x1", c7, 1), ("Conv2d_0b_1x7", c7, (1, 7)),
                     ("Conv2d_0c_7x1", 192, (7, 1))),
        conv_branch(("Conv2d_0a_1x1", c7, 1), ("Conv2d_0b_7x1", c7, (7, 1)),
                     ("Conv2d_0c_1x7", c7, (1, 7)), ("Conv2d_0d_7x1", c7, (7, 1)),
                     ("Conv2d_0e_1x7", 192, (1, 7))),
        (Pool("AvgPool_0a_3x3", "avg", 3), Conv("Conv2d_0b_1x1", 192, 1)),
    ))


def _v3_mixed_8(name, branch_1_3x1):
    """8x8 module whose 3x3s end in parallel 1x3 and 3x1 convs, concatenated."""
    return Block(name, (
        conv_branch(("Conv2d_0a_1x1", 320, 1)),
        (Conv("Conv2d_0a_1x1", 384, 1),
         Fork(conv_branch(("Conv2d_0b_1x3", 384, (1, 3)), (branch_1_3x1, 384, (3, 1))))),
        (Conv("Conv2d_0a_1x1", 448, 1), Conv("Conv2d_0b_3x3", 384, 3),
         Fork(conv_branch(("Conv2d_0c_1x3", 384, (1, 3)), ("Conv2d_0d_3x1", 384, (3, 1))))),
        (Pool("AvgPool_0a_3x3", "avg", 3), Conv("Conv2d_0b_1x1", 192, 1)),
    ))


_V3_LAYERS = (  # the stem is VALID unless marked; the Mixed blocks are SAME unless marked
    Conv("Conv2d_1a_3x3", 32, 3, 2, "valid"),
    Conv("Conv2d_2a_3x3", 32, 3, 1, "valid"),
    Conv("Conv2d_2b_3x3", 64, 3, 1, "same"),
    Pool("MaxPool_3a_3x3", "max", 3, 2, "valid"),
    Conv("Conv2d_3b_1x1", 80, 1, 1, "valid"),
    Conv("Conv2d_4a_3x3", 192, 3, 1, "valid"),
    Pool("MaxPool_5a_3x3", "max", 3, 2, "valid"),
    _v3_mixed_35("Mixed_5b", 32),
    _v3_mixed_35("Mixed_5c", 64, branch_1=("Conv2d_0b_1x1", "Conv_1_0c_5x5")),
    _v3_mixed_35("Mixed_5d", 64),
    Block("Mixed_6a", (
        conv_branch(("Conv2d_1a_1x1", 384, 3, 2, "valid")),
        conv_branch(("Conv2d_0a_1x1", 64, 1), ("Conv2d_0b_3x3", 96, 3),
                     ("Conv2d_1a_1x1", 96, 3, 2, "valid")),
        (Pool("MaxPool_1a_3x3", "max", 3, 2, "valid"),),
    )),
    _v3_mixed_17("Mixed_6b", 128),
    _v3_mixed_17("Mixed_6c", 160),
    _v3_mixed_17("Mixed_6d", 160),
    _v3_mixed_17("Mixed_6e", 192),
    Block("Mixed_7a", (
        conv_branch(("Conv2d_0a_1x1", 192, 1), ("Conv2d_1a_3x3", 320, 3, 2, "valid")),
        conv_branch(("Conv2d_0a_1x1", 192, 1), ("Conv2d_0b_1x7", 192, (1, 7)),
                     ("Conv2d_0c_7x1", 192, (7, 1)), ("Conv2d_1a_3x3", 192, 3, 2, "valid")),
        (Pool("MaxPool_1a_3x3", "max", 3, 2, "valid"),),
    )),
    _v3_mixed_8("Mixed_7b", "Conv2d_0b_3x1"),
    _v3_mixed_8("Mixed_7c", "Conv2d_0c_3x1"),
)


INCEPTION_V1 = Table("inception_v1", _V1_LAYERS, Head(
    pool="MaxPool_0a_7x7", window=7, stride=1, shrinks=False, dropout="Dropout_0b",
    logits="Conv2d_0c_1x1"))
INCEPTION_V2 = Table("inception_v2", _V2_LAYERS, Head(
    pool="AvgPool_1a_{k}x{k}", window=7, stride=2, shrinks=True, dropout="Dropout_1b",
    logits="Conv2d_1c_1x1"))
INCEPTION_V3 = Table("inception_v3", _V3_LAYERS, Head(
    pool="AvgPool_1a_{k}x{k}", window=8, stride=2, shrinks=True, dropout="Dropout_1b",
    logits="Conv2d_1c_1x1", prelogits="PreLogits"), AuxHead(
    on="Mixed_6e", pool="AvgPool_1a_5x5", conv="Conv2d_2a_{k}x{k}", logits="Conv2d_2b_1x1",
    kernel=5))
