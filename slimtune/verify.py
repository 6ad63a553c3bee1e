"""slimtune-verify: compare any two forms of a model on the same inputs, and find the
first layer that differs.

Each form (a slim checkpoint, a frozen ``.pb``, a SavedModel, a ``.keras``; see
``slimtune.forms``) runs as a function from preprocessed images to logits, so a pair
compares what the user actually ships.  ``slimtune.compare`` measures the difference
class by class and names a class misalignment in words.

Numbers say *that* two forms differ; findings (``slimtune.checks.data_checks``) say
*why* where the cause can be seen: a form that answers differently when asked twice
(dropout left active), BatchNorm ops in training mode in a served graph, moving
statistics at their initial 0/1 values.  ``--layerwise`` compares a checkpoint's end
points with a converted ``.keras`` model's layers and names the first beyond ``rtol``.
"""

import dataclasses
from typing import Optional, Sequence

import numpy as np

from slimtune import checkpoint, compare, files, forms, probe, registry, slim_run, sources
from slimtune.checks import data_checks
from slimtune.data import pipeline
from slimtune.errors import UnusableInput
from slimtune.findings import ERROR, Finding
from slimtune.progress import log as _log


def check(reference, candidate, images, atol=1e-4, rtol=1e-5, reference_logits=None):
    """Run two opened forms on ``images``: a :class:`~slimtune.compare.Comparison` that
    includes each form's findings.

    ``reference_logits`` skips running the reference again when several candidates are
    checked against one reference.
    """
    ref = reference.run(images) if reference_logits is None else reference_logits
    cand = candidate.run(images)
    report = compare.compare(*comparable(reference, ref, candidate, cand), atol, rtol)
    report.add(_non_finite_findings(((reference, "reference", ref), (candidate, "candidate",
                                                                      cand)), images))
    report.add(data_checks.form_findings(reference, "reference", images, ref, rtol)
               + data_checks.form_findings(candidate, "candidate", images, cand, rtol))
    return report


def comparable(reference, ref, candidate, cand):
    """``(ref, cand)`` of one kind: when one form gives probabilities (a graph frozen at
    its Softmax with no logits behind it, see ``slimtune.graph_outputs``), the other's
    logits go through a softmax."""
    if reference.probabilities == candidate.probabilities:
        return ref, cand
    if reference.probabilities:
        return ref, _softmax(cand)
    return _softmax(ref), cand


def _softmax(logits):
    logits = np.asarray(logits, np.float64)
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def output_notes(pairs):
    """One line per form whose output was made comparable (``pairs``: ``(role,
    form)``): walked back to logits, compared as probabilities, squeezed."""
    return [f"{role} output: {form.output_note()}" for role, form in pairs
            if form.output_note()]


def _non_finite_findings(sides, images):
    """A finding when one form's logits hold NaN/inf and the other's do not: that, not a
    difference of settings, is why they differ.  ``sides``: ``(form, role, logits)``."""
    finite = {role: bool(np.all(np.isfinite(logits))) for _, role, logits in sides}
    if all(finite.values()) or not any(finite.values()):
        return []
    form, role, logits = next(side for side in sides if not finite[side[1]])
    other = next(r for r in finite if r != role)
    where = f"the {role} ({form.kind}) computes non-finite logits (NaN/inf)"
    if form.kind == "keras":
        spec = registry.get(form.model_name) if form.model_name else None
        where = probe.keras_only_non_finite(sources.load_keras(form.path), logits, images,
                                            spec).replace("the Keras model", f"the {role}", 1)
    return [Finding(ERROR, "non-finite", "one form computes NaN/inf", where,
                    f"the {other} computes finite logits on the same images, so the forms "
                    "differ in what they compute there, not in a setting",
                    f"look at that layer and its weights in the {role}")]


def inputs(image_files: Sequence[str] = (), random=0, seed=0, size=224, preprocessing="inception",
           dataset=None, channels=3):
    """The images both forms see: files (preprocessed for eval), random, or a split;
    ``channels`` 1: converted to grayscale (models trained with ``--use_grayscale``)."""
    batches, gray = [], channels == 1
    if image_files:
        batches.append(pipeline.load_images(list(image_files), preprocessing, size, gray))
    if dataset:
        name, directory, split_name, limit = dataset
        batches.append(pipeline.load_eval_arrays(name, directory, split_name, preprocessing,
                                                 size, limit, grayscale=gray)[0])
    if random:
        batches.append(probe.random_images(random, size, seed, channels))
    if not batches:
        raise UnusableInput("no inputs: pass --images, --dataset_dir/--dataset_name, or "
                            "--random N")
    return np.concatenate(batches)


