"""MobileNet v3 and EdgeTPU: the port tables and end points
(``slimtune.keras_nets.mobilenet_v3``).

BatchNorm convs have no bias; the squeeze-excite convs and v3's ``Conv_2`` have biases
and no BatchNorm; the logits are the 1x1 conv as a Dense layer.
"""

from slimtune.nets import mobilenet_v3 as nets
from slimtune.ports.mobilenet import port_depthwise


def port(porter, plan, multiplier=1.0, drop_background=False):
    porter.conv("Conv", bn=True)
    for row in nets.plan_rows(plan, multiplier):
        if row.inner:
            porter.conv(row.scope + "/expand", bn=True)
        if not row.fused:
            port_depthwise(porter, row.scope + "/depthwise")
        if row.squeeze:
            porter.conv(row.scope + "/squeeze_excite/Conv")
            porter.conv(row.scope + "/squeeze_excite/Conv_1")
        porter.conv(row.scope + "/project", bn=True)
    porter.conv("Conv_1", bn=True)
    if plan.pooled:
        porter.conv("Conv_2")
    porter.dense_from_conv("Logits/Conv2d_1c_1x1", drop_background)


def _activated(scope, act):
    return scope + "." + act


def end_points(plan, multiplier=1.0):
    """The stem, every block's output, ``Conv_1`` and (v3) ``Conv_2``, the last as
    [B,1,1,C] in both."""
    points = [("Conv", _activated("Conv", plan.stem[1]))]
    for row in nets.plan_rows(plan, multiplier):
        points.append((row.scope, row.scope + (".add" if row.residual else ".project.BatchNorm")))
    points.append(("Conv_1", _activated("Conv_1", plan.head[1])))
    if plan.pooled:
        points.append(("Conv_2", _activated("Conv_2", plan.pooled[1])))
    return points
