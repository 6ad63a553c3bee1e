"""Checkpoint checks: are the BatchNorm moving statistics what a served model needs?

Read from the tensors alone (plus the run's slimtune.json when there is one):

* statistics still exactly at their initial values (mean 0, variance 1) after training
  steps: the update ops never ran (seed 001's bug);
* ``decay ** steps`` still large: the moving averages are still mostly their starting
  values (zeros/ones from scratch, or the pretrained statistics when fine-tuning),
  so eval-mode accuracy trails train-mode accuracy (seed 001's second problem);
* gamma/beta without moving statistics: the checkpoint cannot be evaluated or converted.

The repair for the first two, short of retraining, is ``slimtune-recalibrate``; a
checkpoint it wrote (recorded in slimtune.json) is no longer judged by the decay.
"""

import numpy as np

from slimtune import batch_statistics, graphs
from slimtune.doctor.findings import ERROR, NOTE, WARNING, Finding, listed

# Above this weight of the starting values, the moving statistics do not yet describe
# the data: 0.1 means 90% of the average comes from training batches.
STALE_WEIGHT = 0.1


_BN_SCOPE_NAMES = ("batchnorm", "batch_norm", "batch_normalization", "bn", "preact",
                   "postnorm")


def batch_norm_scopes(names):
    """``{scope: set of variable kinds}`` of every BatchNorm in a list of names.

    A scope with moving statistics is a BatchNorm; one with only gamma/beta counts when
    its name says so (slim's ``BatchNorm``, ResNet v2's ``preact``/``postnorm``, Keras'
    ``batch_normalization``), which keeps LayerNorm's gamma/beta out.
    """
    scopes = {}
    for name in names:
        scope, _, kind = name.rpartition("/")
        last = scope.rsplit("/", 1)[-1].lower()
        if kind in ("moving_mean", "moving_variance") or (
                kind in ("gamma", "beta") and last.startswith(_BN_SCOPE_NAMES)):
            scopes.setdefault(scope, set()).add(kind)
    return scopes


def _global_step(tensors):
    for name in ("global_step", "global_step/.ATTRIBUTES/VARIABLE_VALUE"):
        if name in tensors:
            return int(np.asarray(tensors[name]))
    return None


