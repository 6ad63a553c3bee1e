"""slimtune-doctor: name the BatchNorm and Dropout pitfalls behind "eval accuracy collapsed"
(and mixed precision's: half-precision statistics, no loss scale, a loss scale at its
floor).

``diagnose(DoctorConfig(...))`` examines whatever it is given (a train dir, checkpoint,
MetaGraph, frozen graph, SavedModel, Keras model), runs the checks of
``slimtune.checks`` that apply to each, and returns a :class:`~slimtune.findings.Report`
of findings, each with its evidence, meaning and fix.  With data, every model form is
also run on it.  ``check_train_step(model, step, *batch)`` runs one step of the user's
own Keras training (their loop's step function, or ``model.fit`` on one batch) and
compares what it changed with what the model says it trains.
"""

import dataclasses
import os
from typing import Optional, Sequence

from slimtune import checkpoint, compat, forms, metadata, probe, sources
from slimtune.checks import (checkpoint_checks, data_checks, graph_checks, keras_checks,
                             precision_checks, statistics_checks)
from slimtune.checks.repair import recalibrate_command
# The doctor's public API for users' own training loops.
from slimtune.checks.keras_checks import check_train_step  # noqa: F401
from slimtune.data import pipeline
from slimtune.errors import BrokenCheckpoint, SlimtuneError, UnusableInput, UsageError
from slimtune.findings import ERROR, NOTE, Finding, Report


@dataclasses.dataclass
class DoctorConfig:
    """What ``slimtune-doctor`` takes; field names are its flag names."""

    train_dir: Optional[str] = None
    checkpoint_path: Optional[str] = None
    graph: Optional[str] = None  # a MetaGraph (.meta) or a frozen GraphDef (.pb)
    saved_model: Optional[str] = None
    keras_model: Optional[str] = None
    model_name: Optional[str] = None  # for the architecture's default BN decay
    # Data for the live checks (any one): a dataset split, or image files.
    dataset_name: Optional[str] = None
    dataset_dir: Optional[str] = None
    dataset_split_name: str = "validation"
    images: Sequence[str] = ()
    max_images: int = 64
    image_size: Optional[int] = None
    preprocessing_name: Optional[str] = None
    report_json: Optional[str] = None


def diagnose(cfg: DoctorConfig):
    """The report for every input in ``cfg``; unreadable input is :class:`UnusableInput`
    (exit code 2, since 1 means "errors found")."""
    try:
        return _diagnose(cfg)
    except UnusableInput:
        raise
    except SlimtuneError as e:
        raise UnusableInput(str(e)) from None


def _diagnose(cfg):
    compat.apply()
    if not any((cfg.train_dir, cfg.checkpoint_path, cfg.graph, cfg.saved_model,
                cfg.keras_model)):
        raise UsageError("nothing to examine: pass --train_dir, --checkpoint_path, --graph, "
                         "--saved_model or --keras_model")
    report = Report()
    for path in (cfg.train_dir, cfg.checkpoint_path):
        if path and sources.keras_path(path):  # a Keras-engine run, a conversion
            _check_keras(report, sources.keras_path(path))
        elif path:
            checkpoint_checks.checkpoint_report(path, cfg.model_name, report,
                                                **_data_flags(cfg))
    if cfg.train_dir and os.path.isdir(cfg.train_dir):  # a float16 run's loss scale
        report.add(precision_checks.loss_scale_findings(cfg.train_dir), cfg.train_dir)
    if cfg.graph:
        _check_graph(report, cfg.graph)
    if cfg.saved_model:
        _check_saved_model(report, cfg.saved_model)
    if cfg.keras_model:
        _check_keras(report, cfg.keras_model)
    if cfg.dataset_name or cfg.dataset_dir or cfg.images:
        _live_checks(report, cfg)
    return report


def _check_graph(report, path):
    if not os.path.isfile(path):
        raise UsageError(f"--graph={path} does not exist: pass a .meta MetaGraph or a frozen .pb")
    if path.endswith(".meta"):
        report.checked.append(f"training graph {path}")
        report.add(graph_checks.check_training_graph(forms.read_meta_graph(path)), path)
        return
    graph_def = forms.read_graph_def(path)
    report.checked.append(f"serving graph {path}")
    serving = metadata.recorded_beside(path).serving
    report.add(graph_checks.check_serving_graph(graph_def, serving and serving.output_nodes),
               path)


def _check_saved_model(report, path):
    proto_path = os.path.join(path, "saved_model.pb")
    if not os.path.isfile(proto_path):
        raise UsageError(f"--saved_model={path} has no saved_model.pb: pass a SavedModel "
                         "directory")
    saved = compat.read_saved_model_proto(proto_path)
    for meta_graph in saved.meta_graphs:
        for key, signature in meta_graph.signature_def.items():
            if key.startswith("__"):
                continue
            outputs = [t.name.split(":")[0] for t in signature.outputs.values()]
            report.checked.append(f"SavedModel {path} signature {key}")
            report.add(graph_checks.check_serving_graph(meta_graph.graph_def, outputs),
                       f"{path} [{key}]")