def layerwise(checkpoint_path, keras_path, images, model_name=None, rtol=1e-5):
    """Compare slim end points with the matching Keras layers, in network order.

    Returns ``(rows, first_bad)``: rows of ``(slim key, keras layer, Difference)`` and the
    first row beyond ``rtol`` (``None`` when all agree).
    """
    import keras

    ref = forms.open_checkpoint(checkpoint_path, model_name)
    run, _ = forms.checkpoint_run(ref.path, ref.model_name)
    spec, bn = run.spec, run.batch_norm
    num_classes = checkpoint.logits_classes(spec, checkpoint.read_shapes(ref.path), ref.path)
    points = spec.end_points()
    model = sources.load_keras(keras_path)
    missing = [name for _, name in points if name not in {l.name for l in model.layers}]
    if missing:
        raise UnusableInput(f"{keras_path} is not a slimtune conversion of {spec.name}: it has "
                            f"no layer {missing[0]}")
    _, slim_points = slim_run.slim_outputs(spec, ref.path, images, num_classes, bn,
                                           [key for key, _ in points])
    outputs = keras.Model(model.input, [model.get_layer(n).output for _, n in points])(
        images, training=False)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    rows, first_bad = [], None
    for (key, name), value in zip(points, outputs):
        diff = compare.difference(slim_points[key], np.asarray(value))
        rows.append((key, name, diff))
        if first_bad is None and diff.max_rel > rtol:
            first_bad = rows[-1]
    return rows, first_bad


@dataclasses.dataclass
class VerifyConfig:
    """What ``slimtune-verify`` takes; field names are its flag names."""

    reference: str
    candidate: str
    model_name: Optional[str] = None
    images: Sequence[str] = ()
    dataset_name: Optional[str] = None
    dataset_dir: Optional[str] = None
    dataset_split_name: str = "validation"
    max_images: int = 100
    random: int = 0
    seed: int = 0
    image_size: Optional[int] = None
    preprocessing_name: Optional[str] = None
    atol: float = 1e-4
    rtol: float = 1e-5
    layerwise: bool = False
    input_node: Optional[str] = None
    output_node: Optional[str] = None
    signature: str = "serving_default"
    report_json: Optional[str] = None


def verify(cfg: VerifyConfig, log=_log):
    """Open both forms, compare them on the chosen inputs, print the report.

    Returns the result dict (also written to ``cfg.report_json``); ``result["passed"]``
    is the verdict.
    """
    ref, cand = (forms.open_form(path, cfg.model_name, cfg.input_node, cfg.output_node,
                           cfg.signature) for path in (cfg.reference, cfg.candidate))
    size, preprocessing = forms.input_settings(cfg, (ref, cand))
    dataset = ((cfg.dataset_name, cfg.dataset_dir, cfg.dataset_split_name, cfg.max_images)
               if cfg.dataset_name or cfg.dataset_dir else None)
    channels = forms.input_channels((ref, cand))
    images = inputs(cfg.images, cfg.random, cfg.seed, size, preprocessing, dataset, channels)
    log(f"reference {ref.kind} {ref.path}\ncandidate {cand.kind} {cand.path}\n"
        f"{len(images)} images at {size}px, {preprocessing} preprocessing"
        + (" (grayscale)" if channels == 1 else ""))
    notes = output_notes((("reference", ref), ("candidate", cand)))
    for line in notes:
        log(line)
    report = check(ref, cand, images, cfg.atol, cfg.rtol)
    for line in report.lines():
        log(line)
    result = {"reference": ref.path, "candidate": cand.path, "output_notes": notes,
              **report.as_dict()}
    if cfg.layerwise:
        result.update(_layerwise_report(cfg, images, log))
    if cfg.report_json:
        files.write_json(cfg.report_json, result, indent=2)
    return result


def _layerwise_report(cfg, images, log):
    rows, bad = layerwise(cfg.reference, cfg.candidate, images, cfg.model_name, cfg.rtol)
    log(f"\n{'end point':<55} {'max rel':>10}")
    for row in rows:
        mark = "  <- first beyond --rtol" if row is bad else ""
        log(f"{row[0]:<55} {row[2].max_rel:>10.3g}{mark}")
    log(f"first divergence: {bad[0]} (Keras layer {bad[1]}): {bad[2].line()}" if bad
        else "every end point within --rtol")
    return {"layerwise": [{"end_point": k, "keras_layer": n, "max_rel": d.max_rel}
                          for k, n, d in rows],
            "first_divergence": bad[0] if bad else None}
