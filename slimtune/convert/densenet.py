"""DenseNet 121/161/169: Keras mirrors and weight tables (pudae's slim layout).

The plan (see ``slimtune.nets.densenet``): a 7x7/2 SAME stem conv without bias, its
BatchNorm (scope ``BatchNorm`` at the root) and relu, a 3x3/2 SAME max-pool; dense
blocks of conv blocks, each ``x1`` (BN, relu, 1x1 conv to 4 x growth) then ``x2`` (BN,
relu, 3x3 conv to growth) concatenated onto its input; transitions (BN, relu, 1x1
conv to half the channels, 2x2/2 VALID average pool); a final BN + relu, the global
mean and a 1x1-conv logits layer (here Dense).  Keras' ``same`` is TF SAME, so stem
and pools match slim at odd sizes too; no input size is baked in.
"""

import keras

from slimtune.convert import layers as L
from slimtune.nets.densenet import COMPRESSION, VARIANTS

MODELS = tuple(VARIANTS)


def _plan(spec):
    """``(kind, scope, filters)`` rows in network order: ``conv_block`` rows for each
    conv block (filters = growth) and ``transition`` rows (filters after compression)."""
    growth, filters, blocks = VARIANTS[spec.name]
    rows = []
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


def build(spec, num_classes, bn, include_aux_logits=False, image_size=None):
    growth, stem_filters, _ = VARIANTS[spec.name]
    inputs = keras.Input((image_size, image_size, 3), name="images")
    x = L.conv2d(inputs, "conv1", stem_filters, 7, 2, fn=None, use_bias=False)
    x = L.activation(L.batch_norm(x, "BatchNorm", bn), "BatchNorm")
    x = L.max_pool(x, "pool1", 3, 2, "same")
    for kind, scope, filters in _plan(spec):
        if kind == "conv_block":
            branch = _preact_conv(x, scope + "/x1", 4 * growth, 1, bn)
            branch = _preact_conv(branch, scope + "/x2", growth, 3, bn)
            x = keras.layers.Concatenate(axis=-1, name=L.keras_name(scope) + L.SEP + "concat")(
                [x, branch])
        else:
            x = _preact_conv(x, scope, filters, 1, bn)
            x = L.avg_pool(x, scope.rsplit("/", 1)[0] + "/pool", 2, 2, "valid")
    x = L.activation(L.batch_norm(x, "final_block/BatchNorm", bn), "final_block")
    x = keras.layers.GlobalAveragePooling2D(name="final_block.global_avg_pool")(x)
    logits = L.logits_dense(x, "logits", num_classes)
    return keras.Model(inputs, logits, name=spec.scope)


def port(porter, spec, bn, drop_background=False, include_aux_logits=False):
    porter.conv("conv1", bias=False)
    porter.batch_norm("BatchNorm")
    for kind, scope, _ in _plan(spec):
        units = (scope + "/x1", scope + "/x2") if kind == "conv_block" else (scope,)
        for unit in units:
            porter.batch_norm(unit + "/BatchNorm")
            porter.conv(unit + "/Conv", bias=False)
    porter.batch_norm("final_block/BatchNorm")
    porter.dense_from_conv("logits", drop_background)


def end_points(spec):
    """slim end points matched exactly by a Keras layer: every pre-activation conv's
    output, every conv block's concatenation, every transition's pooled output."""
    root = spec.scope
    name = L.keras_name
    points = [(f"{root}/conv1", "conv1")]
    for kind, scope, _ in _plan(spec):
        if kind == "conv_block":
            points.append((f"{root}/{scope}/x1", name(scope + "/x1/Conv")))
            points.append((f"{root}/{scope}/x2", name(scope + "/x2/Conv")))
            points.append((f"{root}/{scope}", name(scope) + L.SEP + "concat"))
        else:
            block = scope.rsplit("/", 1)[0]
            points.append((f"{root}/{scope}", name(scope + "/Conv")))
            points.append((f"{root}/{block}", name(block + "/pool")))
    return points
