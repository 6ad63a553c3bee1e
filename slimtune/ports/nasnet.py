"""NASNet-A and PNASNet-5: the port table and end points, walked like the networks
(:func:`slimtune.nets.nasnet.walk`) so that model and table cannot drift apart.

Every op of the walk is one row here: a conv is its ``weights``, a separable conv its
``depthwise_weights`` and ``pointwise_weights``, a BatchNorm its gamma, beta and moving
statistics, a fully connected layer its ``weights`` and ``biases``.  Each op returns the
Keras layer name of its output, which is what the end points are.
"""

from slimtune.keras_nets.layers import keras_name
from slimtune.nets import nasnet


class PortOps:
    """:func:`~slimtune.nets.nasnet.walk`'s ops as port table rows (``porter`` None:
    names only)."""

    images = "images"

    def __init__(self, porter=None, drop_background=False):
        self.porter, self.drop_background = porter, drop_background
        self.end_points = []

    def end_point(self, key, x):
        self.end_points.append((key, x))

    def conv(self, x, scope, filters, kernel, stride=1, padding="same"):
        if self.porter:
            self.porter.port_weight(self.porter.layer(scope).kernel,
                                    self.porter.key(scope, "weights"))
        return keras_name(scope)

    def separable_conv(self, x, scope, filters, kernel, stride):
        if self.porter:
            layer, key = self.porter.layer(scope), self.porter.key
            self.porter.port_weight(layer.depthwise_kernel, key(scope, "depthwise_weights"))
            self.porter.port_weight(layer.pointwise_kernel, key(scope, "pointwise_weights"))
        return keras_name(scope)

    def bn(self, x, scope):
        if self.porter:
            self.porter.batch_norm(scope)
        return keras_name(scope)

    def fully_connected(self, x, scope, units):
        if self.porter:
            self.porter.dense_from_conv(scope, self.drop_background)
        return keras_name(scope)

    def drop_path(self, x, name, plan, cell_num):
        return x

    def _layer(self, x, name, *args):
        return keras_name(name)

    relu = subsample = shift = global_pool = flatten = _layer

    def pool(self, x, name, kind, size, stride, padding="same"):
        return keras_name(name)

    def dropout(self, x, name, keep_prob):
        return keras_name(name)

    def add(self, a, b, name):
        return keras_name(name)

    def concat(self, xs, name):
        return keras_name(name)


def port(porter, plan, include_aux_logits=False, drop_background=False):
    nasnet.walk(PortOps(porter, drop_background), plan, num_classes=1,
                create_aux_logits=include_aux_logits)


def end_points(plan):
    """``Stem``, every cell (``Cell_<n>``, NASNet's ``Reduction_Cell_<k>``),
    ``global_pool`` ([B, C]) and ``Logits``, each the Keras layer computing it."""
    ops = PortOps()
    nasnet.walk(ops, plan, num_classes=1, create_aux_logits=False)
    return ops.end_points
