"""Keras model checks: BatchNorm statistics, parameters and calls of a Keras model.

Static (a saved ``.keras``): statistics at 0/1, epsilon/scale against the source
checkpoint, statistics stored in half precision (:mod:`.precision_checks`), and a nested base model with trainable BatchNorm layers (Keras'
transfer-learning trap: unfreeze the base to fine-tune and its BN layers start
normalising with, and averaging, small batches; in Keras 3 ``base(x, training=False)``
does not prevent it, as keras.io's guide says it does).

Live (:func:`check_train_step`, from the user's own code): run one step of their
training function and compare what moved with what the model says it trains: layers
made trainable (or frozen) after the train function was traced, without compiling
again, keep the old set; a custom loop calling ``model(x)`` without ``training=True``
leaves the moving statistics where they were (seed 002).
"""

import numpy as np

from slimtune import bn_layers, metadata
from slimtune.checks import precision_checks
from slimtune.findings import ERROR, NOTE, WARNING, Finding, listed
from slimtune.nets.batch_norm import FROZEN, BatchNormConfig


def nested_batch_norm_in_training(model):
    """``[(nested model name, trainable BN layer names, called with training=False)]``
    for every nested model of ``model`` holding trainable BatchNorm layers: ``fit()``
    trains those, whatever the call recorded (Keras 3 passes the outer call's
    ``training=True`` into every nested call, over a recorded ``training=False``)."""
    import keras

    found = []
    for layer in model.layers:
        if not isinstance(layer, keras.Model):
            continue
        live = [bn.name for bn in bn_layers.keras_layers(layer) if bn.trainable]
        calls = [node.arguments.kwargs.get("training")
                 for node in getattr(layer, "_inbound_nodes", ())
                 if getattr(node, "arguments", None) is not None]
        if live:
            found.append((layer.name, live, bool(calls) and all(t is False for t in calls)))
    return found


_FREEZE_FIX = ("freeze BatchNorm through trainable: set {name}.trainable = True, then "
               "trainable = False on every BatchNormalization layer inside it, and compile "
               "again (a call's training=False does not survive fit() in Keras 3)")


def _nested_findings(model, frozen_meant):
    findings = []
    found = nested_batch_norm_in_training(model)
    overridden = [(name, live) for name, live, told_false in found if told_false]
    unsaid = [(name, live) for name, live, told_false in found if not told_false]
    if overridden:
        name, live = overridden[0]
        findings.append(Finding(
            ERROR, "keras-nested-bn-training", "a nested base model's BatchNorm trains "
            "during fit despite training=False",
            f"{model.name} calls {name}(x, training=False) and {len(live)} of its "
            f"BatchNorm layers are trainable: {listed(live)}" + _more(overridden),
            "Keras 3 hands the outer call's training=True (fit, train_on_batch, a loop's "
            "model(x, training=True)) to every nested call and overrides the recorded "
            "False (keras-team/keras#20285; keras.io's transfer-learning guide says "
            "otherwise): once the base is unfrozen its BatchNorm normalises with each "
            "batch's statistics and overwrites the pretrained moving statistics with "
            "averages of small fine-tuning batches", _FREEZE_FIX.format(name=name)))
    if unsaid:
        name, live = unsaid[0]
        findings.append(Finding(
            ERROR if frozen_meant else WARNING, "keras-nested-bn-training",
            "a nested base model's BatchNorm runs in training mode during fit",
            f"{model.name} calls {name} without training=False and {len(live)} of its "
            f"BatchNorm layers are trainable: {listed(live)}" + _more(unsaid)
            + ("; slimtune.json says BatchNorm is frozen" if frozen_meant else ""),
            "fit() normalises the base's layers with each batch's statistics and "
            "overwrites its pretrained moving statistics with averages of small "
            "fine-tuning batches, then serves with those: the usual cause of a fine-tune "
            "that scores well in training and badly in evaluation",
            _FREEZE_FIX.format(name=name)))
    return findings


def _more(found):
    return f" (and {len(found) - 1} more nested models)" if len(found) > 1 else ""


def _values(variables):
    return {id(v): np.array(v.numpy(), copy=True) for v in variables}


def check_train_step(model, train_step, *args, **kwargs):
    """Run ``train_step(*args, **kwargs)`` once and report what it changed.

    For users' own training: the step is their function (one batch, one optimizer
    update), or a compiled model's ``model.fit`` with one batch.  Two things are
    compared with what the model says it trains:

    - weights: a layer whose trainable weights all stayed fixed, or a frozen weight
      that changed, means the step updates another set of variables than
      ``model.trainable_weights``: ``trainable`` was changed after the compiled train
      function was traced, without compiling again (or a loop hands the optimizer a
      stale list);
    - BatchNorm: trainable layers whose moving statistics stayed while their gamma/beta
      moved mean the step calls the model without ``training=True`` (seed 002).

    The step really runs: call this on a model you are about to train anyway.
    """
    layers = bn_layers.keras_leaf_layers(model)
    batch_norms = bn_layers.keras_layers(model)
    before = _values(model.weights)
    train_step(*args, **kwargs)
    after = _values(model.weights)
    moved = {key for key, value in before.items() if not np.array_equal(value, after[key])}
    trainable = {id(w) for w in model.trainable_weights}
    followed = {id(v) for bn in batch_norms if bn.trainable
                for v in (bn.moving_mean, bn.moving_variance)}  # statistics meant to move
    stuck = [layer.name for layer in layers
             if any(id(w) in trainable for w in layer.weights)
             and not any(id(w) in moved for w in layer.weights if id(w) in trainable)]
    frozen_moved = [w.path for w in model.weights
                    if id(w) in moved and id(w) not in trainable and id(w) not in followed]
    findings = _weight_findings(layers, stuck, frozen_moved, trainable)
    return findings + _step_batch_norm_findings(model, batch_norms, moved, set(stuck))


