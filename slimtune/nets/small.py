"""research/slim's LeNet and CifarNet (``nets/lenet.py``, ``nets/cifarnet.py``) as plans.

``tf_slim.nets`` has neither, so the graphs are built here, with research/slim's scopes
and end point names, from one :class:`Plan` each; the Keras mirrors
(``slimtune.keras_nets.small``) and the port tables (``slimtune.ports.small``) walk the
same plans.  Neither network has BatchNorm::

    LeNet/conv1    5x5 SAME conv, 32, relu      CifarNet/conv1   5x5 SAME conv, 64, relu
    LeNet/pool1    2x2/2 VALID max pool         CifarNet/pool1   2x2/2 VALID max pool
    LeNet/conv2    5x5 SAME conv, 64, relu      CifarNet/norm1   LRN (no variables)
    LeNet/pool2    2x2/2 VALID max pool         CifarNet/conv2   5x5 SAME conv, 64, relu
    (flatten NHWC, row-major)                   CifarNet/norm2   LRN
    LeNet/fc3      fully connected 1024, relu   CifarNet/pool2   2x2/2 VALID max pool
    LeNet/dropout3 keep 0.5                     (flatten) fc3 384, dropout3, fc4 192
    LeNet/fc4      logits (regularised)         CifarNet/logits  (not regularised)

The fully connected layers take the flattened map, so their weights fix the input size
a checkpoint works at (28 px for LeNet, 32 for CifarNet by default; 29 and 33 px give
the same maps, since the VALID pools round down).  With ``num_classes`` 0 or None the
network ends at its last fully connected layer before the logits (LeNet's fc3 before
dropout, CifarNet's fc4), as research/slim's do.
"""

from typing import NamedTuple, Optional, Tuple

from slimtune import compat

DROPOUT_KEEP = 0.5  # research/slim's dropout_keep_prob for both

# research/slim's tf.nn.lrn arguments in CifarNet (alpha is per square, not per window).
LRN_DEPTH_RADIUS = 4
LRN_BIAS = 1.0
LRN_ALPHA = 0.001 / 9.0
LRN_BETA = 0.75


class Layer(NamedTuple):
    kind: str  # "conv" (5x5 SAME, relu), "pool" (2x2/2 VALID max), "lrn", "flatten",
    #            "fc" (fully connected, relu) or "dropout"
    scope: str
    size: Optional[int] = None  # output channels or units of "conv" and "fc"
    end_point: Optional[str] = None  # research/slim's end point key, if it has one


class Plan(NamedTuple):
    scope: str  # research/slim's default root scope
    layers: Tuple[Layer, ...]  # up to the last layer before the logits
    dropout: Optional[str]  # scope of a dropout between the layers and the logits
    logits: str  # scope of the logits layer (end point "Logits")
    conv_decay: bool  # whether the arg scope's weight decay reaches the conv kernels
    logits_decay: bool  # and the logits weights


def _trunk(*layers):
    return tuple(Layer(kind, scope, size, scope if point else None)
                 for kind, scope, size, point in layers)


LENET = Plan(
    scope="LeNet",
    layers=_trunk(("conv", "conv1", 32, True), ("pool", "pool1", None, True),
                  ("conv", "conv2", 64, True), ("pool", "pool2", None, True),
                  ("flatten", "Flatten", None, True), ("fc", "fc3", 1024, True)),
    dropout="dropout3", logits="fc4", conv_decay=True, logits_decay=True)

CIFARNET = Plan(
    scope="CifarNet",
    layers=_trunk(("conv", "conv1", 64, True), ("pool", "pool1", None, True),
                  ("lrn", "norm1", None, False), ("conv", "conv2", 64, True),
                  ("lrn", "norm2", None, False), ("pool", "pool2", None, True),
                  ("flatten", "Flatten", None, True), ("fc", "fc3", 384, True),
                  ("dropout", "dropout3", None, False), ("fc", "fc4", 192, True)),
    dropout=None, logits="logits", conv_decay=False, logits_decay=False)


