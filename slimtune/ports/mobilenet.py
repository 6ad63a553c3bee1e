"""MobileNet v1 and v2: the port tables and end points (``slimtune.keras_nets.mobilenet``).

Every conv has BatchNorm and no bias; a depthwise conv's kernel is slim's
``depthwise_weights`` as stored.  slim keys the end points without the root scope.
"""

from slimtune.nets import mobilenet as nets


def port_depthwise(porter, scope):
    porter.port_weight(porter.layer(scope).kernel, porter.key(scope, "depthwise_weights"))
    porter.batch_norm(scope + "/BatchNorm")


def port_v1(porter, drop_background=False):
    porter.conv("Conv2d_0", bn=True)
    for i in range(1, len(nets.SEPARABLE) + 1):
        port_depthwise(porter, f"Conv2d_{i}_depthwise")
        porter.conv(f"Conv2d_{i}_pointwise", bn=True)
    porter.dense_from_conv("Logits/Conv2d_1c_1x1", drop_background)


def port_v2(porter, multiplier, drop_background=False):
    porter.conv("Conv", bn=True)
    for block, inner, _, _, _ in nets.v2_plan(multiplier):
        if inner:
            porter.conv(block + "/expand", bn=True)
        port_depthwise(porter, block + "/depthwise")
        porter.conv(block + "/project", bn=True)
    porter.conv("Conv_1", bn=True)
    porter.dense_from_conv("Logits/Conv2d_1c_1x1", drop_background)


def end_points_v1():
    """Every conv's output after BatchNorm and relu6: slim's end points of the same names
    (slim's AvgPool_1a is [B,1,1,C], the Keras global average [B,C]: not compared)."""
    points = [("Conv2d_0", "Conv2d_0.relu6")]
    for i in range(1, len(nets.SEPARABLE) + 1):
        for kind in ("depthwise", "pointwise"):
            point = f"Conv2d_{i}_{kind}"
            points.append((point, point + ".relu6"))
    return points


def end_points_v2(multiplier):
    """The stem, every block's output and ``Conv_1``."""
    points = [("Conv", "Conv.relu6")]
    for block, _, _, _, residual in nets.v2_plan(multiplier):
        points.append((block, block + (".add" if residual else ".project.BatchNorm")))
    return points + [("Conv_1", "Conv_1.relu6")]
