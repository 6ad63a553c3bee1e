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


class Residual(NamedTuple):
    """Inception-ResNet's block: branches concatenated, a 1x1 conv ``Conv2d_1x1`` with
    biases and no BatchNorm back to the input depth, scaled and added to the input,
    then relu (unless ``activate`` is False: IRv2's last ``Block8``)."""

    name: str
    branches: Tuple[tuple, ...]
    depth: int
    scale: float
    activate: bool = True


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
    if isinstance(op, (Block, Residual)):
        with tf.compat.v1.variable_scope(op.name):
            outputs = []
            for i, branch in enumerate(op.branches):
                with tf.compat.v1.variable_scope(f"Branch_{i}"):
                    y = net
                    for branch_op in branch:
                        y = slim_layer(y, branch_op)
                outputs.append(y)
            mixed = tf.concat(outputs, axis=3)
            if isinstance(op, Block):
                net = mixed
            else:
                up = slim.conv2d(mixed, op.depth, [1, 1], normalizer_fn=None,
                                 activation_fn=None, scope="Conv2d_1x1")
                net = net + up * op.scale
                if op.activate:
                    net = tf.nn.relu(net)
        if end_points is not None:
            end_points[op.name] = net
        return net
    raise TypeError(op)


def _pair(kernel):
    return list(kernel) if isinstance(kernel, tuple) else [kernel, kernel]


class Heads(NamedTuple):
    """Scope names of a table network's two heads (they differ between v4 and IRv2).

    Auxiliary head on ``aux_on``: 5x5/3 VALID average pool, 1x1 conv to 128, a conv to
    768 covering the pooled map, a fully connected layer.  Main head: an average pool
    over the whole last map, dropout and flatten (in ``flatten_first`` order), a fully
    connected layer ``Logits/Logits``.
    """

    aux_on: str
    aux_pool: str
    aux_conv: str
    aux_logits: str
    pool: str
    dropout: str
    flatten_first: bool
    dropout_keep: float = 0.8


def slim_table_net(images, num_classes, is_training, scope, default_scope, table, heads,
                   create_aux_logits=True):
    """The slim graph of a table network with its heads (the auxiliary one only with
    ``create_aux_logits``); returns ``(logits, end_points)``."""
    import tensorflow as tf

    from slimtune import compat

    slim = compat.apply()
    end_points = {}
    with tf.compat.v1.variable_scope(scope, default_scope, [images]), \
            slim.arg_scope([slim.batch_norm, slim.dropout], is_training=is_training):
        net = images
        for op in table:
            net = slim_layer(net, op, end_points)
            end_points.setdefault(getattr(op, "scope", None) or op.name, net)
        if create_aux_logits:
            with tf.compat.v1.variable_scope("AuxLogits"):
                aux = slim.avg_pool2d(end_points[heads.aux_on], [5, 5], stride=3,
                                      padding="VALID", scope=heads.aux_pool)
                aux = slim.conv2d(aux, 128, [1, 1], scope="Conv2d_1b_1x1")
                aux = slim.conv2d(aux, 768, aux.shape[1:3].as_list(), padding="VALID",
                                  scope=heads.aux_conv)
                aux = slim.fully_connected(slim.flatten(aux), num_classes, activation_fn=None,
                                           scope=heads.aux_logits)
            end_points["AuxLogits"] = aux
        with tf.compat.v1.variable_scope("Logits"):
            net = slim.avg_pool2d(net, net.shape[1:3].as_list(), padding="VALID",
                                  scope=heads.pool)
            end_points["global_pool"] = net
            if heads.flatten_first:
                net = slim.flatten(net)
            net = slim.dropout(net, heads.dropout_keep, scope=heads.dropout)
            if not heads.flatten_first:
                net = slim.flatten(net, scope="PreLogitsFlatten")
            end_points["PreLogitsFlatten"] = net
            logits = slim.fully_connected(net, num_classes, activation_fn=None, scope="Logits")
        end_points["Logits"] = logits
    return logits, end_points
