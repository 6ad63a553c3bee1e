"""Live checks: run a model form on real images and look at what it does.

Any form ``slimtune.forms`` opens (checkpoint, frozen ``.pb``, SavedModel, ``.keras``)
is a function from images to logits.  In inference mode that function must be pure and
per-example; the doctor's :func:`check_form` asks:

* the same batch twice gives the same logits (else: dropout or another random op);
* an example gives the same logits alone and inside a batch (else: BatchNorm on batch
  statistics, seed 003's "results depend on the batch");
* predictions are not all the same class with near-identical logits (seed 002's
  "every prediction in the batch is the same": BN statistics that do not describe the
  data squash every input to one point).

slimtune-verify's :func:`form_findings` asks of each form it compares, in one line
each and under the doctor's codes where the pitfall is the same: does it answer the
same twice (else the random ops are named), does its graph hold BatchNorm in training
mode, are its moving statistics at their initial 0/1.
"""

import numpy as np

from slimtune import bn_layers, graphs
from slimtune.compare import difference
from slimtune.findings import ERROR, WARNING, Finding, listed

# A class taking this share of predictions on data with at least this many labels'
# worth of images is suspicious when the labels say otherwise.
_SAME_CLASS_SHARE = 0.9


def check_form(form, images, labels=None, rtol=1e-4):
    """Findings for one opened form (``slimtune.forms.Form``) on ``images`` [N,H,W,3]."""
    findings = []
    first = np.asarray(form.run(images))
    again = np.asarray(form.run(images))
    repeat = difference(first, again).max_rel
    if repeat > rtol:
        findings.append(Finding(
            ERROR, "live-nondeterministic", "the same images give different outputs twice",
            f"two runs of {form.kind} {form.path} on {len(images)} images differ by "
            f"{repeat:.3g} (relative to max |logit|)",
            "a random op (dropout) is active at inference: every call answers differently",
            "export or call the model in inference mode (is_training=False / "
            "training=False)"))
    if len(images) > 1:
        alone = np.asarray(form.run(images[:1]))
        shift = difference(first[:1], alone).max_rel
        if shift > rtol and repeat <= rtol:
            findings.append(Finding(
                ERROR, "live-batch-dependent", "an image's output depends on the rest of "
                "its batch", f"image 0 alone vs inside a batch of {len(images)}: logits differ "
                f"by {shift:.3g} (relative) in {form.kind} {form.path}",
                "BatchNorm normalises with the batch's own statistics (training mode) at "
                "inference: results change with batch size and composition, and a batch of "
                "one is garbage",
                "export with is_training=False, or call the Keras model with training=False"))
    predicted = first.argmax(axis=1)
    counts = np.bincount(predicted, minlength=first.shape[1])
    share = counts.max() / len(predicted)
    label_share = (np.bincount(labels).max() / len(labels)) if labels is not None else 0.0
    spread = float(np.std(first, axis=0).mean())
    if len(images) >= 8 and share >= _SAME_CLASS_SHARE and label_share < _SAME_CLASS_SHARE:
        findings.append(Finding(
            WARNING, "live-same-prediction", "almost every image gets the same class",
            f"class {counts.argmax()} for {share:.0%} of {len(images)} images (the labels' "
            f"largest class is {label_share:.0%}); logit spread across images "
            f"{spread:.3g}", "the network maps different images to nearly the same point: "
            "typically BatchNorm moving statistics that do not describe the data (never "
            "updated, or a decay too slow), or inputs preprocessed differently than in "
            "training", "check the other findings; re-estimate the statistics or match "
            "the training preprocessing"))
    return findings


def form_findings(form, role, images, first_logits, rtol=1e-5):
    """What can be seen wrong in one form by itself (``role``: reference or candidate),
    given its logits ``first_logits`` for ``images``."""
    found = []
    if not form.deterministic_by_construction:
        again = form.run(images)
        repeat = difference(first_logits, again)
        if repeat.max_rel > rtol:
            found.append(_nondeterministic(form, role, repeat))
    if form.graph_def is not None:
        training = graphs.training_batch_norms(form.graph_def, form.outputs)
        if training:
            found.append(Finding(
                ERROR, "serving-bn-training-mode",
                "BatchNorm in training mode in a serving graph",
                f"the {role} has {len(training)} BatchNorm ops with is_training=True "
                f"({listed(training)})", "each image is normalised with its batch's "
                "statistics, not the moving ones", "export with is_training=False",
                label="BN IN TRAINING MODE"))
    if form.bn_statistics is not None:
        stats = form.bn_statistics()
        initial = bn_layers.initial(stats)
        if initial:
            found.append(Finding(
                WARNING, "bn-stats-initial", "BatchNorm moving statistics at 0/1",
                f"the {role}'s BatchNorm moving statistics are at their initial values "
                f"(mean 0, variance 1) in {len(initial)} of {len(stats)} layers "
                f"({listed(initial)})", "they were never updated in training or were lost "
                "in conversion", "train with the UPDATE_OPS dependency (slimtune-train does) "
                "or convert the checkpoint that holds them", label="BN STATS AT 0/1"))
    return found


def _nondeterministic(form, role, repeat):
    randoms = graphs.random_ops(form.graph_def, form.outputs) if form.graph_def else []
    cause = (f"it depends on random ops ({listed(randoms)}): dropout left active, "
             "exported with is_training=True" if randoms else
             "dropout or another random op is active at inference")
    return Finding(
        ERROR, "live-nondeterministic", "the same images give different outputs twice",
        f"the {role} gives different outputs for the same images on two runs (max abs "
        f"{repeat.max_abs:.3g})", cause, "export the graph with is_training=False "
        "(slimtune-export does)", label="NONDETERMINISTIC")
