"""Inception v1, v2, v3 and v4: Keras mirrors and weight tables.

Each network is a table (``_NETS``): a sequence of root-level layers and Mixed blocks,
each block a tuple of branches, each branch a tuple of layers whose scopes are relative
to ``<block>/Branch_<i>``.  :func:`build`, :func:`port` and :func:`end_points` walk the
same table, so the model and its weight table cannot drift apart.  The tables keep slim's scope names as they are, typos included (v1 ``Mixed_5b`` has
``Conv2d_0a_3x3``, v3 ``Mixed_5c`` has ``Conv_1_0c_5x5`` and ``Mixed_6a`` names its 3x3
convs ``Conv2d_1a_1x1``): the names are the checkpoint's.

Every body convolution is conv -> BatchNorm (no gamma in published checkpoints) ->
relu, without bias.  The exceptions have biases and no BatchNorm: the logits layers,
v3's auxiliary ``Conv2d_2b_1x1``, and v2's stem ``Conv2d_1a_7x7``, a
``slim.separable_conv2d`` (depth multiplier 8) that the Inception arg scope does not
reach; ``keras.layers.SeparableConv2D`` runs the same ``tf.nn.separable_conv2d`` with
the same ``depthwise_weights``/``pointwise_weights`` shapes.

Head.  slim average-pools the last map with a VALID window, applies dropout (keep 0.8)
and a 1x1 conv, then squeezes the spatial dims, which must be 1.  v1's window is a
fixed 7x7 with stride 1; v2's 7x7 and v3's 8x8 shrink to the map when it is smaller,
with stride 2.  Where the window is the whole map (and always for an open input size)
the Keras pool is ``GlobalAveragePooling2D``.  slim also builds v2 on an 8x8 map and v3
on a 9x9 map, where the stride-2 window averages only the top-left 7x7 / 8x8 cells; for
those fixed sizes the Keras model uses that same ``AveragePooling2D``.  The 1x1 conv
becomes a Dense layer on the flattened 1x1 map; the Dropout layer is kept (inactive at
inference) so fine-tuning the Keras model behaves like slim.

Input sizes slim itself builds (the graph fails otherwise; :func:`build` raises
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

from typing import NamedTuple

import keras

from slimtune.convert import layers as L
from slimtune.nets import inception_resnet_v2, inception_v4
from slimtune.nets.inception_resnet_v2 import INCEPTION_RESNET_V2
from slimtune.nets.inception_table import Block, Conv, Fork, Pool, Residual, SeparableConv
from slimtune.nets.inception_table import conv_branch as _conv_branch
from slimtune.nets.inception_v4 import INCEPTION_V4

MODELS = ("inception_v1", "inception_v2", "inception_v3", "inception_v4",
          "inception_resnet_v2")
_DROPOUT = 0.2  # slim's dropout_keep_prob 0.8

# -- Inception v1 (GoogLeNet with BatchNorm) -----------------------------------------------
def _v1_mixed(name, b0, b1, b2, b3, b2_scope="Conv2d_0b_3x3"):
    """GoogLeNet's module: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 | max-pool -> 1x1.

    ``b1``/``b2`` are (reduce, out) widths.  The paper's 5x5 branch is a 3x3 in slim.
    """
    return Block(name, (
        _conv_branch(("Conv2d_0a_1x1", b0, 1)),
        _conv_branch(("Conv2d_0a_1x1", b1[0], 1), ("Conv2d_0b_3x3", b1[1], 3)),
        _conv_branch(("Conv2d_0a_1x1", b2[0], 1), (b2_scope, b2[1], 3)),
        (Pool("MaxPool_0a_3x3", "max", 3), Conv("Conv2d_0b_1x1", b3, 1)),
    ))


_V1 = (  # every layer SAME
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
        _conv_branch(("Conv2d_0a_1x1", b0, 1)),
        _conv_branch(("Conv2d_0a_1x1", b1[0], 1), ("Conv2d_0b_3x3", b1[1], 3)),
        _conv_branch(("Conv2d_0a_1x1", b2[0], 1), ("Conv2d_0b_3x3", b2[1], 3),
                     ("Conv2d_0c_3x3", b2[1], 3)),
        (Pool(pool_scope, pool, 3), Conv("Conv2d_0b_1x1", b3, 1)),
    ))


def _v2_reduction(name, b0, b1):
    """Grid reduction, stride 2 SAME: 1x1 -> 3x3/2 | 1x1 -> 3x3 -> 3x3/2 | max-pool/2."""
    return Block(name, (
        _conv_branch(("Conv2d_0a_1x1", b0[0], 1), ("Conv2d_1a_3x3", b0[1], 3, 2)),
        _conv_branch(("Conv2d_0a_1x1", b1[0], 1), ("Conv2d_0b_3x3", b1[1], 3),
                     ("Conv2d_1a_3x3", b1[1], 3, 2)),
        (Pool("MaxPool_1a_3x3", "max", 3, 2),),
    ))


_V2 = (  # every layer SAME; depthwise multiplier min(int(64 / 3), 8) = 8
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
        _conv_branch(("Conv2d_0a_1x1", 64, 1)),
        _conv_branch((branch_1[0], 48, 1), (branch_1[1], 64, 5)),
        _conv_branch(("Conv2d_0a_1x1", 64, 1), ("Conv2d_0b_3x3", 96, 3),
                     ("Conv2d_0c_3x3", 96, 3)),
        (Pool("AvgPool_0a_3x3", "avg", 3), Conv("Conv2d_0b_1x1", pool_width, 1)),
    ))


def _v3_mixed_17(name, c7):
    """17x17 module with factorised 7x7s (``(1, 7)`` is height 1, width 7, as in slim)."""
    return Block(name, (
        _conv_branch(("Conv2d_0a_1x1", 192, 1)),
        _conv_branch(("Conv2d_0a_1x1", c7, 1), ("Conv2d_0b_1x7", c7, (1, 7)),
                     ("Conv2d_0c_7x1", 192, (7, 1))),
        _conv_branch(("Conv2d_0a_1x1", c7, 1), ("Conv2d_0b_7x1", c7, (7, 1)),
                     ("Conv2d_0c_1x7", c7, (1, 7)), ("Conv2d_0d_7x1", c7, (7, 1)),
                     ("Conv2d_0e_1x7", 192, (1, 7))),
        (Pool("AvgPool_0a_3x3", "avg", 3), Conv("Conv2d_0b_1x1", 192, 1)),
    ))


def _v3_mixed_8(name, branch_1_3x1):
    """8x8 module whose 3x3s end in parallel 1x3 and 3x1 convs, concatenated."""
    return Block(name, (
        _conv_branch(("Conv2d_0a_1x1", 320, 1)),
        (Conv("Conv2d_0a_1x1", 384, 1),
         Fork(_conv_branch(("Conv2d_0b_1x3", 384, (1, 3)), (branch_1_3x1, 384, (3, 1))))),
        (Conv("Conv2d_0a_1x1", 448, 1), Conv("Conv2d_0b_3x3", 384, 3),
         Fork(_conv_branch(("Conv2d_0c_1x3", 384, (1, 3)), ("Conv2d_0d_3x1", 384, (3, 1))))),
        (Pool("AvgPool_0a_3x3", "avg", 3), Conv("Conv2d_0b_1x1", 192, 1)),
    ))


_V3 = (  # the stem is VALID unless marked; the Mixed blocks are SAME unless marked
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
        _conv_branch(("Conv2d_1a_1x1", 384, 3, 2, "valid")),
        _conv_branch(("Conv2d_0a_1x1", 64, 1), ("Conv2d_0b_3x3", 96, 3),
                     ("Conv2d_1a_1x1", 96, 3, 2, "valid")),
        (Pool("MaxPool_1a_3x3", "max", 3, 2, "valid"),),
    )),
    _v3_mixed_17("Mixed_6b", 128),
    _v3_mixed_17("Mixed_6c", 160),
    _v3_mixed_17("Mixed_6d", 160),
    _v3_mixed_17("Mixed_6e", 192),
    Block("Mixed_7a", (
        _conv_branch(("Conv2d_0a_1x1", 192, 1), ("Conv2d_1a_3x3", 320, 3, 2, "valid")),
        _conv_branch(("Conv2d_0a_1x1", 192, 1), ("Conv2d_0b_1x7", 192, (1, 7)),
                     ("Conv2d_0c_7x1", 192, (7, 1)), ("Conv2d_1a_3x3", 192, 3, 2, "valid")),
        (Pool("MaxPool_1a_3x3", "max", 3, 2, "valid"),),
    )),
    _v3_mixed_8("Mixed_7b", "Conv2d_0b_3x1"),
    _v3_mixed_8("Mixed_7c", "Conv2d_0c_3x1"),
)

_NETS = {"inception_v1": _V1, "inception_v2": _V2, "inception_v3": _V3,
         "inception_v4": INCEPTION_V4, "inception_resnet_v2": INCEPTION_RESNET_V2}


class _Head(NamedTuple):
    pool: str  # scope; "{k}" is the window slim picks
    window: int  # slim's window (shrunk to the map if ``shrinks``); None: the whole map
    stride: int
    shrinks: bool  # _reduced_kernel_size_for_small_input
    dropout: str
    logits: str


_HEADS = {
    "inception_v1": _Head("Logits/MaxPool_0a_7x7", 7, 1, False, "Logits/Dropout_0b",
                          "Logits/Conv2d_0c_1x1"),  # an average pool despite its name
    "inception_v2": _Head("Logits/AvgPool_1a_{k}x{k}", 7, 2, True, "Logits/Dropout_1b",
                          "Logits/Conv2d_1c_1x1"),
    "inception_v3": _Head("Logits/AvgPool_1a_{k}x{k}", 8, 2, True, "Logits/Dropout_1b",
                          "Logits/Conv2d_1c_1x1"),
    # v4 pools the whole last map and ends in a fully connected layer (2-D weights).
    "inception_v4": _Head("Logits/AvgPool_1a", None, 1, True, "Logits/Dropout_1b",
                          "Logits/Logits"),
    "inception_resnet_v2": _Head("Logits/AvgPool_1a_8x8", None, 1, True, "Logits/Dropout",
                                 "Logits/Logits"),
}

# The auxiliary heads: avg-pool 5x5/3 VALID on the ``on`` output, a 1x1 conv to 128
# (``Conv2d_1b_1x1``), a VALID conv to 768 whose kernel is the whole pooled map, then
# the logits (a 1x1 conv with biases in v3, a fully connected layer in v4 and IRv2).
# Scopes are relative to ``AuxLogits``; ``{k}`` in ``conv`` is the kernel.
_AUX = "AuxLogits"
_AUX_CONV = "AuxLogits/Conv2d_1b_1x1"


class _AuxHead(NamedTuple):
    on: str
    pool: str
    conv: str
    logits: str


def _table_aux_head(heads):
    return _AuxHead(heads.aux_on, heads.aux_pool, heads.aux_conv, heads.aux_logits)


_AUX_HEADS = {
    "inception_v3": _AuxHead("Mixed_6e", "AvgPool_1a_5x5", "Conv2d_2a_{k}x{k}",
                             "Conv2d_2b_1x1"),
    "inception_v4": _table_aux_head(inception_v4.HEADS),
    "inception_resnet_v2": _table_aux_head(inception_resnet_v2.HEADS),
}


def _aux_conv(spec, on_size):
    """Scope and kernel of the head's second conv on an ``on`` map of ``on_size``."""
    kernel = (on_size - 5) // 3 + 1  # the pooled map
    return f"{_AUX}/{_AUX_HEADS[spec.name].conv.format(k=kernel)}", kernel


