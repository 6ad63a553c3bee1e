"""Inception networks as tables: the layer kinds both the slim graphs and the Keras
mirrors are built from.

A network is a sequence of root-level layers and Mixed blocks; a block is a tuple of
branches, each a tuple of layers whose scopes are relative to ``<block>/Branch_<i>``.
``slimtune.convert.inception`` walks a table to build the Keras model and its weight
table; :func:`slim_layer` walks the same table to build the slim graph of the
networks ``tf_slim.nets`` lacks (Inception v4), with the variable scopes of the
published checkpoints.
"""

from typing import NamedTuple, Tuple, Union

Kernel = Union[int, Tuple[int, int]]


# -- the layer kinds of the tables ---------------------------------------------------------
class Conv(NamedTuple):
    """slim.conv2d with BatchNorm and relu (the Inception arg scope)."""

    scope: str
    filters: int
    kernel: Kernel
    stride: int = 1
    padding: str = "same"


class SeparableConv(NamedTuple):
    """slim.separable_conv2d: depthwise then 1x1, with biases and relu, no BatchNorm."""

    scope: str
    filters: int
    kernel: Kernel
    depth_multiplier: int
    stride: int = 1
    padding: str = "same"


class Pool(NamedTuple):
    scope: str
    kind: str  # "max" or "avg"
    size: int
    stride: int = 1
    padding: str = "same"


class Fork(NamedTuple):
    """Convs applied side by side to one input, concatenated (v3 ``Mixed_7b``/``7c``)."""

    convs: Tuple[Conv, ...]


class Block(NamedTuple):
    """A Mixed block: branch ``i`` lives under ``<name>/Branch_<i>``; outputs concatenated."""

    name: str
    branches: Tuple[tuple, ...]


def conv_branch(*convs):
    return tuple(Conv(*c) for c in convs)


def slim_layer(net, op, end_points=None):
    """Build one table entry in slim under the current variable scope."""
    import tensorflow as tf

    from slimtune import compat

    slim = compat.apply()
    if isinstance(op, Conv):
        return slim.conv2d(net, op.filters, _pair(op.kernel), stride=op.stride,
                           padding=op.padding.upper(), scope=op.scope)
    if isinstance(op, Pool):
        pool = slim.max_pool2d if op.kind == "max" else slim.avg_pool2d
        return pool(net, _pair(op.size), stride=op.stride, padding=op.padding.upper(),
                    scope=op.scope)
    if isinstance(op, Fork):
        return tf.concat([slim_layer(net, conv) for conv in op.convs], axis=3)
    if isinstance(op, Block):
        with tf.compat.v1.variable_scope(op.name):
            outputs = []
            for i, branch in enumerate(op.branches):
                with tf.compat.v1.variable_scope(f"Branch_{i}"):
                    y = net
                    for branch_op in branch:
                        y = slim_layer(y, branch_op)
                outputs.append(y)
            net = tf.concat(outputs, axis=3)
        if end_points is not None:
            end_points[op.name] = net
        return net
    raise TypeError(op)


def _pair(kernel):
    return list(kernel) if isinstance(kernel, tuple) else [kernel, kernel]
