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

import collections
import os

import numpy as np

from slimtune import bn_layers, checkpoint, forms, metadata, registry, sources
from slimtune.checks import graph_checks
from slimtune.checks.repair import recalibrate_command
from slimtune.errors import BrokenCheckpoint
from slimtune.findings import ERROR, NOTE, WARNING, Finding, Report, listed
from slimtune.nets.batch_norm import FROZEN

# Above this weight of the starting values, the moving statistics do not yet describe
# the data: 0.1 means 90% of the average comes from training batches.
STALE_WEIGHT = 0.1
BROKEN = "checkpoint-broken"  # the code of broken_values' finding


def checkpoint_report(path, model_name=None, report=None, **data):
    """The checks of the checkpoint at ``path`` (a prefix or a train dir) and of the
    training MetaGraph beside it, added to ``report`` (a new one by default); what
    slimtune-train runs at its end.  ``data``: dataset_name, dataset_dir, image_size, for
    the repair command the fixes offer."""
    report = report if report is not None else Report()
    prefix = sources.checkpoint_prefix(path)
    recorded = metadata.recorded(prefix)
    graph_path = prefix + ".meta"
    meta_graph = forms.read_meta_graph(graph_path) if os.path.exists(graph_path) else None
    # The decay actually used: the run's metadata, else the training graph's constants,
    # else the architecture's published value.
    decay = (meta_graph and _graph_decay(meta_graph)) or _default_decay(recorded, model_name)
    report.checked.append(f"checkpoint {prefix}")
    tensors = checkpoint.read_tensors(prefix)
    report.add(broken_values(prefix, tensors), prefix)
    report.add(check(tensors, recorded, decay, prefix, model_name=model_name, **data), prefix)
    if meta_graph:
        report.checked.append(f"training graph {graph_path}")
        report.add(graph_checks.check_training_graph(meta_graph), graph_path)
    return report


def broken_values(prefix, tensors):
    """``[Finding]`` of a tensor no working network holds (a negative moving variance,
    NaN, a magnitude that overflows float32: ``checkpoint_values``), or ``[]``."""
    try:
        checkpoint.refuse_broken(prefix, tensors=tensors)
    except BrokenCheckpoint as e:
        found = e.problem
        return [Finding(ERROR, BROKEN, "a tensor no working network holds", found.seen,
                        found.means + ": evaluation, export, conversion and serving compute "
                        "NaN or garbage", found.fix)]
    return []


def _default_decay(recorded, model_name):
    name = model_name or recorded.model_name
    if name:
        spec = registry.get(name)
        return spec.batch_norm.decay if spec.batch_norm else None
    return None


def _graph_decay(meta_graph):
    """The most common BN decay in a training MetaGraphDef, or None."""
    decays = graph_checks.batch_norm_decays(meta_graph.graph_def)
    if not decays:
        return None
    # float32 constants: 0.9997 is stored as 0.99970001
    return collections.Counter(round(d, 6) for d in decays.values()).most_common(1)[0][0]


def _global_step(tensors):
    for name in ("global_step", "global_step/.ATTRIBUTES/VARIABLE_VALUE"):
        if name in tensors:
            return int(np.asarray(tensors[name]))
    return None


def check(tensors, recorded=None, default_decay=None, prefix=None, **command_flags):
    """Findings for ``{name: array}`` (a checkpoint's tensors) and what its slimtune.json
    records (a :class:`~slimtune.metadata.RunInfo`, or None).

    ``prefix`` and ``command_flags`` (model_name, dataset_name, dataset_dir, image_size)
    fill in the ``slimtune-recalibrate`` command the fixes offer.
    """
    recorded = recorded or metadata.RunInfo()
    repair = recalibrate_command(prefix or "CHECKPOINT", recorded, **command_flags)
    scopes = bn_layers.scopes(tensors)
    if not scopes:
        return [Finding(NOTE, "no-batch-norm", "no BatchNorm variables in the checkpoint",
                        f"{len(tensors)} tensors, none named */BatchNorm/moving_mean",
                        "the BatchNorm checks do not apply", "nothing to do")]
    step = _global_step(tensors)
    statistics = bn_layers.tensor_statistics(tensors)
    initial = bn_layers.initial(statistics)
    bn = recorded.batch_norm
    frozen = bool(bn) and bn.mode == FROZEN
    findings = _missing_statistics(scopes)
    if initial:
        if step:
            findings.append(_initial_statistics(initial, len(statistics), step, frozen,
                                                repair))
        return findings
    recalibrated = metadata.recalibration_of(recorded, prefix) if prefix else None
    decay = bn.decay if bn and bn.decay is not None else default_decay
    if recalibrated:
        findings.append(_recalibrated(recalibrated))
    elif step and decay and not frozen:
        findings.append(_decay_finding(float(decay), step, recorded, repair))
    return findings


