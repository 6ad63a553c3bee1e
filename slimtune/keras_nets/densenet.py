"""DenseNet 121/161/169 as Keras 3 models laid out like pudae's slim checkpoints.

The plan (see ``slimtune.nets.densenet``): a 7x7/2 SAME stem conv without bias, its
BatchNorm (scope ``BatchNorm`` at the root) and relu, a 3x3/2 SAME max-pool; dense
blocks of conv blocks, each ``x1`` (BN, relu, 1x1 conv to 4 x growth) then ``x2`` (BN,
relu, 3x3 conv to growth) concatenated onto its input; transitions (BN, relu, 1x1
conv to half the channels, 2x2/2 VALID average pool); a final BN + relu, the global
mean and a 1x1-conv logits layer (here Dense).  Keras' ``same`` is TF SAME, so stem
and pools match slim at odd sizes too; no input size is baked in.
"""

from slimtune.keras_nets import layers as L
from slimtune.nets.densenet import COMPRESSION, DENSENET_BN


def plan(growth, stem_filters, blocks):
    """``(kind, scope, filters)`` rows in network order: ``conv_block`` rows for each
    conv block (filters = growth) and ``transition`` rows (filters after compression)."""
    filters, rows = stem_filters, []
    for b, count in enumerate(blocks, 1):
        for i in range(1, count + 1):
            rows.append(("conv_block", f"dense_block{b}/conv_block{i}", growth))
            filters += growth
        if b < len(blocks):
            filters = int(filters * COMPRESSION)
            rows.append(("transition", f"transition_block{b}/blk", filters))
    return rows


def _preact_conv(x, scope, filters, kernel, bn):
    """BatchNorm (``scope/BatchNorm``), relu, conv without bias (``scope/Conv``)."""
    x = L.batch_norm(x, scope + "/BatchNorm", bn)
    x = L.activation(x, scope)
    return L.conv2d(x, scope + "/Conv", filters, kernel, fn=None, use_bias=False)


def densenet(growth, stem_filters, blocks, num_classes, batch_norm=DENSENET_BN,
             weight_decay=0.0, image_size=None, name="densenet"):
    """A DenseNet with this growth rate, stem width and conv blocks per dense block
    (DenseNet-121: 32, 64, (6, 12, 24, 16)) and ``num_classes`` logits (random weights)."""
    bn = batch_norm
    inputs = L.images(image_size)
    x = L.conv2d(inputs, "conv1", stem_filters, 7, 2, fn=None, use_bias=False)
    x = L.activation(L.batch_norm(x, "BatchNorm", bn), "BatchNorm")
    x = L.max_pool(x, "pool1", 3, 2, "same")
    for kind, scope, filters in plan(growth, stem_filters, blocks):
        if kind == "conv_block":
            branch = _preact_conv(x, scope + "/x1", 4 * growth, 1, bn)
            branch = _preact_conv(branch, scope + "/x2", growth, 3, bn)
            x = L.concatenate([x, branch], L.keras_name(scope) + L.SEP + "concat")
        else:
            x = _preact_conv(x, scope, filters, 1, bn)
            x = L.avg_pool(x, scope.rsplit("/", 1)[0] + "/pool", 2, 2, "valid")
    x = L.activation(L.batch_norm(x, "final_block/BatchNorm", bn), "final_block")
    x = L.global_average_pool(x, "final_block.global_avg_pool")
    logits = L.logits_dense(x, "logits", num_classes)
    return L.with_weight_decay(L.model(inputs, logits, name), weight_decay)
