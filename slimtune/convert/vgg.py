"""VGG 16/19 and AlexNet v2: Keras mirrors and weight tables.

The fully connected layers are slim VALID convolutions (fc6 7x7 for VGG, 5x5 for
AlexNet), so the input size is fixed: fc7's output must be 1x1, as slim's spatial
squeeze requires.  fc8 becomes a Dense layer on the flattened 1x1 map.  Dropout layers
are kept (inactive at inference) so fine-tuning the Keras model behaves like slim.
"""

import keras

from slimtune.convert import layers as L

MODELS = ("vgg_16", "vgg_19", "alexnet_v2")
_VGG_BLOCKS = {"vgg_16": (2, 2, 3, 3, 3), "vgg_19": (2, 2, 4, 4, 4)}
_VGG_WIDTHS = (64, 128, 256, 512, 512)
_DROPOUT = 0.5  # slim's dropout_keep_prob 0.5


def _vgg_convs(name):
    """``(scope, filters)`` of every 3x3 conv, block by block."""
    return [[(f"conv{b}/conv{b}_{i}", width) for i in range(1, repeats + 1)]
            for b, (repeats, width) in enumerate(zip(_VGG_BLOCKS[name], _VGG_WIDTHS), 1)]


_ALEXNET = (  # scope, filters, kernel, stride, padding, max-pool after it
    ("conv1", 64, 11, 4, "valid", "pool1"),
    ("conv2", 192, 5, 1, "same", "pool2"),
    ("conv3", 384, 3, 1, "same", None),
    ("conv4", 384, 3, 1, "same", None),
    ("conv5", 256, 3, 1, "same", "pool5"),
)


def build(spec, num_classes, bn, include_aux_logits=False, image_size=None):
    size = image_size or spec.default_image_size
    inputs = keras.Input((size, size, 3), name="images")
    x = inputs
    if spec.name == "alexnet_v2":
        for scope, filters, kernel, stride, padding, pool in _ALEXNET:
            x = L.conv2d(x, scope, filters, kernel, stride, padding)
            if pool:
                x = L.max_pool(x, pool, 3, 2, "valid")
        fc6_kernel = 5
    else:
        for block, convs in enumerate(_vgg_convs(spec.name), 1):
            for scope, filters in convs:
                x = L.conv2d(x, scope, filters, 3)
            x = L.max_pool(x, f"pool{block}", 2, 2, "valid")
        fc6_kernel = 7
    if x.shape[1] != fc6_kernel or x.shape[2] != fc6_kernel:
        raise ValueError(f"{spec.name} needs inputs whose last feature map is "
                         f"{fc6_kernel}x{fc6_kernel}; {size} px gives {x.shape[1]}x{x.shape[2]}")
    x = L.conv2d(x, "fc6", 4096, fc6_kernel, padding="valid")
    x = keras.layers.Dropout(_DROPOUT, name="dropout6")(x)
    x = L.conv2d(x, "fc7", 4096, 1)
    x = keras.layers.Dropout(_DROPOUT, name="dropout7")(x)
    x = keras.layers.Flatten(name="fc7.flatten")(x)
    logits = L.logits_dense(x, "fc8", num_classes)
    return keras.Model(inputs, logits, name=spec.scope)


def port(porter, spec, bn, drop_background=False, include_aux_logits=False):
    if spec.name == "alexnet_v2":
        for scope, *_ in _ALEXNET:
            porter.conv(scope)
    else:
        for convs in _vgg_convs(spec.name):
            for scope, _ in convs:
                porter.conv(scope)
    porter.conv("fc6")
    porter.conv("fc7")
    porter.dense_from_conv("fc8", drop_background)


def end_points(spec):
    root = spec.scope
    points = []
    if spec.name == "alexnet_v2":
        for scope, *_, pool in _ALEXNET:
            points.append((f"{root}/{scope}", L.keras_name(scope) + ".relu"))
            if pool:
                points.append((f"{root}/{pool}", pool))
    else:
        for block, convs in enumerate(_vgg_convs(spec.name), 1):
            for scope, _ in convs:
                points.append((f"{root}/{scope}", L.keras_name(scope) + ".relu"))
            points.append((f"{root}/pool{block}", f"pool{block}"))
    points += [(f"{root}/fc6", "fc6.relu"), (f"{root}/fc7", "fc7.relu"), (f"{root}/fc8", "fc8")]
    return points
