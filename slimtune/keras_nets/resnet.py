"""ResNet v1 and v2 (50/101/152/200) as Keras 3 models laid out like slim's.

Both versions share one plan: a 7x7/2 stem (``conv2d_same``, symmetric padding), a 3x3/2
SAME max-pool, four blocks of bottleneck units, a global average pool and a 1x1-conv
logits layer (here a Dense layer on the pooled vector).  slim subsamples at the *end* of
a block: the stride sits on the 3x3 ``conv2`` of the last unit of blocks 1-3, and that
unit's shortcut (its input and output depths are equal) is a 1x1 stride-2 max-pool, i.e.
plain subsampling.  A unit whose depth changes (the first of every block) has a 1x1
projection shortcut instead.

v1 (post-activation): every conv has BatchNorm and no bias; the unit output is
``relu(shortcut + residual)``.

v2 (pre-activation): the stem conv has a bias and neither BN nor activation; each unit
starts with ``preact`` = BN + relu of its input; a projection shortcut reads ``preact``
(a bias, no BN), a subsampling shortcut reads the raw input; ``conv3`` has a bias and
no BN/activation; the unit output is ``shortcut + residual`` with no activation.  A final
``postnorm`` BN + relu precedes the global pool.

No input size is baked in: every layer works on open spatial dimensions.
"""

from slimtune.keras_nets import layers as L
from slimtune.nets.resnet import RESNET_BN

# Units per block, by depth (the same for v1 and v2).
_UNITS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3), 200: (3, 24, 36, 3)}
_BASE_DEPTHS = (64, 128, 256, 512)  # bottleneck width; a unit outputs 4x this
_BLOCK_STRIDES = (2, 2, 2, 1)  # applied by the last unit of each block
STEM_DEPTH = 64


def units(version, depth):
    """``(block scope, unit scope, depth_in, depth, depth_bottleneck, stride)`` per unit,
    in network order.  ``unit scope`` is the bottleneck's scope, e.g.
    ``block3/unit_5/bottleneck_v1``."""
    rows = []
    depth_in = STEM_DEPTH
    for b, (count, base, block_stride) in enumerate(
            zip(_UNITS[depth], _BASE_DEPTHS, _BLOCK_STRIDES), 1):
        for u in range(1, count + 1):
            stride = block_stride if u == count else 1
            rows.append((f"block{b}", f"block{b}/unit_{u}/bottleneck_v{version}",
                         depth_in, base * 4, base, stride))
            depth_in = base * 4
    return rows


def _subsample(x, scope, stride):
    """resnet_utils.subsample: a 1x1 max-pool with the unit's stride (identity at 1)."""
    if stride == 1:
        return x
    return L.max_pool(x, scope, 1, stride, "same")


def _unit_v1(x, scope, depth_in, depth, depth_bottleneck, stride, bn):
    if depth == depth_in:
        shortcut = _subsample(x, scope + "/shortcut", stride)
    else:
        shortcut = L.conv2d(x, scope + "/shortcut", depth, 1, stride, bn=bn, fn=None)
    residual = L.conv2d(x, scope + "/conv1", depth_bottleneck, 1, bn=bn)
    residual = L.conv2d_same(residual, scope + "/conv2", depth_bottleneck, 3, stride, bn=bn)
    residual = L.conv2d(residual, scope + "/conv3", depth, 1, bn=bn, fn=None)
    out = L.add([shortcut, residual], L.keras_name(scope) + L.SEP + "add")
    return L.activation(out, scope)


def _unit_v2(x, scope, depth_in, depth, depth_bottleneck, stride, bn):
    preact = L.batch_norm(x, scope + "/preact", bn)
    preact = L.activation(preact, scope + "/preact")
    if depth == depth_in:
        shortcut = _subsample(x, scope + "/shortcut", stride)  # the raw input, not preact
    else:
        shortcut = L.conv2d(preact, scope + "/shortcut", depth, 1, stride, bn=None, fn=None)
    residual = L.conv2d(preact, scope + "/conv1", depth_bottleneck, 1, bn=bn)
    residual = L.conv2d_same(residual, scope + "/conv2", depth_bottleneck, 3, stride, bn=bn)
    residual = L.conv2d(residual, scope + "/conv3", depth, 1, bn=None, fn=None)
    return L.add([shortcut, residual], L.keras_name(scope) + L.SEP + "add")


def resnet(version, depth, num_classes, batch_norm=RESNET_BN, weight_decay=0.0,
           image_size=None, name=None):
    """``resnet_v<version>_<depth>`` with ``num_classes`` logits (random weights).

    ``batch_norm``: decay (Keras momentum), epsilon and scale of every BatchNorm;
    ``weight_decay``: slim's, on every conv and the logits kernel; ``image_size``: fixed
    input side, or None for open spatial dimensions.
    """
    bn = batch_norm
    inputs = L.images(image_size)
    if version == 1:
        x = L.conv2d_same(inputs, "conv1", STEM_DEPTH, 7, 2, bn=bn)
    else:
        x = L.conv2d_same(inputs, "conv1", STEM_DEPTH, 7, 2, bn=None, fn=None)
    x = L.max_pool(x, "pool1", 3, 2, "same")
    unit = _unit_v1 if version == 1 else _unit_v2
    for _, scope, depth_in, unit_depth, depth_bottleneck, stride in units(version, depth):
        x = unit(x, scope, depth_in, unit_depth, depth_bottleneck, stride, bn)
    if version == 2:
        x = L.batch_norm(x, "postnorm", bn)
        x = L.activation(x, "postnorm")
    # slim's reduce_mean over H, W (keepdims), then a 1x1 conv and a spatial squeeze.
    x = L.global_average_pool(x, "pool5")
    logits = L.logits_dense(x, "logits", num_classes)
    model = L.model(inputs, logits, name or f"resnet_v{version}_{depth}")
    return L.with_weight_decay(model, weight_decay)
