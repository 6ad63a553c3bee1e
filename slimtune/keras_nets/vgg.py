"""VGG A/16/19, AlexNet v2 and OverFeat as Keras 3 models laid out like slim's.

The fully connected layers are slim VALID convolutions (fc6 7x7 for VGG, 5x5 for
AlexNet, 6x6 for OverFeat), so the input size is fixed (224 px unless given, 231 for
OverFeat): fc7's output must be 1x1, as slim's spatial squeeze requires.  fc8 becomes
a Dense layer on the flattened 1x1 map.  Dropout layers are kept (inactive at
inference) so fine-tuning the Keras model behaves like slim.
"""

from slimtune.keras_nets import layers as L
from slimtune.nets.vgg import DROPOUT_KEEP

# convs per block; "a" is tf_slim's vgg_a, VGG's 11-layer configuration A
_VGG_BLOCKS = {"a": (1, 1, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
_VGG_WIDTHS = (64, 128, 256, 512, 512)
DEFAULT_SIZE = 224

ALEXNET = (  # scope, filters, kernel, stride, padding, max-pool after it
    ("conv1", 64, 11, 4, "valid", "pool1"),
    ("conv2", 192, 5, 1, "same", "pool2"),
    ("conv3", 384, 3, 1, "same", None),
    ("conv4", 384, 3, 1, "same", None),
    ("conv5", 256, 3, 1, "same", "pool5"),
)
ALEXNET_POOL = 3  # AlexNet v2's max pools are 3x3/2, OverFeat's 2x2/2, all VALID
# tf_slim's overfeat: conv1 and conv2 VALID, the rest SAME; fc6 6x6 VALID to 3072.
OVERFEAT = (
    ("conv1", 64, 11, 4, "valid", "pool1"),
    ("conv2", 256, 5, 1, "valid", "pool2"),
    ("conv3", 512, 3, 1, "same", None),
    ("conv4", 1024, 3, 1, "same", None),
    ("conv5", 1024, 3, 1, "same", "pool5"),
)
OVERFEAT_POOL = 2
OVERFEAT_SIZE = 231


def vgg_convs(depth):
    """``(scope, filters)`` of every 3x3 conv of VGG ``depth``, block by block."""
    return [[(f"conv{b}/conv{b}_{i}", width) for i in range(1, repeats + 1)]
            for b, (repeats, width) in enumerate(zip(_VGG_BLOCKS[depth], _VGG_WIDTHS), 1)]


def vgg(depth, num_classes, dropout_keep_prob=DROPOUT_KEEP, weight_decay=0.0,
        image_size=None, name=None):
    """``vgg_<depth>`` (``"a"``, 16 or 19) with ``num_classes`` logits (random weights)."""
    size = image_size or DEFAULT_SIZE
    inputs = L.images(size)
    x = inputs
    for block, convs in enumerate(vgg_convs(depth), 1):
        for scope, filters in convs:
            x = L.conv2d(x, scope, filters, 3)
        x = L.max_pool(x, f"pool{block}", 2, 2, "valid")
    logits = _head(x, 7, num_classes, dropout_keep_prob, name or f"vgg_{depth}", size)
    return L.with_weight_decay(L.model(inputs, logits, name or f"vgg_{depth}"), weight_decay)


def alexnet_v2(num_classes, dropout_keep_prob=DROPOUT_KEEP, weight_decay=0.0,
               image_size=None, name="alexnet_v2"):
    """AlexNet v2 with ``num_classes`` logits (random weights)."""
    size = image_size or DEFAULT_SIZE
    x, inputs = _convs(ALEXNET, ALEXNET_POOL, size)
    logits = _head(x, 5, num_classes, dropout_keep_prob, name, size)
    return L.with_weight_decay(L.model(inputs, logits, name), weight_decay)


def overfeat(num_classes, dropout_keep_prob=DROPOUT_KEEP, weight_decay=0.0,
             image_size=None, name="overfeat"):
    """OverFeat (tf_slim's) with ``num_classes`` logits (random weights)."""
    size = image_size or OVERFEAT_SIZE
    x, inputs = _convs(OVERFEAT, OVERFEAT_POOL, size)
    logits = _head(x, 6, num_classes, dropout_keep_prob, name, size, fc6_filters=3072)
    return L.with_weight_decay(L.model(inputs, logits, name), weight_decay)


def _convs(table, pool_size, size):
    """The convs of an AlexNet-like ``table``, each max pool ``pool_size``/2 VALID."""
    inputs = L.images(size)
    x = inputs
    for scope, filters, kernel, stride, padding, pool in table:
        x = L.conv2d(x, scope, filters, kernel, stride, padding)
        if pool:
            x = L.max_pool(x, pool, pool_size, 2, "valid")
    return x, inputs


def _head(x, fc6_kernel, num_classes, keep_prob, name, size, fc6_filters=4096):
    """fc6 (a VALID conv over the whole last map), fc7, dropout after each, fc8."""
    if x.shape[1] != fc6_kernel or x.shape[2] != fc6_kernel:
        raise ValueError(f"{name} needs inputs whose last feature map is "
                         f"{fc6_kernel}x{fc6_kernel}; {size} px gives {x.shape[1]}x{x.shape[2]}")
    x = L.conv2d(x, "fc6", fc6_filters, fc6_kernel, padding="valid")
    x = L.dropout(x, "dropout6", keep_prob)
    x = L.conv2d(x, "fc7", 4096, 1)
    x = L.dropout(x, "dropout7", keep_prob)
    x = L.flatten(x, "fc7.flatten")
    return L.logits_dense(x, "fc8", num_classes)