def check(tensors, meta=None, default_decay=None, prefix=None, **command_flags):
    """Findings for ``{name: array}`` (a checkpoint's tensors) and its metadata dict.

    ``prefix`` and ``command_flags`` (model_name, dataset_name, dataset_dir, image_size)
    fill in the ``slimtune-recalibrate`` command the fixes offer.
    """
    meta = meta or {}
    findings = []
    repair = batch_statistics.recalibrate_command(prefix or "CHECKPOINT", meta, **command_flags)
    recalibrated = batch_statistics.recalibration_of(meta, prefix) if prefix else None
    scopes = batch_norm_scopes(tensors)
    if not scopes:
        return [Finding(NOTE, "no-batch-norm", "no BatchNorm variables in the checkpoint",
                        f"{len(tensors)} tensors, none named */BatchNorm/moving_mean",
                        "the BatchNorm checks do not apply", "nothing to do")]
    step = _global_step(tensors)
    missing = sorted(s for s, kinds in scopes.items()
                     if kinds & {"gamma", "beta"} and not {"moving_mean", "moving_variance"} <= kinds)
    if missing:
        findings.append(Finding(
            ERROR, "bn-stats-missing", "BatchNorm layers without moving statistics",
            f"{len(missing)} of {len(scopes)} BatchNorm scopes have gamma/beta but no "
            f"moving_mean/moving_variance: {listed(missing)}",
            "inference mode normalises with the moving statistics; without them the "
            "checkpoint cannot be evaluated, exported or converted faithfully",
            "save every global variable (tf.compat.v1.train.Saver() with no var_list, or "
            "slim.get_variables_to_restore()), not just the trainable ones"))
    complete = [s for s, kinds in scopes.items() if {"moving_mean", "moving_variance"} <= kinds]
    initial = graphs.initial_statistics(
        {s: (tensors[s + "/moving_mean"], tensors[s + "/moving_variance"]) for s in complete})
    bn = meta.get("batch_norm") or {}
    frozen = bn.get("mode") == "frozen"
    if initial and step and frozen:
        findings.append(Finding(
            NOTE, "bn-frozen-at-initial", "frozen BatchNorm with statistics at 0/1",
            f"{len(initial)} layers hold mean 0 / variance 1 and the run froze BatchNorm",
            "training and inference both normalise with 0/1, so BatchNorm is only gamma/"
            "beta here: consistent, but the layers do not normalise", "nothing to do "
            "unless you meant to start from a pretrained checkpoint"))
    elif initial and step:
        findings.append(Finding(
            ERROR, "bn-stats-never-updated", "BatchNorm moving statistics never updated",
            f"global_step {step}, and {len(initial)} of {len(complete)} BatchNorm layers "
            f"still hold exactly mean 0 / variance 1: {listed(initial)}",
            "training normalised with batch statistics but the moving averages that "
            "is_training=False uses were never updated, so eval/served accuracy is near "
            "chance while training looks fine",
            "make the train op depend on tf.compat.v1.GraphKeys.UPDATE_OPS (slimtune-train "
            "and slim.learning.create_train_op do this) for the next run; for these weights, "
            f"re-estimate the statistics on your training data: {repair}"))
    decay = bn.get("decay", default_decay)
    if recalibrated and not initial:
        findings.append(Finding(
            NOTE, "bn-recalibrated", "BatchNorm statistics re-estimated for these weights",
            f"slimtune-recalibrate measured {recalibrated.get('images')} images of "
            f"{(recalibrated.get('dataset') or {}).get('name')}/"
            f"{(recalibrated.get('dataset') or {}).get('split')} in "
            f"{recalibrated.get('num_batches')} batches "
            f"({recalibrated.get('preprocessing_mode')} preprocessing) on "
            f"{recalibrated.get('date')}",
            "the moving statistics are exact averages for the final weights, so the "
            "training decay no longer matters", "nothing to do"))
    elif step and decay and not frozen and not initial:
        weight = float(decay) ** step
        start = ("the pretrained statistics" if meta.get("checkpoint_path")
                 else "their initial values (0 and 1)")
        if weight > STALE_WEIGHT:
            needed = int(np.ceil(np.log(STALE_WEIGHT) / np.log(float(decay))))
            findings.append(Finding(
                WARNING, "bn-decay-too-slow", "BatchNorm decay too slow for the steps trained",
                f"decay {decay:g} after {step} steps: decay**steps = {weight:.2f}, so the "
                f"moving statistics are still {weight:.0%} {start}",
                "eval-mode (is_training=False) accuracy trails train-mode accuracy until the "
                "averages catch up; small datasets and short fine-tunes hit this",
                f"re-estimate the statistics for these weights: {repair}; next time train "
                f"with --batch_norm_decay={_suggest(step)} (or at least {needed} steps at "
                f"decay {decay:g}) or add --precise_bn_batches=50 to slimtune-train"))
        else:
            findings.append(Finding(
                NOTE, "bn-decay-ok", "BatchNorm moving averages have converged",
                f"decay {decay:g} after {step} steps: {start} weigh {weight:.2g}",
                "the moving statistics describe the training data",
                "nothing to do"))
    return findings


def _suggest(step):
    """A decay whose averages are 90% data after ``step`` steps, rounded down to a
    familiar value."""
    exact = STALE_WEIGHT ** (1.0 / max(step, 1))
    for value in (0.999, 0.997, 0.99, 0.98, 0.95, 0.9, 0.8, 0.5):
        if value <= exact:
            return value
    return 0.5
