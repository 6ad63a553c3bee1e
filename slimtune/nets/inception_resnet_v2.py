"""Inception-ResNet v2 as a slim graph with the variable layout of research/slim's checkpoint.

Like Inception v4 (absent from ``tf_slim.nets``), it is a table built in slim and in
Keras from the same entries (``slimtune.nets.inception_table``).  Under
``InceptionResnetV2``: the v3-style VALID stem, ``Mixed_5b``; ten 35x35 residual
blocks ``Repeat/block35_<i>`` (scale 0.17); reduction ``Mixed_6a``; twenty 17x17
``Repeat_1/block17_<i>`` (0.10); ``Mixed_7a``; nine 8x8 ``Repeat_2/block8_<i>`` (0.20)
and a last ``Block8`` (scale 1, no relu); ``Conv2d_7b_1x1``; ``AuxLogits`` on the
17x17 map; a whole-map average pool, dropout (keep 0.8) and a fully connected
``Logits/Logits``.  Each residual block's ``Conv2d_1x1`` has biases and no BatchNorm;
every other conv has BatchNorm without gamma and relu.
"""

from slimtune.nets.inception_table import (AuxHead, Block, Conv, Head, Pool, Residual, Table,
                                           conv_branch)


def _block35(name, scale=0.17):
    return Residual(name, (
        conv_branch(("Conv2d_1x1", 32, 1)),
        conv_branch(("Conv2d_0a_1x1", 32, 1), ("Conv2d_0b_3x3", 32, 3)),
        conv_branch(("Conv2d_0a_1x1", 32, 1), ("Conv2d_0b_3x3", 48, 3),
                    ("Conv2d_0c_3x3", 64, 3)),
    ), 320, scale)


def _block17(name, scale=0.10):
    return Residual(name, (
        conv_branch(("Conv2d_1x1", 192, 1)),
        conv_branch(("Conv2d_0a_1x1", 128, 1), ("Conv2d_0b_1x7", 160, (1, 7)),
                    ("Conv2d_0c_7x1", 192, (7, 1))),
    ), 1088, scale)


def _block8(name, scale=0.20, activate=True):
    return Residual(name, (
        conv_branch(("Conv2d_1x1", 192, 1)),
        conv_branch(("Conv2d_0a_1x1", 192, 1), ("Conv2d_0b_1x3", 224, (1, 3)),
                    ("Conv2d_0c_3x1", 256, (3, 1))),
    ), 2080, scale, activate)


_LAYERS = (
    Conv("Conv2d_1a_3x3", 32, 3, 2, "valid"),
    Conv("Conv2d_2a_3x3", 32, 3, 1, "valid"),
    Conv("Conv2d_2b_3x3", 64, 3),
    Pool("MaxPool_3a_3x3", "max", 3, 2, "valid"),
    Conv("Conv2d_3b_1x1", 80, 1, 1, "valid"),
    Conv("Conv2d_4a_3x3", 192, 3, 1, "valid"),
    Pool("MaxPool_5a_3x3", "max", 3, 2, "valid"),
    Block("Mixed_5b", (
        conv_branch(("Conv2d_1x1", 96, 1)),
        conv_branch(("Conv2d_0a_1x1", 48, 1), ("Conv2d_0b_5x5", 64, 5)),
        conv_branch(("Conv2d_0a_1x1", 64, 1), ("Conv2d_0b_3x3", 96, 3),
                    ("Conv2d_0c_3x3", 96, 3)),
        (Pool("AvgPool_0a_3x3", "avg", 3), Conv("Conv2d_0b_1x1", 64, 1)),
    )),
    *[_block35(f"Repeat/block35_{i}") for i in range(1, 11)],
    Block("Mixed_6a", (
        conv_branch(("Conv2d_1a_3x3", 384, 3, 2, "valid")),
        conv_branch(("Conv2d_0a_1x1", 256, 1), ("Conv2d_0b_3x3", 256, 3),
                    ("Conv2d_1a_3x3", 384, 3, 2, "valid")),
        (Pool("MaxPool_1a_3x3", "max", 3, 2, "valid"),),
    )),
    *[_block17(f"Repeat_1/block17_{i}") for i in range(1, 21)],
    Block("Mixed_7a", (
        conv_branch(("Conv2d_0a_1x1", 256, 1), ("Conv2d_1a_3x3", 384, 3, 2, "valid")),
        conv_branch(("Conv2d_0a_1x1", 256, 1), ("Conv2d_1a_3x3", 288, 3, 2, "valid")),
        conv_branch(("Conv2d_0a_1x1", 256, 1), ("Conv2d_0b_3x3", 288, 3),
                    ("Conv2d_1a_3x3", 320, 3, 2, "valid")),
        (Pool("MaxPool_1a_3x3", "max", 3, 2, "valid"),),
    )),
    *[_block8(f"Repeat_2/block8_{i}") for i in range(1, 10)],
    _block8("Block8", scale=1.0, activate=False),
    Conv("Conv2d_7b_1x1", 1536, 1),
)
INCEPTION_RESNET_V2 = Table(
    "inception_resnet_v2", _LAYERS,
    Head(pool="AvgPool_1a_8x8", window=None, stride=1, shrinks=True, dropout="Dropout",
         logits="Logits", flatten_first=True),
    AuxHead(on="Repeat_1/block17_20", pool="Conv2d_1a_3x3", conv="Conv2d_2a_5x5",
            logits="Logits"))
