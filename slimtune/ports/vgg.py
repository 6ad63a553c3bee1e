"""VGG A/16/19, AlexNet v2 and OverFeat: the port tables and end points
(``slimtune.keras_nets.vgg``).

Every conv, fc6 and fc7 included, has weights and biases (no BatchNorm); fc8 becomes
the Dense logits.
"""

from slimtune.keras_nets import layers as L
from slimtune.keras_nets.vgg import ALEXNET, OVERFEAT, vgg_convs


def port_vgg(porter, depth, drop_background=False):
    for convs in vgg_convs(depth):
        for scope, _ in convs:
            porter.conv(scope)
    _port_head(porter, drop_background)


def port_alexnet(porter, drop_background=False, table=ALEXNET):
    for scope, *_ in table:
        porter.conv(scope)
    _port_head(porter, drop_background)


def port_overfeat(porter, drop_background=False):
    port_alexnet(porter, drop_background, table=OVERFEAT)


def _port_head(porter, drop_background):
    porter.conv("fc6")
    porter.conv("fc7")
    porter.dense_from_conv("fc8", drop_background)


def vgg_end_points(depth, root):
    points = []
    for block, convs in enumerate(vgg_convs(depth), 1):
        for scope, _ in convs:
            points.append((f"{root}/{scope}", L.keras_name(scope) + ".relu"))
        points.append((f"{root}/pool{block}", f"pool{block}"))
    return points + _head_end_points(root)


def alexnet_end_points(root, table=ALEXNET):
    points = []
    for scope, *_, pool in table:
        points.append((f"{root}/{scope}", L.keras_name(scope) + ".relu"))
        if pool:
            points.append((f"{root}/{pool}", pool))
    return points + _head_end_points(root)


def overfeat_end_points(root):
    return alexnet_end_points(root, table=OVERFEAT)


def _head_end_points(root):
    return [(f"{root}/fc6", "fc6.relu"), (f"{root}/fc7", "fc7.relu"), (f"{root}/fc8", "fc8")]
