"""Keras model checks: BatchNorm statistics, parameters and calls of a Keras model.

Static (a saved ``.keras``): statistics at 0/1, epsilon/scale against the source
checkpoint, and a nested base model whose BatchNorm layers the outer model calls
without ``training=False`` (Keras' transfer-learning trap: unfreeze the base to
fine-tune and its BN layers start normalising with, and averaging, small batches).

Live (:func:`check_train_step`, from the user's own code): run one step of their
training function and see whether the moving statistics moved; a custom loop calling
``model(x)`` without ``training=True`` leaves them where they were (seed 002).
"""

import numpy as np

from slimtune import bn_layers
from slimtune.findings import ERROR, NOTE, WARNING, Finding, listed
from slimtune.nets.batch_norm import FROZEN, BatchNormConfig


def nested_calls_in_training_mode(model):
    """``[(nested model name, trainable BN layer names)]`` for every nested model with
    trainable BatchNorm layers that ``model`` calls without ``training=False``."""
    import keras

    found = []
    for layer in model.layers:
        if not isinstance(layer, keras.Model):
            continue
        live = [bn.name for bn in bn_layers.keras_layers(layer) if bn.trainable]
        calls = [node.arguments.kwargs.get("training")
                 for node in getattr(layer, "_inbound_nodes", ())
                 if getattr(node, "arguments", None) is not None]
        if live and any(training is not False for training in calls):
            found.append((layer.name, live))
    return found


def _nested_findings(model, frozen_meant):
    found = nested_calls_in_training_mode(model)
    if not found:
        return []
    name, live = found[0]
    return [Finding(
        ERROR if frozen_meant else WARNING, "keras-nested-bn-training",
        "a nested base model's BatchNorm runs in training mode during fit",
        f"{model.name} calls {name} without training=False and {len(live)} of its "
        f"BatchNorm layers are trainable: {listed(live)}"
        + (f" (and {len(found) - 1} more nested models)" if len(found) > 1 else "")
        + ("; slimtune.json says BatchNorm is frozen" if frozen_meant else ""),
        "fit() normalises the base's layers with each batch's statistics and overwrites "
        "its pretrained moving statistics with averages of small fine-tuning batches, "
        "then serves with those: the usual cause of a fine-tune that scores well in "
        "training and badly in evaluation",
        f"call it as {name}(x, training=False) when building the outer model (BatchNorm "
        "then stays in inference mode even when the base is unfrozen), or set "
        "trainable=False on its BatchNormalization layers")]


def _statistics(layers):
    return [(np.array(layer.moving_mean), np.array(layer.moving_variance)) for layer in layers]


def check_train_step(model, train_step, *args, **kwargs):
    """Run ``train_step(*args, **kwargs)`` once and report whether BatchNorm learned.

    For custom training loops: the step is the user's own function (one batch, one
    optimizer update).  Trainable BatchNorm layers whose moving statistics do not move
    while the weights do mean the step calls the model without ``training=True``.
    The step really runs: call this on a model you are about to train anyway.
    """
    layers = [layer for layer in bn_layers.keras_layers(model) if layer.trainable]
    weights = [np.array(w) for w in model.trainable_weights]
    before = _statistics(layers)
    train_step(*args, **kwargs)
    after = _statistics(layers)
    still = [layer.name for layer, (m0, v0), (m1, v1) in zip(layers, before, after)
             if np.array_equal(m0, m1) and np.array_equal(v0, v1)]
    weights_moved = any(not np.array_equal(w, np.array(v))
                        for w, v in zip(weights, model.trainable_weights))
    if not layers:
        return [Finding(NOTE, "keras-step-no-trainable-bn", "no trainable BatchNorm layers",
                        f"{model.name} has {len(bn_layers.keras_layers(model))} BatchNormalization "
                        "layers, none trainable", "BatchNorm is frozen: its statistics are "
                        "not expected to move", "nothing to do")]
    if not still:
        return [Finding(NOTE, "keras-step-updates-bn", "the train step updates BatchNorm",
                        f"all {len(layers)} trainable BatchNormalization layers changed their "
                        "moving statistics in one step", "the statistics follow the data",
                        "nothing to do")]
    return [Finding(
        ERROR, "keras-step-no-bn-update", "the train step does not update BatchNorm "
        "statistics", f"after one step {len(still)} of {len(layers)} trainable "
        f"BatchNormalization layers kept their moving statistics: {listed(still)}"
        + ("" if weights_moved else "; no trainable weight changed either"),
        "the model was called in inference mode inside the step: BatchNorm used (and "
        "kept) its moving statistics, so training and serving both normalise with values "
        "that never saw the data",
        "call model(x, training=True) inside the GradientTape of the train step")]


def check(model, recorded=None):
    """Findings for a loaded Keras model and what the slimtune.json beside it records
    (a :class:`~slimtune.metadata.RunInfo`, or None)."""
    expected = (recorded and recorded.batch_norm) or BatchNormConfig(None, None, None, None)
    layers = bn_layers.keras_layers(model)
    findings = _nested_findings(model, expected.mode == FROZEN)
    initial = bn_layers.initial(bn_layers.keras_statistics(model))
    if initial:
        findings.append(Finding(
            WARNING, "keras-bn-stats-initial", "BatchNorm moving statistics at their "
            "initial values", f"{len(initial)} of {len(layers)} BatchNormalization layers hold "
            f"exactly mean 0 / variance 1: {listed(initial)}",
            "with training=False these layers do not normalise at all; unless the model was "
            "never trained, the statistics were lost (only trainable weights copied) or "
            "never updated (a custom loop calling model(x) without training=True)",
            "convert from the checkpoint that holds the statistics, or train with "
            "model(x, training=True) inside the GradientTape"))
    if expected.epsilon is not None:
        wrong = [f"{layer.name} ({layer.epsilon:g})" for layer in layers
                 if not np.isclose(layer.epsilon, expected.epsilon, rtol=1e-6)]
        if wrong:
            findings.append(Finding(
                ERROR, "keras-bn-epsilon", "BatchNorm epsilon differs from the source "
                "checkpoint's", f"slimtune.json says epsilon {expected.epsilon:g}; "
                f"{len(wrong)} layers differ: {listed(wrong)}",
                "outputs drift from the checkpoint's, most where variances are small",
                "convert again with slimtune-convert (it reads the epsilon from the "
                "training metadata) or set each layer's epsilon"))
    if expected.scale is not None:
        wrong = [layer.name for layer in layers if bool(layer.scale) != bool(expected.scale)]
        if wrong:
            findings.append(Finding(
                ERROR, "keras-bn-scale", "BatchNorm scale (gamma) differs from the source "
                "checkpoint's", f"slimtune.json says scale={expected.scale}; "
                f"{len(wrong)} layers differ: {listed(wrong)}",
                "a gamma the checkpoint never had (or one dropped) changes every output",
                "convert again with slimtune-convert"))
    return findings
