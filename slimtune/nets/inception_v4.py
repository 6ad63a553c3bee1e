"""Inception v4 as a slim graph with the variable layout of research/slim's checkpoint.

``tf_slim.nets`` has no Inception v4.  The network is the table :data:`INCEPTION_V4`
(see ``slimtune.nets.inception_table``), built in slim by walking it and in Keras by
``slimtune.keras_nets.inception``, so both have the same layers by construction; the
counts test pins the table to the published checkpoint's variables.

Layout under ``InceptionV4``: a VALID stem (``Conv2d_1a_3x3`` .. ``Mixed_5a``), four
35x35 ``block_inception_a`` (``Mixed_5b``..``5e``), reduction ``Mixed_6a``, seven 17x17
``block_inception_b`` (``Mixed_6b``..``6h``), reduction ``Mixed_7a``, three 8x8
``block_inception_c`` (``Mixed_7b``..``7d``); ``AuxLogits`` on ``Mixed_6h``; the
head average-pools the whole last map, applies dropout (keep 0.8) and a fully
connected ``Logits/Logits``.  Every conv: BatchNorm without gamma, relu, no bias.
"""

from slimtune.nets.inception_table import (AuxHead, Block, Conv, Fork, Head, Pool, Table,
                                           conv_branch)


def _block_a(name):
    return Block(name, (
        conv_branch(("Conv2d_0a_1x1", 96, 1)),
        conv_branch(("Conv2d_0a_1x1", 64, 1), ("Conv2d_0b_3x3", 96, 3)),
        conv_branch(("Conv2d_0a_1x1", 64, 1), ("Conv2d_0b_3x3", 96, 3),
                    ("Conv2d_0c_3x3", 96, 3)),
        (Pool("AvgPool_0a_3x3", "avg", 3), Conv("Conv2d_0b_1x1", 96, 1)),
    ))


def _block_b(name):
    return Block(name, (
        conv_branch(("Conv2d_0a_1x1", 384, 1)),
        conv_branch(("Conv2d_0a_1x1", 192, 1), ("Conv2d_0b_1x7", 224, (1, 7)),
                    ("Conv2d_0c_7x1", 256, (7, 1))),
        conv_branch(("Conv2d_0a_1x1", 192, 1), ("Conv2d_0b_7x1", 192, (7, 1)),
                    ("Conv2d_0c_1x7", 224, (1, 7)), ("Conv2d_0d_7x1", 224, (7, 1)),
                    ("Conv2d_0e_1x7", 256, (1, 7))),
        (Pool("AvgPool_0a_3x3", "avg", 3), Conv("Conv2d_0b_1x1", 128, 1)),
    ))


def _block_c(name):
    return Block(name, (
        conv_branch(("Conv2d_0a_1x1", 256, 1)),
        (Conv("Conv2d_0a_1x1", 384, 1),
         Fork(conv_branch(("Conv2d_0b_1x3", 256, (1, 3)), ("Conv2d_0c_3x1", 256, (3, 1))))),
        (Conv("Conv2d_0a_1x1", 384, 1), Conv("Conv2d_0b_3x1", 448, (3, 1)),
         Conv("Conv2d_0c_1x3", 512, (1, 3)),
         Fork(conv_branch(("Conv2d_0d_1x3", 256, (1, 3)), ("Conv2d_0e_3x1", 256, (3, 1))))),
        (Pool("AvgPool_0a_3x3", "avg", 3), Conv("Conv2d_0b_1x1", 256, 1)),
    ))


_LAYERS = (
    Conv("Conv2d_1a_3x3", 32, 3, 2, "valid"),
    Conv("Conv2d_2a_3x3", 32, 3, 1, "valid"),
    Conv("Conv2d_2b_3x3", 64, 3),
    Block("Mixed_3a", (
        (Pool("MaxPool_0a_3x3", "max", 3, 2, "valid"),),
        conv_branch(("Conv2d_0a_3x3", 96, 3, 2, "valid")),
    )),
    Block("Mixed_4a", (
        conv_branch(("Conv2d_0a_1x1", 64, 1), ("Conv2d_1a_3x3", 96, 3, 1, "valid")),
        conv_branch(("Conv2d_0a_1x1", 64, 1), ("Conv2d_0b_1x7", 64, (1, 7)),
                    ("Conv2d_0c_7x1", 64, (7, 1)), ("Conv2d_1a_3x3", 96, 3, 1, "valid")),
    )),
    Block("Mixed_5a", (
        conv_branch(("Conv2d_1a_3x3", 192, 3, 2, "valid")),
        (Pool("MaxPool_1a_3x3", "max", 3, 2, "valid"),),
    )),
    *[_block_a(f"Mixed_5{c}") for c in "bcde"],
    Block("Mixed_6a", (
        conv_branch(("Conv2d_1a_3x3", 384, 3, 2, "valid")),
        conv_branch(("Conv2d_0a_1x1", 192, 1), ("Conv2d_0b_3x3", 224, 3),
                    ("Conv2d_1a_3x3", 256, 3, 2, "valid")),
        (Pool("MaxPool_1a_3x3", "max", 3, 2, "valid"),),
    )),
    *[_block_b(f"Mixed_6{c}") for c in "bcdefgh"],
    Block("Mixed_7a", (
        conv_branch(("Conv2d_0a_1x1", 192, 1), ("Conv2d_1a_3x3", 192, 3, 2, "valid")),
        conv_branch(("Conv2d_0a_1x1", 256, 1), ("Conv2d_0b_1x7", 256, (1, 7)),
                    ("Conv2d_0c_7x1", 320, (7, 1)), ("Conv2d_1a_3x3", 320, 3, 2, "valid")),
        (Pool("MaxPool_1a_3x3", "max", 3, 2, "valid"),),
    )),
    *[_block_c(f"Mixed_7{c}") for c in "bcd"],
)
# v4 pools the whole last map and ends in a fully connected layer (2-D weights); so does
# its auxiliary head, whose second conv covers the pooled map whatever its name says.
INCEPTION_V4 = Table(
    "inception_v4", _LAYERS,
    Head(pool="AvgPool_1a", window=None, stride=1, shrinks=True, dropout="Dropout_1b",
         logits="Logits", flatten_first=False),
    AuxHead(on="Mixed_6h", pool="AvgPool_1a_5x5", conv="Conv2d_2a", logits="Aux_logits"))
