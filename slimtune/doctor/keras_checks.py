"""Keras model checks: BatchNorm statistics and parameters of a saved ``.keras`` model."""

import numpy as np

from slimtune import graphs
from slimtune.doctor.findings import ERROR, WARNING, Finding, listed


def batch_norm_layers(model):
    """Every BatchNormalization layer, nested models included, in network order."""
    import keras

    found = []

    def visit(layers):
        for layer in layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                found.append(layer)
            visit(getattr(layer, "layers", ()))

    visit(model.layers)
    return found


def check(model, meta=None):
    """Findings for a loaded Keras model and the slimtune.json beside it (if any)."""
    meta = meta or {}
    layers = batch_norm_layers(model)
    findings = []
    initial = graphs.initial_statistics(
        {layer.name: (layer.moving_mean, layer.moving_variance) for layer in layers})
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
    expected = meta.get("batch_norm") or {}
    if expected.get("epsilon") is not None:
        wrong = [f"{layer.name} ({layer.epsilon:g})" for layer in layers
                 if not np.isclose(layer.epsilon, expected["epsilon"], rtol=1e-6)]
        if wrong:
            findings.append(Finding(
                ERROR, "keras-bn-epsilon", "BatchNorm epsilon differs from the source "
                "checkpoint's", f"slimtune.json says epsilon {expected['epsilon']:g}; "
                f"{len(wrong)} layers differ: {listed(wrong)}",
                "outputs drift from the checkpoint's, most where variances are small",
                "convert again with slimtune-convert (it reads the epsilon from the "
                "training metadata) or set each layer's epsilon"))
    if expected.get("scale") is not None:
        wrong = [layer.name for layer in layers if bool(layer.scale) != bool(expected["scale"])]
        if wrong:
            findings.append(Finding(
                ERROR, "keras-bn-scale", "BatchNorm scale (gamma) differs from the source "
                "checkpoint's", f"slimtune.json says scale={expected['scale']}; "
                f"{len(wrong)} layers differ: {listed(wrong)}",
                "a gamma the checkpoint never had (or one dropped) changes every output",
                "convert again with slimtune-convert"))
    return findings