def _check_keras(report, path):
    model = sources.load_keras(path)
    report.checked.append(f"Keras model {path}")
    report.add(keras_checks.check(model, metadata.recorded(os.path.dirname(path) or ".")),
               path)


def _live_checks(report, cfg):
    """Run every given model form on the data (see ``checks.data_checks``)."""
    paths = [p for p in (cfg.keras_model, cfg.saved_model, cfg.train_dir, cfg.checkpoint_path)
             if p]
    if cfg.graph and not cfg.graph.endswith(".meta"):
        paths.append(cfg.graph)
    if not paths:
        raise UsageError("data was given but no model to run on it: pass --keras_model, "
                         "--saved_model, --graph (.pb), --train_dir or --checkpoint_path")
    opened = [form for form in (_open_live(report, p, cfg) for p in paths) if form]
    if not opened:
        return
    size, preprocessing = forms.input_settings(cfg, opened)
    gray = forms.input_channels(opened) == 1
    if cfg.images:
        images, labels = pipeline.load_images(list(cfg.images), preprocessing, size,
                                              gray), None
    else:
        images, labels = pipeline.load_eval_arrays(cfg.dataset_name, cfg.dataset_dir,
                                                   cfg.dataset_split_name, preprocessing,
                                                   size, cfg.max_images, grayscale=gray)
    for form in opened:
        note = form.output_note()
        report.checked.append(f"{len(images)} images through {form.kind} {form.path}"
                              + (f" ({note})" if note else ""))
        try:
            report.add(data_checks.check_form(form, images, labels), form.path)
            if form.kind == "checkpoint":
                _checkpoint_statistics(report, form, images, labels, _data_flags(cfg))
            elif form.kind == "keras":
                _keras_statistics(report, form.path, images)
        except BrokenCheckpoint as e:
            report.add([_broken_finding(e)], form.path)


def _open_live(report, path, cfg):
    """The form at ``path`` to run on the data, or ``None``: a checkpoint refused for its
    values (already a finding of its static checks, else one now) is not run."""
    try:
        return forms.open_form(path, cfg.model_name)
    except BrokenCheckpoint:
        prefix = sources.checkpoint_prefix(path)
        if not any(f.code == checkpoint_checks.BROKEN and f.source == prefix
                   for f in report.findings):
            report.add(checkpoint_checks.broken_values(prefix, None), prefix)
        return None


def _broken_finding(error):
    return Finding(
        ERROR, "checkpoint-non-finite", "the checkpoint computes NaN/inf",
        f"first non-finite end point {error.end_point}; largest weights {error.weights}",
        "its weights overflowed in training: evaluation, export, conversion and serving "
        "all get NaN, whatever the BatchNorm settings", probe.FIX)


def _data_flags(cfg):
    return {"dataset_name": cfg.dataset_name, "dataset_dir": cfg.dataset_dir,
            "image_size": cfg.image_size}


def _checkpoint_statistics(report, form, images, labels, data):
    """Per-layer statistics and the eval-vs-train gap of a slim checkpoint."""
    run, recorded = forms.checkpoint_run(form.path, form.model_name)
    spec, bn = run.spec, run.batch_norm
    if bn is None:
        return
    num_classes = checkpoint.logits_classes(spec, checkpoint.read_shapes(form.path), form.path)
    if labels is not None:
        labels = labels - run.labels_offset
        if labels.min() < 0 or labels.max() >= num_classes:
            report.add([Finding(
                NOTE, "labels-not-comparable", "accuracy not measured",
                f"the data's labels run {labels.min()}..{labels.max()}; the model has "
                f"{num_classes} classes", "the eval-vs-train gap is judged by agreement "
                "instead", "pass the dataset the model was trained on")], form.path)
            labels = None
    served, batch_logits, layers = statistics_checks.slim_measurements(
        spec, form.path, images, num_classes, bn)
    where = f"{spec.name} {form.path}"
    report.add(statistics_checks.layer_findings(layers, where), form.path)
    repair = recalibrate_command(form.path, recorded, model_name=spec.name, **data)
    report.add(statistics_checks.gap_findings(served, batch_logits, labels, layers, where,
                                              repair), form.path)


def _keras_statistics(report, path, images):
    model = sources.load_keras(path)
    layers = statistics_checks.keras_layer_statistics(model, images)
    if layers is None:
        report.add([Finding(
            NOTE, "keras-stats-not-measured", "per-layer statistics not "
            "measured", "the BatchNorm layers' inputs are not reachable from the model's "
            "input (nested models)", "the other live checks still ran", "nothing to do")],
            path)
        return
    report.add(statistics_checks.layer_findings(layers, path), path)
