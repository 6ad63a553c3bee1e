"""NASNet-A and PNASNet-5 as Keras 3 models: :func:`slimtune.nets.nasnet.walk` with
Keras layers.

Every layer is a stock Keras layer, named after its slim scope (``layers`` naming
rule); the parts of slim's graph that are not layers there are layers here: the
factorized reduction's shifted path is ``ZeroPadding2D`` (one row and column at the
bottom and right) then ``Cropping2D`` (the first row and column), its stride-2
subsampling a 1x1 ``AveragePooling2D`` with stride 2; separable convs are
``SeparableConv2D`` without bias (slim's ``depthwise_weights`` and
``pointwise_weights`` as stored).

Drop path is a training-time regulariser with no inference effect; the inference
model has none (``drop_path`` lets the Keras engine add it to its training model).  The
auxiliary head's second conv takes the whole pooled map as its kernel, so including it
requires a fixed ``image_size``.
"""

from slimtune.keras_nets import layers as L
from slimtune.nets import nasnet as nets


class KerasOps:
    """The layers of :func:`~slimtune.nets.nasnet.walk` in Keras."""

    def __init__(self, images, bn, drop_path=None):
        self.images, self.bn_config, self.drop_path_fn = images, bn, drop_path
        self.end_points = {}

    def end_point(self, key, x):
        self.end_points[key] = x

    def conv(self, x, scope, filters, kernel, stride=1, padding="same"):
        if kernel is None:  # the aux head's: the whole map
            kernel = tuple(x.shape[1:3])
        return L.conv2d(x, scope, filters, kernel, stride, padding, fn=None, use_bias=False)

    def separable_conv(self, x, scope, filters, kernel, stride):
        return L.separable_conv2d(x, scope, filters, kernel, 1, stride, "same", fn=None,
                                  use_bias=False)

    def bn(self, x, scope):
        return L.batch_norm(x, scope, self.bn_config)

    def relu(self, x, name):
        import keras

        return keras.layers.ReLU(name=L.keras_name(name))(x)

    def pool(self, x, name, kind, size, stride, padding="same"):
        pool = L.max_pool if kind == "max" else L.avg_pool
        return pool(x, name, size, stride, padding)

    def subsample(self, x, name):
        return L.avg_pool(x, name, 1, 2, "valid")

    def shift(self, x, name):
        import keras

        x = keras.layers.ZeroPadding2D(((0, 1), (0, 1)), name=L.keras_name(name) + ".pad")(x)
        return keras.layers.Cropping2D(((1, 0), (1, 0)), name=L.keras_name(name))(x)

    def add(self, a, b, name):
        return L.add([a, b], L.keras_name(name))

    def concat(self, xs, name):
        return L.concatenate(xs, L.keras_name(name))

    def drop_path(self, x, name, plan, cell_num):
        if self.drop_path_fn is None:
            return x
        return self.drop_path_fn(x, L.keras_name(name), plan, cell_num)

    def global_pool(self, x, name):
        return L.global_average_pool(x, L.keras_name(name))

    def dropout(self, x, name, keep_prob):
        return L.dropout(x, name, keep_prob)

    def flatten(self, x, name):
        return L.flatten(x, L.keras_name(name))

    def fully_connected(self, x, scope, units):
        return L.fully_connected(x, scope, units, fn=None)


def nasnet(plan, num_classes, batch_norm=None, dropout_keep_prob=None,
           include_aux_logits=False, weight_decay=0.0, image_size=None, name=None,
           drop_path=None):
    """The network of ``plan`` (random weights); with ``include_aux_logits`` the outputs
    are ``[logits, aux_logits]``.  ``drop_path(x, name, plan, cell_num)``, if given,
    builds drop path after every operation but ``none`` (training models only)."""
    if include_aux_logits and image_size is None:
        raise ValueError(f"{plan.name}'s auxiliary head depends on the input size: give "
                         "image_size to include it")
    bn = batch_norm or (nets.CIFAR_BN if plan.cifar_stem else nets.IMAGENET_BN)
    if dropout_keep_prob is not None:
        plan = plan._replace(dense_dropout_keep=dropout_keep_prob)
    ops = KerasOps(L.images(image_size), bn, drop_path)
    logits = nets.walk(ops, plan, num_classes, create_aux_logits=include_aux_logits)
    outputs = [logits, ops.end_points["AuxLogits"]] if include_aux_logits else logits
    model = L.model(ops.images, outputs, name or plan.name)
    return L.with_weight_decay(model, weight_decay, separable=True)