def _aux_kernel(mixed_6e_size):
    """The aux head's second conv kernel slim picks for a v3 ``Mixed_6e`` map this size:
    ``min(5, pooled map)``, which must be the whole pooled map.

    Raises ValueError where slim's graph fails (pool larger than the map, or an aux map
    that is not 1x1 and so cannot be squeezed).
    """
    if mixed_6e_size < 5:
        raise ValueError(f"inception_v3's auxiliary head needs a Mixed_6e map of at least "
                         f"5x5, got {mixed_6e_size}x{mixed_6e_size}: use >= 107 px inputs")
    pooled = (mixed_6e_size - 5) // 3 + 1
    kernel = min(5, pooled)
    if pooled - kernel + 1 != 1:
        raise ValueError(f"slim's inception_v3 auxiliary head does not build on a "
                         f"{mixed_6e_size}x{mixed_6e_size} Mixed_6e map: use <= 346 px inputs")
    return kernel


def _head_window(spec, size):
    """slim's logits pool window on a ``size`` map (``None``: open, slim's default)."""
    head = _HEADS[spec.name]
    if head.window is None:
        return size
    if size is None or not head.shrinks:
        return head.window
    return min(size, head.window)


# -- build ----------------------------------------------------------------------------------
def _layer(x, op, prefix, bn):
    """One table entry; ``prefix`` is the enclosing scope (``""`` or ``.../Branch_i/``)."""
    scope = prefix + getattr(op, "scope", "")
    if isinstance(op, Conv):
        return L.conv2d(x, scope, op.filters, op.kernel, op.stride, op.padding, bn=bn)
    if isinstance(op, SeparableConv):
        x = keras.layers.SeparableConv2D(
            op.filters, op.kernel, strides=op.stride, padding=op.padding,
            depth_multiplier=op.depth_multiplier, use_bias=True,
            name=L.keras_name(scope))(x)
        return L.activation(x, scope)
    if isinstance(op, Pool):
        pool = L.max_pool if op.kind == "max" else L.avg_pool
        return pool(x, scope, op.size, op.stride, op.padding)
    if isinstance(op, Fork):
        outputs = [_layer(x, conv, prefix, bn) for conv in op.convs]
        return keras.layers.Concatenate(axis=-1, name=L.keras_name(prefix + "concat"))(outputs)
    if isinstance(op, (Block, Residual)):
        outputs = []
        for i, branch in enumerate(op.branches):
            y = x
            for branch_op in branch:
                y = _layer(y, branch_op, f"{op.name}/Branch_{i}/", bn)
            outputs.append(y)
        name = L.keras_name(op.name)
        if isinstance(op, Block):
            return keras.layers.Concatenate(axis=-1, name=name)(outputs)
        return _residual(x, op, keras.layers.Concatenate(axis=-1, name=name + ".concat")(outputs))
    raise TypeError(op)


