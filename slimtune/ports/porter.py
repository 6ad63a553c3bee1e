"""Assign checkpoint tensors to Keras weights, each exactly once, or say what is unmatched.

A family's port table is a sequence of :meth:`Porter.port_weight` calls (most through
the ``conv``/``batch_norm``/``dense`` shorthands).  Problems are collected rather than
raised one at a time, so a user sees every unmatched name on both sides in one error.
"""

import numpy as np

from slimtune.keras_nets.layers import keras_name
from slimtune.errors import CheckpointError

# Checkpoint entries a conversion never needs: training state, not the function.
_TRAINING_STATE_SUFFIXES = ("/Momentum", "/RMSProp", "/RMSProp_1", "/Adam", "/Adam_1",
                            "/Adagrad", "/Adadelta", "/Adadelta_1", "/Ftrl", "/Ftrl_1")
# The last two: the dynamic loss scale of a --mixed_precision=float16 run (TF1's
# MixedPrecisionLossScaleOptimizer).
_TRAINING_STATE_NAMES = ("global_step", "beta1_power", "beta2_power", "current_loss_scale",
                         "good_steps")


def scoped(root, name):
    """``root/name``, or ``name`` for a network without a root scope (research/slim's
    NASNets: their variables start at ``cell_0/``, ``final_layer/``)."""
    return f"{root}/{name}" if root else name


def is_training_state(name):
    """True for global_step, optimizer slots, a loss scale and ExponentialMovingAverage
    shadows."""
    return (name in _TRAINING_STATE_NAMES or name.endswith(_TRAINING_STATE_SUFFIXES)
            or "/ExponentialMovingAverage" in name)


class Porter:
    """Copies ``tensors`` (``{checkpoint name: array}``) into a Keras model's weights.

    ``root`` is the network's root scope; keys given to the shorthands are relative to
    it.  ``skip(name)`` says which checkpoint entries are deliberately left out.
    """

    def __init__(self, model, tensors, root, source="checkpoint", skip=is_training_state):
        self.model, self.tensors, self.root, self.source = model, tensors, root, source
        self.skip = skip
        self.used = set()
        self.assigned = {}  # id(keras variable) -> checkpoint name
        self.problems = []

    # -- the one primitive -------------------------------------------------------------
    def port_weight(self, keras_var, source_key, transform=None):
        """Assign checkpoint tensor ``source_key`` (full name) to ``keras_var``."""
        if id(keras_var) in self.assigned:
            self.problems.append(f"Keras weight {keras_var.path} assigned twice "
                                 f"({self.assigned[id(keras_var)]} and {source_key})")
            return
        if source_key not in self.tensors:
            self.problems.append(f"{source_key} not in the {self.source} "
                                 f"(needed by Keras weight {keras_var.path})")
            return
        value = np.asarray(self.tensors[source_key])
        if transform is not None:
            value = transform(value)
        if tuple(value.shape) != tuple(keras_var.shape):
            self.problems.append(
                f"{source_key} has shape {list(value.shape)} but Keras weight "
                f"{keras_var.path} needs {list(keras_var.shape)}")
            return
        keras_var.assign(value.astype(keras_var.dtype))
        self.used.add(source_key)
        self.assigned[id(keras_var)] = source_key

    # -- shorthands for slim's layers ----------------------------------------------------
    def layer(self, scope):
        return self.model.get_layer(keras_name(scope))

    def key(self, scope, name):
        return scoped(self.root, f"{scope}/{name}")

    def conv(self, scope, bn=False, bias=None):
        """A slim conv2d at ``scope``: weights, then BatchNorm or biases."""
        layer = self.layer(scope)
        self.port_weight(layer.kernel, self.key(scope, "weights"))
        if bias if bias is not None else not bn:
            self.port_weight(layer.bias, self.key(scope, "biases"))
        if bn:
            self.batch_norm(scope + "/BatchNorm")

    def batch_norm(self, scope):
        """A slim batch_norm whose variables live directly under ``scope``."""
        layer = self.layer(scope)
        if layer.scale:
            self.port_weight(layer.gamma, self.key(scope, "gamma"))
        self.port_weight(layer.beta, self.key(scope, "beta"))
        self.port_weight(layer.moving_mean, self.key(scope, "moving_mean"))
        self.port_weight(layer.moving_variance, self.key(scope, "moving_variance"))

    def dense_from_conv(self, scope, drop_background=False):
        """A 1x1-conv logits layer into a Dense layer; optionally drop class 0."""
        layer = self.layer(scope)
        first = 1 if drop_background else 0

        def kernel(w):
            return w.reshape(w.shape[-2], w.shape[-1])[:, first:]

        self.port_weight(layer.kernel, self.key(scope, "weights"), kernel)
        self.port_weight(layer.bias, self.key(scope, "biases"), lambda b: b[first:])

    # -- the check -----------------------------------------------------------------------
    def finish(self, also_skip=()):
        """Raise :class:`CheckpointError` unless every weight and tensor is accounted for.

        ``also_skip`` are checkpoint scopes left out on purpose (an auxiliary head).
        """
        problems = list(self.problems)
        unassigned = [w.path for w in self.model.weights if id(w) not in self.assigned]
        unused = sorted(n for n in self.tensors
                        if n not in self.used and not self.skip(n)
                        and not any(n.startswith(s + "/") for s in also_skip))
        if unassigned:
            problems.append(f"{len(unassigned)} Keras weights got no value: "
                            + ", ".join(unassigned[:20]) + (" ..." if len(unassigned) > 20 else ""))
        if unused:
            problems.append(f"{len(unused)} {self.source} tensors were not used: "
                            + ", ".join(unused[:20]) + (" ..." if len(unused) > 20 else ""))
        if problems:
            raise CheckpointError(
                f"the {self.source} does not match the {self.model.name} Keras model: "
                f"{problems[0]}; check --model_name and --num_classes\n  "
                + "\n  ".join(problems))
