"""Inception networks as tables: the one description their slim graphs, Keras mirrors and
port tables are all built from.

A :class:`Table` is a sequence of root-level layers and Mixed blocks, a logits
:class:`Head` and an optional :class:`AuxHead`; a block is a tuple of branches, each a
tuple of layers whose scopes are relative to ``<block>/Branch_<i>``.  The tables keep
slim's scope names as they are, typos included: the names are the checkpoint's.

``slimtune.keras_nets.inception`` walks a table to build the Keras model,
``slimtune.ports.inception`` to list its weights; :func:`network` walks it to build the
slim graph of the networks ``tf_slim.nets`` lacks (Inception v4, Inception-ResNet v2),
with the variable scopes of the published checkpoints.
"""

from typing import NamedTuple, Optional, Tuple, Union

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


class Head(NamedTuple):
    """The logits head, scopes relative to ``Logits``: an average pool of the last map,
    dropout, the logits layer (a 1x1 conv in v1-v3, fully connected in v4 and IRv2).

    slim's pool window is ``window``, shrunk to a smaller map when ``shrinks``
    (``_reduced_kernel_size_for_small_input``); ``None`` pools the whole map.  ``{k}`` in
    ``pool`` is the window slim picks.  ``flatten_first``: the table networks flatten
    before dropout (Inception-ResNet v2) or after it (v4).  ``prelogits``: the end point
    key slim gives the dropout output, where it collects one (v3's ``PreLogits``).
    """

    pool: str
    window: Optional[int]
    stride: int
    shrinks: bool
    dropout: str
    logits: str
    flatten_first: bool = False
    prelogits: Optional[str] = None


class AuxHead(NamedTuple):
    """The auxiliary head on the output of ``on``, scopes relative to ``AuxLogits``:
    avg-pool 5x5/3 VALID (``pool``), a 1x1 conv to 128 (``Conv2d_1b_1x1``), a VALID conv to
    768 (``conv``; ``{k}`` is its kernel), the logits (``logits``: a 1x1 conv with biases
    in v3, fully connected in v4 and IRv2).

    ``kernel``: v3's second conv is ``min(kernel, pooled map)`` and slim's graph fails
    unless that covers the pooled map; ``None`` (v4, IRv2): the whole pooled map.
    """

    on: str
    pool: str
    conv: str
    logits: str
    kernel: Optional[int] = None


class Table(NamedTuple):
    """One Inception network: its layers, its logits head and its auxiliary head."""

    name: str
    layers: tuple
    head: Head
    aux: Optional[AuxHead] = None


AUX = "AuxLogits"  # the auxiliary head's scope under the root
AUX_CONV = "Conv2d_1b_1x1"  # its first conv, the same in every network
DROPOUT_KEEP = 0.8  # research/slim's dropout_keep_prob for every Inception network


def aux_kernel(table, on_size):
    """Kernel of the auxiliary head's second conv on an ``on`` map of ``on_size``.

    Raises ValueError where slim's graph fails (pool larger than the map, or an aux map
    that is not 1x1 and so cannot be squeezed).
    """
    aux = table.aux
    if on_size < 5:
        raise ValueError(f"{table.name}'s auxiliary head needs a {aux.on} map of at least "
                         f"5x5, got {on_size}x{on_size}: use >= 107 px inputs")
    pooled = (on_size - 5) // 3 + 1
    if aux.kernel is None:
        return pooled
    kernel = min(aux.kernel, pooled)
    if pooled - kernel + 1 != 1:
        raise ValueError(f"slim's {table.name} auxiliary head does not build on a "
                         f"{on_size}x{on_size} {aux.on} map: use <= 346 px inputs")
    return kernel


def network(table):
    """The slim network of a table (the registry's ``net_fn`` for v4 and IRv2)."""

    def build(images, num_classes, is_training, scope, create_aux_logits=True,
              dropout_keep_prob=DROPOUT_KEEP):
        return _slim_table_net(images, num_classes, is_training, scope, table,
                               create_aux_logits, dropout_keep_prob)

    return build


def _slim_table_net(images, num_classes, is_training, scope, table, create_aux_logits,
                    dropout_keep_prob):
    """The slim graph of a table network with its heads (the auxiliary one only with
    ``create_aux_logits``); returns ``(logits, end_points)``."""
    import tensorflow as tf

    from slimtune import compat

    slim = compat.apply()
    end_points = {}
    with tf.compat.v1.variable_scope(scope, values=[images]), \
            slim.arg_scope([slim.batch_norm, slim.dropout], is_training=is_training):
        net = images
        for op in table.layers:
            net = slim_layer(net, op, end_points)
            end_points.setdefault(getattr(op, "scope", None) or op.name, net)
        if create_aux_logits:
            end_points[AUX] = _slim_aux_head(end_points[table.aux.on], table.aux, num_classes)
        with tf.compat.v1.variable_scope("Logits"):
            logits = _slim_head(net, table.head, num_classes, end_points, dropout_keep_prob)
        end_points["Logits"] = logits
    return logits, end_points


def _slim_aux_head(net, aux, num_classes):
    import tensorflow as tf

    from slimtune import compat

    slim = compat.apply()
    with tf.compat.v1.variable_scope(AUX):
        net = slim.avg_pool2d(net, [5, 5], stride=3, padding="VALID", scope=aux.pool)
        net = slim.conv2d(net, 128, [1, 1], scope=AUX_CONV)
        kernel = net.shape[1:3].as_list()
        net = slim.conv2d(net, 768, kernel, padding="VALID", scope=aux.conv.format(k=kernel[0]))
        return slim.fully_connected(slim.flatten(net), num_classes, activation_fn=None,
                                    scope=aux.logits)


def _slim_head(net, head, num_classes, end_points, dropout_keep_prob):
    from slimtune import compat

    slim = compat.apply()
    net = slim.avg_pool2d(net, net.shape[1:3].as_list(), padding="VALID", scope=head.pool)
    end_points["global_pool"] = net
    if head.flatten_first:
        net = slim.flatten(net)
    net = slim.dropout(net, dropout_keep_prob, scope=head.dropout)
    if not head.flatten_first:
        net = slim.flatten(net, scope="PreLogitsFlatten")
    end_points["PreLogitsFlatten"] = net
    return slim.fully_connected(net, num_classes, activation_fn=None, scope=head.logits)