def _missing_statistics(scopes):
    missing = sorted(s for s, kinds in scopes.items()
                     if kinds & {"gamma", "beta"} and not {"moving_mean", "moving_variance"} <= kinds)
    if not missing:
        return []
    return [Finding(
        ERROR, "bn-stats-missing", "BatchNorm layers without moving statistics",
        f"{len(missing)} of {len(scopes)} BatchNorm scopes have gamma/beta but no "
        f"moving_mean/moving_variance: {listed(missing)}",
        "inference mode normalises with the moving statistics; without them the "
        "checkpoint cannot be evaluated, exported or converted faithfully",
        "save every global variable (tf.compat.v1.train.Saver() with no var_list, or "
        "slim.get_variables_to_restore()), not just the trainable ones")]


def _initial_statistics(initial, complete, step, frozen, repair):
    if frozen:
        return Finding(
            NOTE, "bn-frozen-at-initial", "frozen BatchNorm with statistics at 0/1",
            f"{len(initial)} layers hold mean 0 / variance 1 and the run froze BatchNorm",
            "training and inference both normalise with 0/1, so BatchNorm is only gamma/"
            "beta here: consistent, but the layers do not normalise", "nothing to do "
            "unless you meant to start from a pretrained checkpoint")
    return Finding(
        ERROR, "bn-stats-never-updated", "BatchNorm moving statistics never updated",
        f"global_step {step}, and {len(initial)} of {complete} BatchNorm layers "
        f"still hold exactly mean 0 / variance 1: {listed(initial)}",
        "training normalised with batch statistics but the moving averages that "
        "is_training=False uses were never updated, so eval/served accuracy is near "
        "chance while training looks fine",
        "make the train op depend on tf.compat.v1.GraphKeys.UPDATE_OPS (slimtune-train "
        "and slim.learning.create_train_op do this) for the next run; for these weights, "
        f"re-estimate the statistics on your training data: {repair}")


def _recalibrated(record):
    dataset = record.get("dataset") or {}
    return Finding(
        NOTE, "bn-recalibrated", "BatchNorm statistics re-estimated for these weights",
        f"slimtune-recalibrate measured {record.get('images')} images of "
        f"{dataset.get('name')}/{dataset.get('split')} in {record.get('num_batches')} "
        f"batches ({record.get('preprocessing_mode')} preprocessing) on {record.get('date')}",
        "the moving statistics are exact averages for the final weights, so the "
        "training decay no longer matters", "nothing to do")


def _decay_finding(decay, step, recorded, repair):
    """Whether ``decay ** step`` still weighs the starting statistics too much."""
    weight = decay ** step
    start = ("the pretrained statistics" if recorded.warm_start
             else "their initial values (0 and 1)")
    if weight <= STALE_WEIGHT:
        return Finding(NOTE, "bn-decay-ok", "BatchNorm moving averages have converged",
                       f"decay {decay:g} after {step} steps: {start} weigh {weight:.2g}",
                       "the moving statistics describe the training data", "nothing to do")
    needed = int(np.ceil(np.log(STALE_WEIGHT) / np.log(decay)))
    return Finding(
        WARNING, "bn-decay-too-slow", "BatchNorm decay too slow for the steps trained",
        f"decay {decay:g} after {step} steps: decay**steps = {weight:.2f}, so the "
        f"moving statistics are still {weight:.0%} {start}",
        "eval-mode (is_training=False) accuracy trails train-mode accuracy until the "
        "averages catch up; small datasets and short fine-tunes hit this",
        f"re-estimate the statistics for these weights: {repair}; next time train "
        f"with --batch_norm_decay={_suggest(step)} (or at least {needed} steps at "
        f"decay {decay:g}) or add --precise_bn_batches=50 to slimtune-train")


def _suggest(step):
    """A decay whose averages are 90% data after ``step`` steps, rounded down to a
    familiar value."""
    exact = STALE_WEIGHT ** (1.0 / max(step, 1))
    for value in (0.999, 0.997, 0.99, 0.98, 0.95, 0.9, 0.8, 0.5):
        if value <= exact:
            return value
    return 0.5