def _residual(x, op, mixed):
    """Inception-ResNet: ``x + scale * conv1x1(mixed)`` (the conv with biases, no BN),
    then relu unless the block is the last ``Block8``; the block's output layer is
    named after it."""
    name = L.keras_name(op.name)
    up = L.conv2d(mixed, op.name + "/Conv2d_1x1", op.depth, 1, fn=None)
    up = keras.layers.Rescaling(op.scale, name=name + ".scale")(up)
    if not op.activate:
        return keras.layers.Add(name=name)([x, up])
    x = keras.layers.Add(name=name + ".add")([x, up])
    return keras.layers.ReLU(name=name)(x)


def _pool_head(x, spec):
    """slim's logits pool: the whole map when the window covers it, else its window."""
    head = _HEADS[spec.name]
    size = x.shape[1]
    window = _head_window(spec, size)
    name = L.keras_name(head.pool.format(k=window))
    if size is not None:
        out = (size - window) // head.stride + 1 if size >= window else 0
        if out != 1 or x.shape[2] != size:
            raise ValueError(f"slim's {spec.name} does not build for this input size: its "
                             f"{window}x{window} logits pool on the {x.shape[1]}x{x.shape[2]} "
                             "last map does not give 1x1 (see the module docstring)")
    if size is None or size == window:
        return keras.layers.GlobalAveragePooling2D(keepdims=True, name=name)(x)
    return keras.layers.AveragePooling2D(window, head.stride, padding="valid", name=name)(x)


