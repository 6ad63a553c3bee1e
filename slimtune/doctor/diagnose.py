"""Run the doctor's checks on whatever inputs were given and collect one report."""

import dataclasses
import os
from typing import Optional, Sequence

from slimtune import batch_statistics, checkpoint, metadata, probe, registry
from slimtune.doctor import (checkpoint_checks, data_checks, graph_checks, keras_checks,
                             statistics_checks)
from slimtune.doctor.findings import ERROR, NOTE, Finding, Report
from slimtune.errors import BrokenCheckpoint, SlimtuneError, UsageError


class UnusableInput(SlimtuneError):
    """An input the doctor cannot read: exit code 2, since 1 means "errors found"."""

    exit_code = 2


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


def _default_decay(meta, model_name):
    name = model_name or meta.get("model_name")
    if name:
        spec = registry.get(name)
        return spec.batch_norm.decay if spec.batch_norm else None
    return None


def _read_meta_graph(path):
    import tensorflow as tf

    meta_graph = tf.compat.v1.MetaGraphDef()
    try:
        with open(path, "rb") as f:
            meta_graph.ParseFromString(f.read())
    except Exception:
        raise UsageError(f"{path} is not a MetaGraphDef (.meta written by a Saver)") from None
    return meta_graph


def _graph_decay(meta_graph):
    """The most common BN decay in a training MetaGraphDef, or None."""
    import collections

    decays = graph_checks.batch_norm_decays(meta_graph.graph_def)
    if not decays:
        return None
    # float32 constants: 0.9997 is stored as 0.99970001
    return collections.Counter(round(d, 6) for d in decays.values()).most_common(1)[0][0]


def checkpoint_report(path, model_name=None):
    """The checkpoint (and its MetaGraph) checks alone: what training runs at its end."""
    report = Report()
    _check_checkpoint(report, path, model_name)
    return report


def _check_checkpoint(report, path, model_name, **data):
    """``data``: the doctor's dataset_name/dataset_dir/image_size, for the repair command."""
    prefix = checkpoint.resolve(path)
    meta = metadata.read(prefix)
    graph_path = prefix + ".meta"
    meta_graph = _read_meta_graph(graph_path) if os.path.exists(graph_path) else None
    # The decay actually used: the run's metadata, else the training graph's constants,
    # else the architecture's published value.
    decay = (meta_graph and _graph_decay(meta_graph)) or _default_decay(meta, model_name)
    report.checked.append(f"checkpoint {prefix}")
    report.add(checkpoint_checks.check(checkpoint.read_tensors(prefix), meta, decay, prefix,
                                       model_name=model_name, **data), prefix)
    if meta_graph:
        _check_training_graph(report, graph_path, meta_graph)


def _check_training_graph(report, path, meta_graph):
    report.checked.append(f"training graph {path}")
    report.add(graph_checks.check_training_graph(meta_graph), path)


def _check_graph(report, path):
    import tensorflow as tf

    if not os.path.isfile(path):
        raise UsageError(f"--graph={path} does not exist: pass a .meta MetaGraph or a frozen .pb")
    if path.endswith(".meta"):
        _check_training_graph(report, path, _read_meta_graph(path))
        return
    from slimtune.verify import sidecar

    graph_def = tf.compat.v1.GraphDef()
    try:
        with open(path, "rb") as f:
            graph_def.ParseFromString(f.read())
    except Exception:
        raise UsageError(f"{path} is not a frozen GraphDef (.pb)") from None
    side = sidecar(path)
    report.checked.append(f"serving graph {path}")
    report.add(graph_checks.check_serving_graph(graph_def, side.get("output_nodes")), path)


def _check_saved_model(report, path):
    from tensorflow.core.protobuf import saved_model_pb2

    proto_path = os.path.join(path, "saved_model.pb")
    if not os.path.isfile(proto_path):
        raise UsageError(f"--saved_model={path} has no saved_model.pb: pass a SavedModel "
                         "directory")
    saved = saved_model_pb2.SavedModel()
    with open(proto_path, "rb") as f:
        saved.ParseFromString(f.read())
    for meta_graph in saved.meta_graphs:
        for key, signature in meta_graph.signature_def.items():
            if key.startswith("__"):
                continue
            outputs = [t.name.split(":")[0] for t in signature.outputs.values()]
            report.checked.append(f"SavedModel {path} signature {key}")
            report.add(graph_checks.check_serving_graph(meta_graph.graph_def, outputs),
                       f"{path} [{key}]")


