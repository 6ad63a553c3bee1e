"""ResNet v1 and v2: the port table and the end points (``slimtune.keras_nets.resnet``).

v1 convs have BatchNorm and no bias; v2's stem, projection shortcut and ``conv3`` have
biases and no BatchNorm, and each unit starts with a ``preact`` BatchNorm.  A
subsampling shortcut (a 1x1 max-pool) has no weights.
"""

from slimtune.keras_nets import layers as L
from slimtune.keras_nets.resnet import units


def port(porter, version, depth, drop_background=False):
    porter.conv("conv1", bn=version == 1)  # v2: weights + biases, no BN
    for _, scope, depth_in, unit_depth, _, _ in units(version, depth):
        if version == 2:
            porter.batch_norm(scope + "/preact")
        if unit_depth != depth_in:  # a projection shortcut
            porter.conv(scope + "/shortcut", bn=version == 1)
        porter.conv(scope + "/conv1", bn=True)
        porter.conv(scope + "/conv2", bn=True)
        porter.conv(scope + "/conv3", bn=version == 1)
    if version == 2:
        porter.batch_norm("postnorm")
    porter.dense_from_conv("logits", drop_background)


def end_points(version, depth, root):
    """slim's end points: the stem conv, every conv (after its BN/activation, as slim
    collects it), every unit output and every block output (the last unit's tensor).

    slim collects no end point for ``pool1`` or ``postnorm``; its ``logits`` end point is
    ``[B, 1, 1, C]`` where the Keras Dense layer gives ``[B, C]``, so logits are compared
    separately.
    """
    name = L.keras_name
    # v1 convs end in BN (+ relu); v2's stem, shortcut and conv3 end in their bias add.
    bn_out = {1: ".BatchNorm", 2: ""}[version]
    stem = "conv1.relu" if version == 1 else "conv1"
    points = [(f"{root}/conv1", stem)]
    rows = units(version, depth)
    for i, (block, scope, depth_in, unit_depth, _, _) in enumerate(rows):
        if unit_depth != depth_in:
            points.append((f"{root}/{scope}/shortcut", name(scope + "/shortcut") + bn_out))
        points.append((f"{root}/{scope}/conv1", name(scope + "/conv1") + ".relu"))
        points.append((f"{root}/{scope}/conv2", name(scope + "/conv2") + ".relu"))
        points.append((f"{root}/{scope}/conv3", name(scope + "/conv3") + bn_out))
        out = name(scope) + (".relu" if version == 1 else ".add")
        points.append((f"{root}/{scope}", out))
        if i + 1 == len(rows) or rows[i + 1][0] != block:
            points.append((f"{root}/{block}", out))
    return points
