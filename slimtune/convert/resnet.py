"""ResNet v1 and v2 (50/101/152/200): Keras mirrors and weight tables.

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

import keras

from slimtune.convert import layers as L

MODELS = tuple(f"resnet_v{v}_{d}" for v in (1, 2) for d in (50, 101, 152, 200))

# Units per block, by depth (the same for v1 and v2).
_UNITS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3), 200: (3, 24, 36, 3)}
_BASE_DEPTHS = (64, 128, 256, 512)  # bottleneck width; a unit outputs 4x this
_BLOCK_STRIDES = (2, 2, 2, 1)  # applied by the last unit of each block
_STEM_DEPTH = 64


def _version_depth(spec):
    version, depth = spec.name[len("resnet_v"):].split("_")
    return int(version), int(depth)


def _units(spec):
    """``(block scope, unit scope, depth_in, depth, depth_bottleneck, stride)`` per unit,
    in network order.  ``unit scope`` is the bottleneck's scope, e.g.
    ``block3/unit_5/bottleneck_v1``."""
    version, depth = _version_depth(spec)
    rows = []
    depth_in = _STEM_DEPTH
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
    out = keras.layers.Add(name=L.keras_name(scope) + L.SEP + "add")([shortcut, residual])
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
    return keras.layers.Add(name=L.keras_name(scope) + L.SEP + "add")([shortcut, residual])


def build(spec, num_classes, bn, include_aux_logits=False, image_size=None):
    version, _ = _version_depth(spec)
    inputs = keras.Input((image_size, image_size, 3), name="images")
    if version == 1:
        x = L.conv2d_same(inputs, "conv1", _STEM_DEPTH, 7, 2, bn=bn)
    else:
        x = L.conv2d_same(inputs, "conv1", _STEM_DEPTH, 7, 2, bn=None, fn=None)
    x = L.max_pool(x, "pool1", 3, 2, "same")
    unit = _unit_v1 if version == 1 else _unit_v2
    for _, scope, depth_in, depth, depth_bottleneck, stride in _units(spec):
        x = unit(x, scope, depth_in, depth, depth_bottleneck, stride, bn)
    if version == 2:
        x = L.batch_norm(x, "postnorm", bn)
        x = L.activation(x, "postnorm")
    # slim's reduce_mean over H, W (keepdims), then a 1x1 conv and a spatial squeeze.
    x = keras.layers.GlobalAveragePooling2D(name="pool5")(x)
    logits = L.logits_dense(x, "logits", num_classes)
    return keras.Model(inputs, logits, name=spec.scope)


def port(porter, spec, bn, drop_background=False, include_aux_logits=False):
    version, _ = _version_depth(spec)
    porter.conv("conv1", bn=version == 1)  # v2: weights + biases, no BN
    for _, scope, depth_in, depth, _, _ in _units(spec):
        if version == 2:
            porter.batch_norm(scope + "/preact")
        if depth != depth_in:  # a projection shortcut (a subsampling one has no weights)
            porter.conv(scope + "/shortcut", bn=version == 1)
        porter.conv(scope + "/conv1", bn=True)
        porter.conv(scope + "/conv2", bn=True)
        porter.conv(scope + "/conv3", bn=version == 1)
    if version == 2:
        porter.batch_norm("postnorm")
    porter.dense_from_conv("logits", drop_background)


def end_points(spec):
    """slim's end points: the stem conv, every conv (after its BN/activation, as slim
    collects it), every unit output and every block output (the last unit's tensor).

    slim collects no end point for ``pool1`` or ``postnorm``; its ``logits`` end point is
    ``[B, 1, 1, C]`` where the Keras Dense layer gives ``[B, C]``, so logits are compared
    separately.
    """
    version, _ = _version_depth(spec)
    root = spec.scope
    name = L.keras_name
    # v1 convs end in BN (+ relu); v2's stem, shortcut and conv3 end in their bias add.
    bn_out = {1: ".BatchNorm", 2: ""}[version]
    stem = "conv1.relu" if version == 1 else "conv1"
    points = [(f"{root}/conv1", stem)]
    rows = _units(spec)
    for i, (block, scope, depth_in, depth, _, _) in enumerate(rows):
        if depth != depth_in:
            points.append((f"{root}/{scope}/shortcut", name(scope + "/shortcut") + bn_out))
        points.append((f"{root}/{scope}/conv1", name(scope + "/conv1") + ".relu"))
        points.append((f"{root}/{scope}/conv2", name(scope + "/conv2") + ".relu"))
        points.append((f"{root}/{scope}/conv3", name(scope + "/conv3") + bn_out))
        out = name(scope) + (".relu" if version == 1 else ".add")
        points.append((f"{root}/{scope}", out))
        if i + 1 == len(rows) or rows[i + 1][0] != block:
            points.append((f"{root}/{block}", out))
    return points
