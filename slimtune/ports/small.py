"""LeNet and CifarNet: the port tables and end points (``slimtune.keras_nets.small``).

Every conv and fully connected layer has ``weights`` and ``biases`` (no BatchNorm); the
fully connected ones, logits included, are Dense layers whose kernels are slim's
``[in, out]`` weights as stored.  The LRN layers have no variables.
"""

from slimtune.keras_nets import layers as L

_KERAS_OUTPUT = {"conv": ".relu", "fc": ".relu", "pool": "", "flatten": "", "dropout": ""}


def port(porter, plan, drop_background=False):
    for layer in plan.layers:
        if layer.kind in ("conv", "fc"):
            porter.conv(layer.scope)  # weights and biases, conv or fully connected alike
    first = 1 if drop_background else 0
    logits = porter.layer(plan.logits)
    porter.port_weight(logits.kernel, porter.key(plan.logits, "weights"),
                       lambda w: w[:, first:])
    porter.port_weight(logits.bias, porter.key(plan.logits, "biases"), lambda b: b[first:])


def end_points(plan):
    """``[(research/slim's end point key, Keras layer), ...]``: each conv and fully
    connected layer after its relu, the pools, the flattened map, the logits."""
    points = [(layer.end_point, L.keras_name(layer.scope) + _KERAS_OUTPUT[layer.kind])
              for layer in plan.layers if layer.end_point]
    if plan.dropout:
        points.append((plan.dropout, L.keras_name(plan.dropout)))
    return points + [("Logits", L.keras_name(plan.logits))]
