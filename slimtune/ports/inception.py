"""The Inception networks' port tables and end points, walked from their tables
(``slimtune.nets.inception_table``) like the Keras mirrors (``slimtune.keras_nets.inception``),
so the model and its weight table cannot drift apart.
"""

from slimtune.keras_nets import layers as L
from slimtune.keras_nets.inception import aux_conv_scope
from slimtune.nets.inception_table import (AUX, AUX_CONV, Block, Conv, Fork, Pool, Residual,
                                           SeparableConv)


def _port_layer(porter, op, prefix):
    scope = prefix + getattr(op, "scope", "")
    if isinstance(op, Conv):
        porter.conv(scope, bn=True)
    elif isinstance(op, SeparableConv):
        layer = porter.layer(scope)
        porter.port_weight(layer.depthwise_kernel, porter.key(scope, "depthwise_weights"))
        porter.port_weight(layer.pointwise_kernel, porter.key(scope, "pointwise_weights"))
        porter.port_weight(layer.bias, porter.key(scope, "biases"))
    elif isinstance(op, Fork):
        for conv in op.convs:
            _port_layer(porter, conv, prefix)
    elif isinstance(op, (Block, Residual)):
        for i, branch in enumerate(op.branches):
            for branch_op in branch:
                _port_layer(porter, branch_op, f"{op.name}/Branch_{i}/")
        if isinstance(op, Residual):
            porter.conv(op.name + "/Conv2d_1x1", bn=False)
    # Pool: no weights


def port(porter, table, include_aux_logits=False, drop_background=False):
    for op in table.layers:
        _port_layer(porter, op, "")
    if include_aux_logits:  # slim builds it between the base and the logits
        on_size = porter.layer(table.aux.on).output.shape[1]
        porter.conv(f"{AUX}/{AUX_CONV}", bn=True)
        porter.conv(aux_conv_scope(table, on_size)[0], bn=True)
        porter.dense_from_conv(f"{AUX}/{table.aux.logits}", drop_background)
    porter.dense_from_conv("Logits/" + table.head.logits, drop_background)


def end_points(table):
    """Every root-level layer and Mixed block (slim keys them without the root scope),
    then v3's ``PreLogits`` (the dropout output, ``[B, 1, 1, 2048]``) and ``Logits``."""
    head = table.head
    points = []
    for op in table.layers:
        if isinstance(op, (Block, Residual)):
            points.append((op.name, L.keras_name(op.name)))
        elif isinstance(op, Pool):
            points.append((op.scope, L.keras_name(op.scope)))
        else:
            points.append((op.scope, L.keras_name(op.scope) + L.SEP + "relu"))
    if head.prelogits:
        points.append((head.prelogits, L.keras_name("Logits/" + head.dropout)))
    points.append(("Logits", L.keras_name("Logits/" + head.logits)))
    return points