def _check_keras(report, path):
    from slimtune.verify import load_keras

    model = load_keras(path)
    report.checked.append(f"Keras model {path}")
    report.add(keras_checks.check(model, metadata.read(os.path.dirname(path) or ".")), path)


def diagnose(cfg: DoctorConfig):
    """The report for every input in ``cfg``; unreadable input is :class:`UnusableInput`."""
    try:
        return _diagnose(cfg)
    except UnusableInput:
        raise
    except SlimtuneError as e:
        raise UnusableInput(str(e)) from None


def _diagnose(cfg):
    from slimtune import compat

    compat.apply()
    if not any((cfg.train_dir, cfg.checkpoint_path, cfg.graph, cfg.saved_model,
                cfg.keras_model)):
        raise UsageError("nothing to examine: pass --train_dir, --checkpoint_path, --graph, "
                         "--saved_model or --keras_model")
    report = Report()
    for path in (cfg.train_dir, cfg.checkpoint_path):
        if path:
            _check_checkpoint(report, path, cfg.model_name, **_data_flags(cfg))
    if cfg.graph:
        _check_graph(report, cfg.graph)
    if cfg.saved_model:
        _check_saved_model(report, cfg.saved_model)
    if cfg.keras_model:
        _check_keras(report, cfg.keras_model)
    if cfg.dataset_name or cfg.dataset_dir or cfg.images:
        _live_checks(report, cfg)
    return report


def _live_checks(report, cfg):
    """Run every given model form on the data (see ``data_checks``)."""
    from slimtune import verify
    from slimtune.data import pipeline

    paths = [p for p in (cfg.keras_model, cfg.saved_model, cfg.train_dir, cfg.checkpoint_path)
             if p]
    if cfg.graph and not cfg.graph.endswith(".meta"):
        paths.append(cfg.graph)
    if not paths:
        raise UsageError("data was given but no model to run on it: pass --keras_model, "
                         "--saved_model, --graph (.pb), --train_dir or --checkpoint_path")
    forms = [verify.open_form(p, cfg.model_name) for p in paths]
    size, preprocessing = verify.input_settings(cfg, forms)
    if cfg.images:
        images, labels = pipeline.load_images(list(cfg.images), preprocessing, size), None
    else:
        images, labels = pipeline.load_eval_arrays(cfg.dataset_name, cfg.dataset_dir,
                                                   cfg.dataset_split_name, preprocessing,
                                                   size, cfg.max_images)
    for form in forms:
        report.checked.append(f"{len(images)} images through {form.kind} {form.path}")
        try:
            report.add(data_checks.check_form(form, images, labels), form.path)
            if form.kind == "checkpoint":
                _checkpoint_statistics(report, form, images, labels, _data_flags(cfg))
            elif form.kind == "keras":
                _keras_statistics(report, form.path, images)
        except BrokenCheckpoint as e:
            report.add([_broken_finding(e)], form.path)


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
    from slimtune.nets import batch_norm

    spec = registry.get(form.model_name)
    if spec.batch_norm is None:
        return
    meta = metadata.read(form.path)
    bn = batch_norm.as_trained(spec.batch_norm, meta)
    num_classes = checkpoint.logits_classes(spec, checkpoint.read_shapes(form.path), form.path)
    if labels is not None:
        labels = labels - meta.get("labels_offset", 0)
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
    repair = batch_statistics.recalibrate_command(form.path, meta, model_name=spec.name, **data)
    report.add(statistics_checks.gap_findings(served, batch_logits, labels, layers, where,
                                              repair), form.path)


def _keras_statistics(report, path, images):
    from slimtune.verify import load_keras

    model = load_keras(path)
    layers = statistics_checks.keras_layer_statistics(model, images)
    if layers is None:
        report.add([Finding(
            NOTE, "keras-stats-not-measured", "per-layer statistics not "
            "measured", "the BatchNorm layers' inputs are not reachable from the model's "
            "input (nested models)", "the other live checks still ran", "nothing to do")],
            path)
        return
    report.add(statistics_checks.layer_findings(layers, path), path)
