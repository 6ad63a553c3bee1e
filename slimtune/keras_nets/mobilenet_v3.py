"""MobileNet v3 and MobileNet EdgeTPU as Keras 3 models laid out like research/slim's
checkpoints; the layer plans are ``slimtune.nets.mobilenet_v3``'s.

Only Keras' own layers: hard-swish is ``Rescaling(1, offset=3)``, ``ReLU(6)``,
``Multiply`` and ``Rescaling(1/6)``; squeeze-excite is a ``GlobalAveragePooling2D``
kept 4-D, two 1x1 ``Conv2D`` with biases (relu, then the gate ``relu6(x + 3) *
0.16667``) and a broadcasting ``Multiply``.  v3's ``Conv_2`` runs on the pooled 1x1 map,
so the head is pool, ``Conv_2``, flatten, dropout, logits; EdgeTPU pools after
``Conv_1``.  No input size is baked in.
"""

from slimtune.keras_nets import layers as L
from slimtune.nets import mobilenet as v2_nets
from slimtune.nets import mobilenet_v3 as nets


def _squeeze_excite(x, scope, squeeze):
    import keras

    name = L.keras_name(scope)
    pooled = L.global_average_pool(x, name + L.SEP + "pool", keepdims=True)
    s = L.conv2d(pooled, scope + "/Conv", squeeze, 1, fn="relu")
    gate = keras.layers.Conv2D(x.shape[-1], 1, name=L.keras_name(scope + "/Conv_1"))(s)
    gate = L.relu6_shifted(gate, name + L.SEP + "gate")
    gate = keras.layers.Rescaling(nets.GATE_SCALE, name=name + L.SEP + "gate")(gate)
    return keras.layers.Multiply(name=name)([x, gate])


def _block(x, row, bn):
    y = x
    if row.fused:
        if row.inner:
            y = L.conv2d(y, row.scope + "/expand", row.inner, row.kernel, row.stride, bn=bn,
                         fn=row.act)
    else:
        if row.inner:
            y = L.conv2d(y, row.scope + "/expand", row.inner, 1, bn=bn, fn=row.act)
        y = L.depthwise_conv2d(y, row.scope + "/depthwise", row.kernel, row.stride)
        y = L.batch_norm(y, row.scope + "/depthwise/BatchNorm", bn)
        y = L.activation(y, row.scope + "/depthwise", row.act)
    if row.squeeze:
        y = _squeeze_excite(y, row.scope + "/squeeze_excite", row.squeeze)
    y = L.conv2d(y, row.scope + "/project", row.out, 1, bn=bn, fn=None)
    return L.add([y, x], row.scope + L.SEP + "add") if row.residual else y


def mobilenet_v3(plan, num_classes, multiplier=1.0, finegrain=False,
                 batch_norm=v2_nets.MOBILENET_V2_BN, dropout_keep_prob=nets.DROPOUT_KEEP,
                 weight_decay=0.0, image_size=None, name="MobilenetV3"):
    """MobileNet v3 / EdgeTPU of ``plan`` with ``num_classes`` logits (random weights)."""
    bn = batch_norm
    head, pooled = nets.head_depths(plan, multiplier, finegrain)
    inputs = L.images(image_size)
    x = L.conv2d(inputs, "Conv", v2_nets.divisible(plan.stem[0] * multiplier), 3, 2, bn=bn,
                 fn=plan.stem[1])
    for row in nets.plan_rows(plan, multiplier):
        x = _block(x, row, bn)
    x = L.conv2d(x, "Conv_1", head, 1, bn=bn, fn=plan.head[1])
    if pooled:
        x = L.global_average_pool(x, "AvgPool2D", keepdims=True)
        x = L.conv2d(x, "Conv_2", pooled, 1, fn=plan.pooled[1])
        x = L.flatten(x, "Logits.global_pool")
    else:
        x = L.global_average_pool(x, "Logits.global_pool")
    x = L.dropout(x, "Logits/Dropout", dropout_keep_prob)
    logits = L.logits_dense(x, "Logits/Conv2d_1c_1x1", num_classes)
    return L.with_weight_decay(L.model(inputs, logits, name), weight_decay)
