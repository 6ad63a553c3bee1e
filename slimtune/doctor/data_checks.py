"""Live checks: run a model form on real images and look at what it does.

Any form slimtune-verify opens (checkpoint, frozen ``.pb``, SavedModel, ``.keras``) is
a function from images to logits.  In inference mode that function must be pure and
per-example:

* the same batch twice gives the same logits (else: dropout or another random op);
* an example gives the same logits alone and inside a batch (else: BatchNorm on batch
  statistics, seed 003's "results depend on the batch");
* predictions are not all the same class with near-identical logits (seed 002's
  "every prediction in the batch is the same": BN statistics that do not describe the
  data squash every input to one point).
"""

import numpy as np

from slimtune.compare import difference
from slimtune.doctor.findings import ERROR, WARNING, Finding

# A class taking this share of predictions on data with at least this many labels'
# worth of images is suspicious when the labels say otherwise.
_SAME_CLASS_SHARE = 0.9


def check_form(form, images, labels=None, rtol=1e-4):
    """Findings for one opened form (``slimtune.verify.Form``) on ``images`` [N,H,W,3]."""
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
