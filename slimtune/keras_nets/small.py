"""LeNet and CifarNet (research/slim's) as Keras 3 models, walking the plans of
``slimtune.nets.small``.

slim's flatten of an NHWC map and Keras' ``Flatten`` (channels last) both read it in
row-major H, W, C order, so the fully connected weights port as stored.  The input size
is fixed by them: 28 px (LeNet) or 32 px (CifarNet) unless given.  CifarNet's LRN is
built from Keras' own layers (``layers.local_response_normalization``), so the saved
model loads without slimtune.  Dropout layers are kept (inactive at inference).
"""

from slimtune.keras_nets import layers as L
from slimtune.nets import small
from slimtune.nets.small import DROPOUT_KEEP

DEFAULT_SIZE = {"LeNet": 28, "CifarNet": 32}


def _layer(x, layer, keep_prob):
    if layer.kind == "conv":
        return L.conv2d(x, layer.scope, layer.size, 5)
    if layer.kind == "pool":
        return L.max_pool(x, layer.scope, 2, 2, "valid")
    if layer.kind == "lrn":
        return L.local_response_normalization(
            x, layer.scope, small.LRN_DEPTH_RADIUS, small.LRN_BIAS, small.LRN_ALPHA,
            small.LRN_BETA)
    if layer.kind == "flatten":
        return L.flatten(x, layer.scope)
    if layer.kind == "fc":
        return L.fully_connected(x, layer.scope, layer.size)
    return L.dropout(x, layer.scope, keep_prob)


def regularised_scopes(plan):
    """The layers whose kernels slim's arg scope gives weight decay."""
    kinds = ("conv", "fc") if plan.conv_decay else ("fc",)
    scopes = [layer.scope for layer in plan.layers if layer.kind in kinds]
    return scopes + ([plan.logits] if plan.logits_decay else [])


def network(plan, num_classes, dropout_keep_prob=DROPOUT_KEEP, weight_decay=0.0,
            image_size=None, name=None):
    """The mirror of ``plan`` with ``num_classes`` logits (random weights); with
    ``num_classes`` 0 or None it ends where slim's does without logits."""
    inputs = L.images(image_size or DEFAULT_SIZE[plan.scope])
    x = inputs
    for layer in plan.layers:
        x = _layer(x, layer, dropout_keep_prob)
    if num_classes:
        if plan.dropout:
            x = L.dropout(x, plan.dropout, dropout_keep_prob)
        x = L.logits_dense(x, plan.logits, num_classes)
    model = L.model(inputs, x, name or plan.scope)
    return L.with_weight_decay(model, weight_decay, regularised_scopes(plan))


def lenet(num_classes, dropout_keep_prob=DROPOUT_KEEP, weight_decay=0.0, image_size=None,
          name="LeNet"):
    """research/slim's LeNet: 28 px unless ``image_size`` is given."""
    return network(small.LENET, num_classes, dropout_keep_prob, weight_decay, image_size, name)


def cifarnet(num_classes, dropout_keep_prob=DROPOUT_KEEP, weight_decay=0.0, image_size=None,
             name="CifarNet"):
    """research/slim's CifarNet: 32 px unless ``image_size`` is given."""
    return network(small.CIFARNET, num_classes, dropout_keep_prob, weight_decay, image_size,
                   name)
