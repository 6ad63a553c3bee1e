"""Inception v1, v2, v3, v4 and Inception-ResNet v2 as Keras 3 models, built from their
tables (``slimtune.nets.inception_table``; the tables are in ``slimtune.nets.inception``,
``inception_v4`` and ``inception_resnet_v2``).

Every body convolution is conv -> BatchNorm (no gamma in published checkpoints) ->
relu, without bias.  The exceptions have biases and no BatchNorm: the logits layers,
v3's auxiliary ``Conv2d_2b_1x1``, Inception-ResNet's ``Conv2d_1x1`` and v2's stem
``Conv2d_1a_7x7``, a ``slim.separable_conv2d`` (depth multiplier 8) that the Inception
arg scope does not reach; ``keras.layers.SeparableConv2D`` runs the same
``tf.nn.separable_conv2d`` with the same ``depthwise_weights``/``pointwise_weights``
shapes.

Head.  slim average-pools the last map with a VALID window, applies dropout (keep 0.8)
and a 1x1 conv, then squeezes the spatial dims, which must be 1.  v1's window is a
fixed 7x7 with stride 1; v2's 7x7 and v3's 8x8 shrink to the map when it is smaller,
with stride 2.  Where the window is the whole map (and always for an open input size)
the Keras pool is ``GlobalAveragePooling2D``.  slim also builds v2 on an 8x8 map and v3
on a 9x9 map, where the stride-2 window averages only the top-left 7x7 / 8x8 cells; for
those fixed sizes the Keras model uses that same ``AveragePooling2D``.  The 1x1 conv
becomes a Dense layer on the flattened 1x1 map; the Dropout layer is kept (inactive at
inference) so fine-tuning the Keras model behaves like slim.

Input sizes slim itself builds (the graph fails otherwise; :func:`inception` raises
``ValueError`` for a fixed ``image_size`` outside them):

- inception_v1: 193..224 (the last map must be exactly 7x7).
- inception_v2: any size up to 256 (last map at most 8x8); the registry's floor is 16.
- inception_v3: 107..346: the auxiliary head, which slim builds by default, needs a ``Mixed_6e``
  map of 5x5 to 19x19, and the logits pool a last map of at most 9x9.

With ``image_size=None`` the spatial dims are open and the model equals slim at every
size where slim's window covers the whole map: v1 193..224, v2 up to 224, v3 107..322.

Every auxiliary head depends on the input size in slim, so including it requires a
fixed ``image_size``: v3's second conv is ``Conv2d_2a_{k}x{k}``, ``k = min(5, pooled
Mixed_6e map)``; v4's ``Conv2d_2a`` and Inception-ResNet v2's ``Conv2d_2a_5x5`` take
the whole pooled map as their kernel (5x5 at 299 px, whatever their name says).
"""

from slimtune.keras_nets import layers as L
from slimtune.nets.inception import INCEPTION_BN
from slimtune.nets.inception_table import (AUX, AUX_CONV, DROPOUT_KEEP, Block, Conv, Fork,
                                           Pool, Residual, SeparableConv, aux_kernel)


def _layer(x, op, prefix, bn):
    """One table entry; ``prefix`` is the enclosing scope (``""`` or ``.../Branch_i/``)."""
    scope = prefix + getattr(op, "scope", "")
    if isinstance(op, Conv):
        return L.conv2d(x, scope, op.filters, op.kernel, op.stride, op.padding, bn=bn)
    if isinstance(op, SeparableConv):
        return L.separable_conv2d(x, scope, op.filters, op.kernel, op.depth_multiplier,
                                  op.stride, op.padding)
    if isinstance(op, Pool):
        pool = L.max_pool if op.kind == "max" else L.avg_pool
        return pool(x, scope, op.size, op.stride, op.padding)
    if isinstance(op, Fork):
        outputs = [_layer(x, conv, prefix, bn) for conv in op.convs]
        return L.concatenate(outputs, L.keras_name(prefix + "concat"))
    if isinstance(op, (Block, Residual)):
        outputs = []
        for i, branch in enumerate(op.branches):
            y = x
            for branch_op in branch:
                y = _layer(y, branch_op, f"{op.name}/Branch_{i}/", bn)
            outputs.append(y)
        name = L.keras_name(op.name)
        if isinstance(op, Block):
            return L.concatenate(outputs, name)
        return _residual(x, op, L.concatenate(outputs, name + ".concat"))
    raise TypeError(op)


