"""Keras 3 building blocks that compute exactly what the slim layers compute.

Naming rule: a Keras layer is named after the slim scope of the variables it holds,
relative to the network's root scope, with ``/`` (forbidden in Keras names) replaced by
``.``: slim ``resnet_v1_50/block3/unit_5/bottleneck_v1/conv2`` becomes the layer
``block3.unit_5.bottleneck_v1.conv2`` of the model ``resnet_v1_50``; its BatchNorm is
``block3.unit_5.bottleneck_v1.conv2.BatchNorm``.  The port tables rely on this rule.

Weight decay: slim's ``l2_regularizer(wd)`` adds ``wd * sum(w^2) / 2``, Keras' ``L2(l)`` adds
``l * sum(w^2)``; :func:`with_weight_decay` gives the kernels slim regularises ``L2(wd / 2)``.

Padding: on the TensorFlow backend Keras ``padding="same"`` is TF SAME (asymmetric for
stride 2, -inf for max-pooling, padded cells excluded from averages), which is what
slim uses; slim's ``conv2d_same`` is symmetric explicit zero padding then VALID.

Keras is imported inside the functions, as TensorFlow is in ``slimtune.nets``: the
registry imports every family, and looking an architecture up must not load TensorFlow.
"""

import contextlib

from slimtune.nets.batch_norm import BatchNormConfig

SEP = "."


def keras_name(scope):
    """Keras layer name of a slim scope (relative to the network root)."""
    return scope.replace("/", SEP)


def batch_norm(x, scope, bn: BatchNormConfig):
    """slim.batch_norm at ``scope`` (the BatchNorm's own scope, e.g. ``.../conv1/BatchNorm``).

    Keras ``momentum`` is slim's ``decay``; ``scale=False`` means no gamma, as in the
    Inception checkpoints.
    """
    import keras

    return keras.layers.BatchNormalization(
        axis=-1, momentum=bn.decay, epsilon=bn.epsilon, center=True, scale=bn.scale,
        name=keras_name(scope))(x)


def activation(x, scope, fn="relu"):
    """The activation of a slim layer, named ``<scope>.<fn>``; ``None`` = linear.

    ``hard_swish`` is MobileNet v3's ``x * relu6(x + 3) * (1/6)``, multiplied in
    research/slim's order (the product first, then the sixth).
    """
    import keras

    if fn is None:
        return x
    if fn == "relu":
        return keras.layers.ReLU(name=keras_name(scope) + SEP + "relu")(x)
    if fn == "relu6":
        return keras.layers.ReLU(max_value=6.0, name=keras_name(scope) + SEP + "relu6")(x)
    if fn == "hard_swish":
        name = keras_name(scope) + SEP + "hard_swish"
        product = keras.layers.Multiply(name=name + SEP + "product")(
            [x, relu6_shifted(x, name)])
        return keras.layers.Rescaling(1.0 / 6.0, name=name)(product)
    raise ValueError(f"unsupported activation {fn!r}")


def relu6_shifted(x, name):
    """``relu6(x + 3)`` from Keras' own layers (MobileNet v3's hard-swish and
    hard-sigmoid), so a saved model loads without slimtune: ``x * 1 + 3`` is exactly
    ``x + 3`` in float32."""
    import keras

    shifted = keras.layers.Rescaling(1.0, offset=3.0, name=name + SEP + "plus3")(x)
    return keras.layers.ReLU(max_value=6.0, name=name + SEP + "relu6")(shifted)


def conv2d(x, scope, filters, kernel, strides=1, padding="same", bn=None, fn="relu",
           dilation=1, use_bias=None):
    """slim.conv2d: convolution, then BatchNorm if ``bn`` else a bias, then activation.

    slim adds biases only when there is no normaliser; ``use_bias`` overrides that
    (ResNet v2's final ``conv3`` and ``shortcut`` have biases and no BN).
    """
    import keras

    if use_bias is None:
        use_bias = bn is None
    x = keras.layers.Conv2D(filters, kernel, strides=strides, padding=padding,
                            dilation_rate=dilation, use_bias=use_bias,
                            name=keras_name(scope))(x)
    if bn is not None:
        x = batch_norm(x, scope + "/BatchNorm", bn)
    return activation(x, scope, fn)


def conv2d_same(x, scope, filters, kernel, strides, bn=None, fn="relu"):
    """resnet_utils.conv2d_same: stride 1 is SAME; stride > 1 pads (k-1)//2 and k-1 - that
    on both sides, symmetric, whatever the input size, then VALID."""
    import keras

    if strides == 1:
        return conv2d(x, scope, filters, kernel, 1, "same", bn, fn)
    total = kernel - 1
    begin = total // 2
    x = keras.layers.ZeroPadding2D(((begin, total - begin), (begin, total - begin)),
                                   name=keras_name(scope) + SEP + "pad")(x)
    return conv2d(x, scope, filters, kernel, strides, "valid", bn, fn)


def max_pool(x, scope, size, strides, padding="same"):
    import keras

    return keras.layers.MaxPooling2D(size, strides, padding=padding, name=keras_name(scope))(x)


def avg_pool(x, scope, size, strides, padding="same"):
    import keras

    return keras.layers.AveragePooling2D(size, strides, padding=padding,
                                         name=keras_name(scope))(x)


def logits_dense(x, scope, num_classes):
    """A 1x1-conv logits layer on a 1x1 map, as the equivalent Dense layer."""
    import keras

    return keras.layers.Dense(num_classes, name=keras_name(scope))(x)


def fully_connected(x, scope, units, fn="relu"):
    """slim.fully_connected on a flat input: a Dense layer (kernel ``[in, units]`` as slim
    stores ``weights``, biases), then the activation."""
    import keras

    return activation(keras.layers.Dense(units, name=keras_name(scope))(x), scope, fn)


