"""DenseNet 121/161/169: the port table and end points (``slimtune.keras_nets.densenet``).

Every conv is pre-activation and has no bias; the stem's BatchNorm sits at the root
(``BatchNorm``), each block conv's under ``<scope>/BatchNorm``.
"""

from slimtune.keras_nets import layers as L
from slimtune.keras_nets.densenet import plan


def port(porter, growth, stem_filters, blocks, drop_background=False):
    porter.conv("conv1", bias=False)
    porter.batch_norm("BatchNorm")
    for kind, scope, _ in plan(growth, stem_filters, blocks):
        units = (scope + "/x1", scope + "/x2") if kind == "conv_block" else (scope,)
        for unit in units:
            porter.batch_norm(unit + "/BatchNorm")
            porter.conv(unit + "/Conv", bias=False)
    porter.batch_norm("final_block/BatchNorm")
    porter.dense_from_conv("logits", drop_background)


def end_points(growth, stem_filters, blocks, root):
    """slim end points matched exactly by a Keras layer: every pre-activation conv's
    output, every conv block's concatenation, every transition's pooled output."""
    name = L.keras_name
    points = [(f"{root}/conv1", "conv1")]
    for kind, scope, _ in plan(growth, stem_filters, blocks):
        if kind == "conv_block":
            points.append((f"{root}/{scope}/x1", name(scope + "/x1/Conv")))
            points.append((f"{root}/{scope}/x2", name(scope + "/x2/Conv")))
            points.append((f"{root}/{scope}", name(scope) + L.SEP + "concat"))
        else:
            block = scope.rsplit("/", 1)[0]
            points.append((f"{root}/{scope}", name(scope + "/Conv")))
            points.append((f"{root}/{block}", name(block + "/pool")))
    return points