def _residual(x, op, mixed):
    """Inception-ResNet: ``x + scale * conv1x1(mixed)`` (the conv with biases, no BN),
    then relu unless the block is the last ``Block8``; the block's output layer is
    named after it."""
    import keras

    name = L.keras_name(op.name)
    up = L.conv2d(mixed, op.name + "/Conv2d_1x1", op.depth, 1, fn=None)
    up = keras.layers.Rescaling(op.scale, name=name + ".scale")(up)
    if not op.activate:
        return L.add([x, up], name)
    x = L.add([x, up], name + ".add")
    return keras.layers.ReLU(name=name)(x)


def _head_window(head, size):
    """slim's logits pool window on a ``size`` map (``None``: open, slim's default)."""
    if head.window is None:
        return size
    if size is None or not head.shrinks:
        return head.window
    return min(size, head.window)


def _pool_head(x, table):
    """slim's logits pool: the whole map when the window covers it, else its window."""
    import keras

    head = table.head
    size = x.shape[1]
    window = _head_window(head, size)
    name = L.keras_name("Logits/" + head.pool.format(k=window))
    if size is not None:
        out = (size - window) // head.stride + 1 if size >= window else 0
        if out != 1 or x.shape[2] != size:
            raise ValueError(f"slim's {table.name} does not build for this input size: its "
                             f"{window}x{window} logits pool on the {x.shape[1]}x{x.shape[2]} "
                             "last map does not give 1x1 (see the module docstring)")
    if size is None or size == window:
        return L.global_average_pool(x, name, keepdims=True)
    return keras.layers.AveragePooling2D(window, head.stride, padding="valid", name=name)(x)


def aux_conv_scope(table, on_size):
    """Scope (under the root) and kernel of the auxiliary head's second conv."""
    kernel = aux_kernel(table, on_size)
    return f"{AUX}/{table.aux.conv.format(k=kernel)}", kernel


def _aux_head(x, table, num_classes, bn):
    """The AuxLogits on the ``on`` output; the input size must be fixed."""
    conv_scope, kernel = aux_conv_scope(table, x.shape[1])
    x = L.avg_pool(x, f"{AUX}/{table.aux.pool}", 5, 3, "valid")
    x = L.conv2d(x, f"{AUX}/{AUX_CONV}", 128, 1, bn=bn)
    x = L.conv2d(x, conv_scope, 768, kernel, padding="valid", bn=bn)
    x = L.flatten(x, L.keras_name(AUX) + L.SEP + "flatten")
    return L.logits_dense(x, f"{AUX}/{table.aux.logits}", num_classes)


def _check_sizes(table, image_size, include_aux_logits):
    if include_aux_logits and table.aux is None:
        raise ValueError(f"{table.name} has no auxiliary logits")
    if include_aux_logits and image_size is None:
        raise ValueError(f"{table.name}'s auxiliary head depends on the input size: "
                         "give image_size to include it")


def inception(table, num_classes, batch_norm=INCEPTION_BN, dropout_keep_prob=DROPOUT_KEEP,
              include_aux_logits=False, weight_decay=0.0, image_size=None, name=None):
    """The network of ``table`` with ``num_classes`` logits (random weights); with
    ``include_aux_logits`` the outputs are ``[logits, aux_logits]``."""
    _check_sizes(table, image_size, include_aux_logits)
    inputs = L.images(image_size)
    x, aux = inputs, None
    for op in table.layers:
        x = _layer(x, op, "", batch_norm)
        if table.aux is None or getattr(op, "name", None) != table.aux.on:
            continue
        if table.aux.kernel is not None and image_size is not None:
            aux_kernel(table, x.shape[1])  # slim builds this head by default: check it can
        if include_aux_logits:
            aux = _aux_head(x, table, num_classes, batch_norm)
    x = _pool_head(x, table)
    x = L.dropout(x, "Logits/" + table.head.dropout, dropout_keep_prob)
    x = L.flatten(x, L.keras_name("Logits") + L.SEP + "flatten")
    logits = L.logits_dense(x, "Logits/" + table.head.logits, num_classes)
    model = L.model(inputs, [logits, aux] if include_aux_logits else logits,
                    name or table.name)
    return L.with_weight_decay(model, weight_decay)
