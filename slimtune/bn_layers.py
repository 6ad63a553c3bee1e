"""The BatchNorm layers of every model form, in network order, and their moving statistics.

A slim checkpoint names them by variable scope (``.../BatchNorm/moving_mean``), a slim
graph by its ``FusedBatchNorm`` ops, a frozen graph by its constants, and a Keras model
by its ``BatchNormalization`` layers (nested models included).  Every tool that looks
at BatchNorm (the doctor's checks, slimtune-verify's findings, the exact statistics of
``slimtune.batch_statistics``) finds the layers here.
"""

import dataclasses

import numpy as np

# A scope holding only gamma/beta is a BatchNorm when its last part starts with one of
# these: slim's ``BatchNorm``, ResNet v2's ``preact``/``postnorm``, Keras'
# ``batch_normalization``.  LayerNorm's gamma/beta stay out.
_BN_SCOPE_NAMES = ("batchnorm", "batch_norm", "batch_normalization", "bn", "preact",
                   "postnorm")


# --- checkpoints ---------------------------------------------------------------------------

def scopes(names):
    """``{scope: set of variable kinds}`` of every BatchNorm in a list of variable names.

    A scope with moving statistics is a BatchNorm; one with only gamma/beta counts when
    its name says so (see ``_BN_SCOPE_NAMES``).
    """
    found = {}
    for name in names:
        scope, _, kind = name.rpartition("/")
        last = scope.rsplit("/", 1)[-1].lower()
        if kind in ("moving_mean", "moving_variance") or (
                kind in ("gamma", "beta") and last.startswith(_BN_SCOPE_NAMES)):
            found.setdefault(scope, set()).add(kind)
    return found


def tensor_statistics(tensors):
    """``{scope: (moving_mean, moving_variance)}`` of ``{name: array}`` (a checkpoint's
    tensors), for every scope that holds both."""
    return {scope: (tensors[scope + "/moving_mean"], tensors[scope + "/moving_variance"])
            for scope, kinds in scopes(tensors).items()
            if {"moving_mean", "moving_variance"} <= kinds}


# --- slim graphs -----------------------------------------------------------------------------

@dataclasses.dataclass
class SlimLayer:
    """One BatchNorm of a slim graph: its ``FusedBatchNorm`` op and its variable scope."""

    name: str  # e.g. resnet_v1_50/conv1/BatchNorm; InceptionV3/Mixed_5b/.../BatchNorm
    op: object

    @property
    def training(self):
        return bool(self.op.get_attr("is_training"))

    @property
    def epsilon(self):
        return float(self.op.get_attr("epsilon"))

    @property
    def input(self):
        return self.op.inputs[0]

    @property
    def channel_axis(self):
        return 1 if self.op.get_attr("data_format") == b"NCHW" else -1

    @property
    def moving_mean(self):
        return self.name + "/moving_mean"

    @property
    def moving_variance(self):
        return self.name + "/moving_variance"


def _variable_read_by(tensor):
    op = tensor.op
    while op.type in ("ReadVariableOp", "Identity") and op.inputs:
        op = op.inputs[0].op
    return op.name if op.type in ("VarHandleOp", "VariableV2", "Variable") else None


def slim_layers(graph):
    """Every BatchNorm of ``graph`` in construction (network) order.

    A layer is named by the variables its op reads as mean and variance (inputs 3 and 4,
    in training mode too), not by the op's name scope: Inception re-enters its root
    scope (ops under ``InceptionV3/InceptionV3/...``, variables under
    ``InceptionV3/...``), and ResNet v2's ``preact``/``postnorm`` have no ``BatchNorm``
    scope at all.
    """
    layers = []
    for op in graph.get_operations():
        if not op.type.startswith("FusedBatchNorm") or "Grad" in op.type:
            continue
        mean, variance = _variable_read_by(op.inputs[3]), _variable_read_by(op.inputs[4])
        if not (mean and mean.endswith("/moving_mean") and variance == mean[:-4] + "variance"):
            raise RuntimeError(f"internal: BatchNorm op {op.name} reads {mean} and {variance}, "
                               "not a layer's moving_mean/moving_variance")
        layers.append(SlimLayer(mean[: -len("/moving_mean")], op))
    return layers


def graph_statistics(graph_def):
    """``{layer scope: (moving_mean, moving_variance)}`` from a frozen graph's constants."""
    import tensorflow as tf

    consts = {n.name: n for n in graph_def.node if n.op == "Const"}
    stats = {}
    for name, node in consts.items():
        if name.endswith("/moving_mean"):
            scope = name[: -len("/moving_mean")]
            variance = consts.get(scope + "/moving_variance")
            if variance is not None:
                stats[scope] = (tf.make_ndarray(node.attr["value"].tensor),
                                tf.make_ndarray(variance.attr["value"].tensor))
    return stats


# --- Keras models ----------------------------------------------------------------------------

def keras_leaf_layers(model):
    """Every layer of a Keras model that is not itself a model, nested models entered,
    in network order."""
    found = []

    def visit(layers):
        for layer in layers:
            inner = getattr(layer, "layers", None)
            if inner is None:
                found.append(layer)
            else:
                visit(inner)

    visit(model.layers)
    return found


def keras_layers(model):
    """Every BatchNormalization layer of a Keras model, nested models included, in
    network order."""
    import keras

    return [layer for layer in keras_leaf_layers(model)
            if isinstance(layer, keras.layers.BatchNormalization)]


def keras_statistics(model):
    """``{layer name: (moving_mean, moving_variance)}`` of a Keras model, in network order."""
    return {layer.name: (np.asarray(layer.moving_mean), np.asarray(layer.moving_variance))
            for layer in keras_layers(model)}


# --- any form --------------------------------------------------------------------------------

def initial(stats):
    """Layers of ``{layer: (mean, variance)}`` whose statistics are exactly 0 and 1, the
    values BatchNorm starts from: statistics never trained, or lost on the way."""
    return [layer for layer, (mean, variance) in stats.items()
            if np.all(np.asarray(mean) == 0) and np.all(np.asarray(variance) == 1)]