def lenet_arg_scope(weight_decay, bn=None):
    """research/slim's: every conv and fully connected layer (the logits too) relu,
    truncated-normal 0.1 weights, L2 weight decay."""
    import tensorflow as tf

    slim = compat.apply()
    with slim.arg_scope([slim.conv2d, slim.fully_connected],
                        weights_regularizer=slim.l2_regularizer(weight_decay),
                        weights_initializer=tf.compat.v1.truncated_normal_initializer(stddev=0.1),
                        activation_fn=tf.nn.relu) as scope:
        return scope


def cifarnet_arg_scope(weight_decay, bn=None):
    """research/slim's: convs truncated-normal 0.05 and not regularised; fully connected
    layers truncated-normal 0.04, biases 0.1, L2 weight decay; relu for both."""
    import tensorflow as tf

    slim = compat.apply()
    v1 = tf.compat.v1
    with slim.arg_scope([slim.conv2d],
                        weights_initializer=v1.truncated_normal_initializer(stddev=5e-2),
                        activation_fn=tf.nn.relu):
        with slim.arg_scope([slim.fully_connected],
                            biases_initializer=v1.constant_initializer(0.1),
                            weights_initializer=v1.truncated_normal_initializer(stddev=0.04),
                            weights_regularizer=slim.l2_regularizer(weight_decay),
                            activation_fn=tf.nn.relu) as scope:
            return scope


def _layer(net, layer, is_training, keep_prob):
    import tensorflow as tf

    slim = compat.apply()
    if layer.kind == "conv":
        return slim.conv2d(net, layer.size, [5, 5], scope=layer.scope)
    if layer.kind == "pool":
        return slim.max_pool2d(net, [2, 2], 2, scope=layer.scope)
    if layer.kind == "lrn":
        return tf.nn.lrn(net, LRN_DEPTH_RADIUS, bias=LRN_BIAS, alpha=LRN_ALPHA, beta=LRN_BETA,
                         name=layer.scope)
    if layer.kind == "flatten":
        return slim.flatten(net)
    if layer.kind == "fc":
        return slim.fully_connected(net, layer.size, scope=layer.scope)
    return slim.dropout(net, keep_prob, is_training=is_training, scope=layer.scope)


def _logits(plan, net, num_classes):
    import tensorflow as tf

    slim = compat.apply()
    if plan.logits_decay:  # LeNet's: the arg scope's initialiser and weight decay
        return slim.fully_connected(net, num_classes, activation_fn=None, scope=plan.logits)
    # CifarNet's: zero biases, truncated-normal 1/192 weights, no weight decay
    return slim.fully_connected(
        net, num_classes, activation_fn=None, scope=plan.logits,
        biases_initializer=tf.compat.v1.zeros_initializer(), weights_regularizer=None,
        weights_initializer=tf.compat.v1.truncated_normal_initializer(stddev=1 / 192.0))


def network(plan):
    """The slim network of ``plan``: ``fn(images, num_classes, is_training, scope,
    dropout_keep_prob) -> (logits [B, C], end_points)`` with research/slim's end point
    keys (``conv1`` ... ``Logits``, ``Predictions``)."""

    def build(images, num_classes, is_training, scope=plan.scope,
              dropout_keep_prob=DROPOUT_KEEP):
        import tensorflow as tf

        slim = compat.apply()
        end_points = {}
        with tf.compat.v1.variable_scope(scope, plan.scope, [images]):
            net = images
            for layer in plan.layers:
                net = _layer(net, layer, is_training, dropout_keep_prob)
                if layer.end_point:
                    end_points[layer.end_point] = net
            if not num_classes:
                return net, end_points
            if plan.dropout:
                net = end_points[plan.dropout] = slim.dropout(
                    net, dropout_keep_prob, is_training=is_training, scope=plan.dropout)
            logits = end_points["Logits"] = _logits(plan, net, num_classes)
            end_points["Predictions"] = slim.softmax(logits, scope="Predictions")
        return logits, end_points

    return build