def _aux_head(x, spec, num_classes, bn):
    """The AuxLogits on the ``on`` output; the input size must be fixed."""
    head = _AUX_HEADS[spec.name]
    conv_scope, kernel = _aux_conv(spec, x.shape[1])
    x = L.avg_pool(x, f"{_AUX}/{head.pool}", 5, 3, "valid")
    x = L.conv2d(x, _AUX_CONV, 128, 1, bn=bn)
    x = L.conv2d(x, conv_scope, 768, kernel, padding="valid", bn=bn)
    x = keras.layers.Flatten(name=L.keras_name(_AUX) + L.SEP + "flatten")(x)
    return L.logits_dense(x, f"{_AUX}/{head.logits}", num_classes)


def build(spec, num_classes, bn, include_aux_logits=False, image_size=None):
    if include_aux_logits and not spec.aux_logits:
        raise ValueError(f"{spec.name} has no auxiliary logits")
    if include_aux_logits and image_size is None:
        raise ValueError(f"{spec.name}'s auxiliary head depends on the input size: "
                         "give image_size to include it")
    inputs = keras.Input((image_size, image_size, 3), name="images")
    x, aux = inputs, None
    aux_on = _AUX_HEADS[spec.name].on if spec.aux_logits else None
    for op in _NETS[spec.name]:
        x = _layer(x, op, "", bn)
        if getattr(op, "name", None) != aux_on:
            continue
        if spec.name == "inception_v3" and image_size is not None:
            _aux_kernel(x.shape[1])  # slim builds this head by default: check it can
        if include_aux_logits:
            aux = _aux_head(x, spec, num_classes, bn)
    head = _HEADS[spec.name]
    x = _pool_head(x, spec)
    x = keras.layers.Dropout(_DROPOUT, name=L.keras_name(head.dropout))(x)
    x = keras.layers.Flatten(name=L.keras_name("Logits") + L.SEP + "flatten")(x)
    logits = L.logits_dense(x, head.logits, num_classes)
    return keras.Model(inputs, [logits, aux] if include_aux_logits else logits,
                       name=spec.scope)