def _weight_findings(layers, stuck, frozen_moved, trainable):
    findings = []
    recompile = ("if trainable was changed after the model was compiled and trained, call "
                 "model.compile(...) again before training on (the train function keeps "
                 "the trainable set it was traced with); a custom loop: take "
                 "model.trainable_variables after the change")
    if stuck:
        with_weights = sum(any(id(w) in trainable for w in layer.weights) for layer in layers)
        findings.append(Finding(
            ERROR, "keras-step-trainable-not-updated", "the train step leaves trainable "
            "layers unchanged", f"after one step {len(stuck)} of {with_weights} layers with "
            f"trainable weights kept all of them: {listed(stuck)}",
            "these layers are trainable but the step does not update them: their weights "
            "stay the pretrained (or initial) values however long you train", recompile))
    if frozen_moved:
        findings.append(Finding(
            ERROR, "keras-step-frozen-updated", "the train step changes frozen weights",
            f"after one step {len(frozen_moved)} weights outside model.trainable_weights "
            f"changed: {listed(frozen_moved)}",
            "weights you froze (and the moving statistics of BatchNorm layers set "
            "trainable=False) still train: the step was built while they were trainable",
            recompile))
    return findings


def _step_batch_norm_findings(model, batch_norms, moved, stuck):
    live = [bn for bn in batch_norms if bn.trainable]
    if not live:
        return [Finding(NOTE, "keras-step-no-trainable-bn", "no trainable BatchNorm layers",
                        f"{model.name} has {len(batch_norms)} BatchNormalization layers, "
                        "none trainable", "BatchNorm is frozen: its statistics are not "
                        "expected to move", "nothing to do")]
    still = [bn.name for bn in live if bn.name not in stuck
             and id(bn.moving_mean) not in moved and id(bn.moving_variance) not in moved]
    if still:
        return [Finding(
            ERROR, "keras-step-no-bn-update", "the train step does not update BatchNorm "
            "statistics", f"after one step {len(still)} of {len(live)} trainable "
            f"BatchNormalization layers kept their moving statistics while their "
            f"gamma/beta trained: {listed(still)}",
            "the model was called in inference mode inside the step: BatchNorm used (and "
            "kept) its moving statistics and Dropout dropped nothing, so training and "
            "serving both normalise with values that never saw the data",
            "call model(x, training=True) inside the GradientTape of the train step")]
    if stuck & {bn.name for bn in live}:
        return []  # the stale-step finding covers them
    return [Finding(NOTE, "keras-step-updates-bn", "the train step updates BatchNorm",
                    f"all {len(live)} trainable BatchNormalization layers changed their "
                    "moving statistics in one step", "the statistics follow the data",
                    "nothing to do")]


def check(model, recorded=None):
    """Findings for a loaded Keras model and what the slimtune.json beside it records
    (a :class:`~slimtune.metadata.RunInfo`, or None)."""
    expected = (recorded and recorded.batch_norm) or BatchNormConfig(None, None, None, None)
    layers = bn_layers.keras_layers(model)
    findings = _nested_findings(model, expected.mode == FROZEN)
    findings += _initial_statistics_findings(model, layers, recorded)
    findings += precision_checks.keras_findings(model)
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


def _initial_statistics_findings(model, layers, recorded):
    """Statistics at 0/1: a warning in general (a model may be untrained), an error in
    the model of a Keras-engine run, where a trainable BatchNorm at 0/1 after training
    means its statistics were never updated."""
    initial = bn_layers.initial(bn_layers.keras_statistics(model))
    if not initial:
        return []
    trained_run = bool(recorded and recorded.engine == metadata.KERAS_ENGINE)
    trainable = {layer.name for layer in layers if layer.trainable}
    never_updated = [name for name in initial if name in trainable] if trained_run else []
    evidence = (f"{len(initial)} of {len(layers)} BatchNormalization layers hold exactly "
                f"mean 0 / variance 1: {listed(initial)}")
    if never_updated:
        return [Finding(
            ERROR, "keras-bn-stats-initial", "BatchNorm moving statistics still at their "
            "initial values after a Keras run", evidence + f"; slimtune.json says a "
            f"Keras-engine run trained this model and {len(never_updated)} of them are "
            "trainable", "their statistics never followed the data: the model was "
            "trained in inference mode (model(x) without training=True) or its statistics "
            "were reset after training, and it serves without normalising",
            "train again with model(x, training=True) inside the GradientTape (slimtune-"
            "train --engine=keras does), or re-estimate them with slimtune-recalibrate")]
    return [Finding(
        WARNING, "keras-bn-stats-initial", "BatchNorm moving statistics at their "
        "initial values", evidence,
        "with training=False these layers do not normalise at all; unless the model was "
        "never trained, the statistics were lost (only trainable weights copied) or "
        "never updated (a custom loop calling model(x) without training=True)",
        "convert from the checkpoint that holds the statistics, or train with "
        "model(x, training=True) inside the GradientTape")]