def local_response_normalization(x, scope, depth_radius, bias, alpha, beta):
    """``tf.nn.lrn``: ``x / (bias + alpha * sum of x^2 over 2r+1 channels) ** beta``, the
    channels beyond the edges counting 0, from Keras' own layers and ops (Keras has no
    LRN layer, and a Lambda or a layer of slimtune's would not load without slimtune).

    The window sum is an average pool over the channel axis of the zero-padded squares
    times the window size; the output is the layer ``<scope>``.
    """
    import keras

    name, window = keras_name(scope), 2 * depth_radius + 1
    squares = keras.layers.Multiply(name=name + SEP + "square")([x, x])
    squares = keras.ops.expand_dims(squares, -1)  # channels as the third pooling axis
    squares = keras.layers.ZeroPadding3D(((0, 0), (0, 0), (depth_radius, depth_radius)),
                                         name=name + SEP + "pad")(squares)
    mean = keras.layers.AveragePooling3D((1, 1, window), strides=1, padding="valid",
                                         name=name + SEP + "window")(squares)
    base = keras.layers.Rescaling(alpha * window, offset=bias, name=name + SEP + "base")(
        keras.ops.squeeze(mean, -1))
    return keras.layers.Multiply(name=name)([x, keras.ops.power(base, -beta)])


def dropout(x, scope, keep_prob):
    """slim.dropout(keep_prob) as a Keras layer: inactive at inference, ``1 - keep_prob``
    of the units dropped in training."""
    import keras

    return keras.layers.Dropout(1.0 - keep_prob, name=keras_name(scope))(x)


def with_weight_decay(model, weight_decay, scopes=None, separable=False):
    """``model`` with slim's L2 weight decay on every Conv2D and Dense kernel, or on those
    of the slim ``scopes`` only.

    These are the layers every family's slim arg scope regularises (``conv2d`` and
    ``fully_connected`` weights); biases, BatchNorm, depthwise kernels (MobileNet) and
    separable convs (Inception v2's stem) are left alone, as in slim.  ``scopes`` serves
    the networks whose arg scope regularises fewer (CifarNet: fc3 and fc4); ``separable``
    those whose arg scope regularises separable convs too, both kernels (NASNet).  A weight
    decay of 0 adds nothing (``l2_regularizer(0.0)`` is no regularizer in slim either).
    """
    import keras

    if not weight_decay:
        return model
    regularizer = keras.regularizers.L2(weight_decay / 2)
    names = None if scopes is None else {keras_name(scope) for scope in scopes}
    for layer in model.layers:
        if names is not None and layer.name not in names:
            continue
        if type(layer) in (keras.layers.Conv2D, keras.layers.Dense):
            # On a built layer Keras reads the variable's regularizer; the attribute is
            # what get_config() saves.
            layer.kernel_regularizer = regularizer
            layer.kernel.regularizer = regularizer
        if separable and type(layer) is keras.layers.SeparableConv2D:
            layer.depthwise_regularizer = layer.pointwise_regularizer = regularizer
            layer.depthwise_kernel.regularizer = regularizer
            layer.pointwise_kernel.regularizer = regularizer
    return model


_input_channels = 3


@contextlib.contextmanager
def input_channels(channels):
    """Within it, :func:`images` has ``channels`` channels (1: research/slim's
    ``--use_grayscale``): how ``ModelSpec.build_keras`` sets the input of every mirror,
    registered ones included, without a parameter in each builder."""
    global _input_channels
    if channels not in (1, 3):
        raise ValueError(f"input channels must be 1 or 3, not {channels!r}")
    before, _input_channels = _input_channels, channels
    try:
        yield
    finally:
        _input_channels = before


def images(image_size=None):
    """The model input ``[B, H, W, C]`` float32 named ``images`` (``C`` = 3, or what
    :func:`input_channels` sets); ``None`` leaves H, W open."""
    import keras

    return keras.Input((image_size, image_size, _input_channels), name="images")


def model(inputs, outputs, name):
    import keras

    return keras.Model(inputs, outputs, name=name)


def add(inputs, name):
    import keras

    return keras.layers.Add(name=name)(inputs)


def concatenate(inputs, name):
    """Channel concatenation (slim's ``tf.concat(..., axis=3)``)."""
    import keras

    return keras.layers.Concatenate(axis=-1, name=name)(inputs)


def global_average_pool(x, name, keepdims=False):
    """slim's mean over H and W (``reduce_mean`` or a whole-map VALID average pool)."""
    import keras

    return keras.layers.GlobalAveragePooling2D(keepdims=keepdims, name=name)(x)


def flatten(x, name):
    import keras

    return keras.layers.Flatten(name=name)(x)


def depthwise_conv2d(x, scope, kernel, strides):
    """slim.separable_conv2d with ``num_outputs=None``: a depthwise conv without bias whose
    kernel ``[k, k, C, 1]`` is slim's ``depthwise_weights`` as stored."""
    import keras

    return keras.layers.DepthwiseConv2D(kernel, strides=strides, padding="same",
                                        depth_multiplier=1, use_bias=False,
                                        name=keras_name(scope))(x)


def separable_conv2d(x, scope, filters, kernel, depth_multiplier, strides, padding, fn="relu",
                     use_bias=True):
    """slim.separable_conv2d outside any normaliser arg scope: depthwise, pointwise, biases
    (unless the arg scope has none, as NASNet's), activation (the same
    ``depthwise_weights``/``pointwise_weights`` shapes)."""
    import keras

    x = keras.layers.SeparableConv2D(filters, kernel, strides=strides, padding=padding,
                                     depth_multiplier=depth_multiplier, use_bias=use_bias,
                                     name=keras_name(scope))(x)
    return activation(x, scope, fn)