# -- port -----------------------------------------------------------------------------------
def _port_layer(porter, op, prefix):
    scope = prefix + getattr(op, "scope", "")
    if isinstance(op, Conv):
        porter.conv(scope, bn=True)
    elif isinstance(op, SeparableConv):
        layer = porter.layer(scope)
        porter.port_weight(layer.depthwise_kernel, porter.key(scope, "depthwise_weights"))
        porter.port_weight(layer.pointwise_kernel, porter.key(scope, "pointwise_weights"))
        porter.port_weight(layer.bias, porter.key(scope, "biases"))
    elif isinstance(op, Fork):
        for conv in op.convs:
            _port_layer(porter, conv, prefix)
    elif isinstance(op, (Block, Residual)):
        for i, branch in enumerate(op.branches):
            for branch_op in branch:
                _port_layer(porter, branch_op, f"{op.name}/Branch_{i}/")
        if isinstance(op, Residual):
            porter.conv(op.name + "/Conv2d_1x1", bn=False)
    # Pool: no weights


def port(porter, spec, bn, drop_background=False, include_aux_logits=False):
    for op in _NETS[spec.name]:
        _port_layer(porter, op, "")
    if include_aux_logits:  # slim builds it between the base and the logits
        head = _AUX_HEADS[spec.name]
        on_size = porter.model.get_layer(L.keras_name(head.on)).output.shape[1]
        porter.conv(_AUX_CONV, bn=True)
        porter.conv(_aux_conv(spec, on_size)[0], bn=True)
        porter.dense_from_conv(f"{_AUX}/{head.logits}", drop_background)
    porter.dense_from_conv(_HEADS[spec.name].logits, drop_background)


def end_points(spec):
    """Every root-level layer and Mixed block (slim keys them without the root scope),
    then v3's ``PreLogits`` (the dropout output, ``[B, 1, 1, 2048]``) and ``Logits``."""
    points = []
    for op in _NETS[spec.name]:
        if isinstance(op, (Block, Residual)):
            points.append((op.name, L.keras_name(op.name)))
        elif isinstance(op, Pool):
            points.append((op.scope, L.keras_name(op.scope)))
        else:
            points.append((op.scope, L.keras_name(op.scope) + L.SEP + "relu"))
    head = _HEADS[spec.name]
    if spec.name == "inception_v3":
        points.append(("PreLogits", L.keras_name(head.dropout)))
    points.append(("Logits", L.keras_name(head.logits)))
    return points
