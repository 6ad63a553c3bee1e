"""A Keras model's intermediate tensors, fetched in one call: the one layer tap.

The doctor and ``slimtune-recalibrate`` read the inputs of the BatchNorm layers
(:mod:`slimtune.batch_statistics`), the probe reads every layer's output to find the
first that is not finite (:mod:`slimtune.probe`); both build the same thing, a model from
the original's inputs to those tensors.
"""


def keras_tap(model, tensors):
    """A ``keras.Model`` from ``model``'s inputs to ``tensors`` (symbolic tensors of its
    graph, e.g. ``layer.input`` or ``layer.output``), or ``None`` when they cannot be
    reached from its inputs (layers inside a nested model, a layer called twice)."""
    import keras

    try:
        return keras.Model(model.inputs, list(tensors))
    except (AttributeError, ValueError, TypeError):
        return None
