"""Compare any two forms of a model on the same inputs, and find the first layer that differs.

Forms: a slim checkpoint (the network is built with ``is_training=False``), a frozen
GraphDef ``.pb``, a SavedModel directory (TF1 or TF2) and a Keras ``.keras`` file.  Each
is opened as a function from preprocessed images to logits, so a pair compares what the
user actually ships.  Differences are measured class by class, never sorted; a candidate
whose classes are shifted by one against the reference (1001 with background versus
1000 without) is reported as a class misalignment rather than as noise.

Numbers say *that* two forms differ; findings say *why* in words where the cause can be
seen: a form that answers differently when asked twice (dropout left active), BatchNorm
ops in training mode in a served graph, moving statistics at their initial 0/1 values.
"""

import dataclasses
import json
import os
from typing import Callable, Optional, Sequence

import numpy as np

from slimtune import checkpoint, graphs, metadata, registry
from slimtune.convert import parity
from slimtune.doctor.findings import listed
from slimtune.errors import SlimtuneError
from slimtune.nets import batch_norm


class UnusableInput(SlimtuneError):
    """A model file or input the verifier cannot use (exit code 2)."""

    exit_code = 2


@dataclasses.dataclass
class Form:
    """One opened model: ``run(images) -> logits [B, C]`` plus what it knows of itself.

    ``graph_def``/``outputs`` (graph forms) let the verifier name random ops and
    training-mode BatchNorms; ``bn_statistics()`` returns ``{layer: (mean, variance)}``.
    """

    kind: str
    path: str
    run: Callable
    model_name: Optional[str] = None
    image_size: Optional[int] = None  # a fixed input size, if the form has one
    preprocessing: Optional[str] = None
    trained_size: Optional[int] = None  # the size it was trained or converted at, if known
    deterministic_by_construction: bool = False  # slimtune builds it with is_training=False
    graph_def: object = None
    outputs: Optional[list] = None
    bn_statistics: Optional[Callable] = None


def sidecar(path):
    """The JSON written beside a model form (``<file>.json`` or ``slimtune.json``), or {}."""
    for candidate in (path + ".json", os.path.join(path, metadata.FILENAME)):
        if os.path.isfile(candidate):
            with open(candidate, encoding="utf-8") as f:
                return json.load(f)
    return metadata.read(path) if os.path.exists(path) else {}


def _checkpoint_statistics(prefix):
    import tensorflow as tf

    reader = tf.train.load_checkpoint(prefix)
    names = reader.get_variable_to_shape_map()
    return {name[: -len("/moving_mean")]: (reader.get_tensor(name),
                                           reader.get_tensor(name[: -len("mean")] + "variance"))
            for name in names
            if name.endswith("/moving_mean") and name[: -len("mean")] + "variance" in names}


def _open_checkpoint(path, model_name):
    prefix = checkpoint.resolve(path)
    meta = metadata.read(prefix)
    name = model_name or meta.get("model_name")
    if not name:
        raise UnusableInput(f"{path}: a slim checkpoint needs --model_name (no slimtune.json "
                            "beside it)")
    spec = registry.get(name)
    bn = batch_norm.as_trained(spec.batch_norm, meta)
    num_classes = checkpoint.logits_classes(spec, checkpoint.read_shapes(prefix), prefix)

    def run(images):
        return parity.slim_outputs(spec, prefix, images, num_classes, bn)[0]

    return Form("checkpoint", prefix, run, spec.name, None,
                meta.get("preprocessing") or spec.preprocessing,
                trained_size=meta.get("image_size"), deterministic_by_construction=True,
                bn_statistics=lambda: _checkpoint_statistics(prefix))


def _open_frozen(path, input_node, output_node):
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    try:
        with open(path, "rb") as f:
            graph_def.ParseFromString(f.read())
    except Exception as e:
        raise UnusableInput(f"{path} is not a frozen GraphDef: {str(e).splitlines()[0]}") from None
    side = sidecar(path)
    input_node = input_node or side.get("input_node", "input")
    output_node = output_node or (side.get("output_nodes") or ["logits"])[0]
    names = {n.name for n in graph_def.node}
    for node, flag in ((input_node, "--input_node"), (output_node, "--output_node")):
        if node not in names:
            raise UnusableInput(f"{path} has no node {node!r}: pass {flag} (nodes include "
                                f"{', '.join(sorted(names)[:8])} ...)")
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    shape = graph.get_tensor_by_name(input_node + ":0").shape
    session = []  # one session for every call: graph optimisation runs once

    def run(images):
        if not session:
            session.append(tf.compat.v1.Session(graph=graph))
        return session[0].run(output_node + ":0", {input_node + ":0": images})

    size = shape[1] if shape.rank == 4 else None
    return Form("frozen", path, run, side.get("model_name"), size, side.get("preprocessing"),
                trained_size=(side.get("input_shape") or [None, None])[1],
                graph_def=graph_def, outputs=[output_node],
                bn_statistics=lambda: graphs.batch_norm_statistics(graph_def))


def _open_saved_model(path, signature_name):
    import tensorflow as tf

    loaded = tf.saved_model.load(path)
    if signature_name not in loaded.signatures:
        raise UnusableInput(f"SavedModel {path} has no signature {signature_name!r} (it has "
                            f"{', '.join(loaded.signatures) or 'none'}): pass --signature")
    fn = loaded.signatures[signature_name]
    args = fn.structured_input_signature[1]
    if len(args) != 1:
        raise UnusableInput(f"signature {signature_name!r} of {path} takes {len(args)} inputs "
                            f"({', '.join(args)}); it must take one image batch")
    (arg, spec), = args.items()
    outputs = list(fn.structured_outputs)
    key = "logits" if "logits" in outputs else outputs[0]
    side = sidecar(path)

    def run(images):
        return fn(**{arg: tf.constant(images)})[key].numpy()

    graph_def = fn.graph.as_graph_def()
    size = spec.shape[1] if spec.shape.rank == 4 else None
    return Form("saved_model", path, run, side.get("model_name"), size, side.get("preprocessing"),
                graph_def=graph_def, outputs=[t.name for t in fn.outputs],
                bn_statistics=lambda: graphs.batch_norm_statistics(graph_def))


def _keras_statistics(model):
    """Moving statistics of every BatchNormalization layer, in network order."""
    from slimtune.batch_statistics import batch_norm_layers

    return {layer.name: (np.asarray(layer.moving_mean), np.asarray(layer.moving_variance))
            for layer in batch_norm_layers(model)}


def load_keras(path):
    """A saved Keras model; a missing file, or a ``.keras`` file that is not the zip
    archive Keras writes (Keras itself then says "File not found"), is
    :class:`UnusableInput`."""
    import zipfile

    import keras

    if not os.path.isfile(path):
        raise UnusableInput(f"Keras file {path} does not exist")
    if path.endswith(".keras") and not zipfile.is_zipfile(path):
        raise UnusableInput(f"{path} is not a valid .keras archive (not a zip file): it is "
                            "truncated or another format; save it again with model.save() "
                            "or convert the checkpoint again with slimtune-convert")
    try:
        return keras.models.load_model(path, safe_mode=True)
    except Exception as e:
        raise UnusableInput(f"cannot load Keras model {path}: {str(e).splitlines()[0]}") from None


def _open_keras(path):
    model = load_keras(path)
    side = sidecar(os.path.dirname(path) or ".")

    def run(images):
        out = model(images, training=False)
        return np.asarray(out[0] if isinstance(out, (list, tuple)) else out)

    return Form("keras", path, run, side.get("model_name"), model.input_shape[1],
                side.get("preprocessing"), trained_size=side.get("image_size"),
                bn_statistics=lambda: _keras_statistics(model))


def open_form(path, model_name=None, input_node=None, output_node=None,
              signature="serving_default"):
    """Open ``path`` as whichever form it is."""
    from slimtune import compat

    compat.apply()
    if path.endswith(".keras"):
        return _open_keras(path)
    if path.endswith(".pb") and os.path.isfile(path):
        return _open_frozen(path, input_node, output_node)
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "saved_model.pb")):
        return _open_saved_model(path, signature)
    try:
        return _open_checkpoint(path, model_name)
    except SlimtuneError as e:
        raise UnusableInput(f"{path} is not a .keras file, a frozen .pb, a SavedModel or a "
                            f"usable slim checkpoint ({e})") from None


@dataclasses.dataclass
class Finding:
    """A cause seen in a form, in words.  ``fatal`` findings fail the verification."""

    label: str  # short, upper case: shown in the first column of the report
    text: str
    fatal: bool


@dataclasses.dataclass
class Report:
    max_abs: float
    max_rel: float
    mean_abs: float
    cosine: float
    top1_agreement: float
    top5_agreement: float
    count: int
    num_classes: tuple
    misalignment: Optional[str]
    per_class_max_abs: list
    passed: bool
    findings: list = dataclasses.field(default_factory=list)

    def lines(self):
        out = [f"images compared      {self.count}",
               f"classes              reference {self.num_classes[0]}, candidate "
               f"{self.num_classes[1]}"]
        if self.misalignment:
            out.append(f"CLASS MISALIGNMENT   {self.misalignment}")
        out += [f"{f.label:<20} {f.text}" for f in self.findings]
        out += [f"max abs difference   {self.max_abs:.3g}",
                f"max rel difference   {self.max_rel:.3g}",
                f"mean abs difference  {self.mean_abs:.3g}",
                f"cosine similarity    {self.cosine:.9f}",
                f"top-1 agreement      {self.top1_agreement:.4f}",
                f"top-5 agreement      {self.top5_agreement:.4f}",
                f"verdict              {'PASS' if self.passed else 'FAIL'}"]
        return out

    def as_dict(self):
        return dataclasses.asdict(self)


def _misalignment(reference, candidate, rtol):
    r, c = reference.shape[1], candidate.shape[1]
    checks = []
    if r == c + 1:
        checks.append((reference[:, 1:], candidate, "the candidate lacks the reference's "
                       "class 0 (1001 classes with background vs 1000): drop the background "
                       "class (--drop_background) or set labels_offset=1"))
    if c == r + 1:
        checks.append((reference, candidate[:, 1:], "the candidate has an extra class 0 "
                       "(background) the reference lacks: drop it or set labels_offset=1"))
    if r == c:
        checks.append((reference[:, 1:], candidate[:, :-1], "the candidate's classes are "
                       "shifted by one against the reference (an off-by-one label offset)"))
        checks.append((reference[:, :-1], candidate[:, 1:], "the candidate's classes are "
                       "shifted by one against the reference (an off-by-one label offset)"))
    for a, b, text in checks:
        if parity.difference(a, b).max_rel <= max(rtol, 1e-4):
            return text
    if r != c:
        return f"class counts differ ({r} vs {c}) and no shift by one explains it"
    return None


def compare(reference, candidate, atol=1e-4, rtol=1e-5):
    """Difference report of two logit arrays ``[N, C]``."""
    reference = np.asarray(reference, np.float64)
    candidate = np.asarray(candidate, np.float64)
    misaligned = _misalignment(reference, candidate, rtol)
    n = min(reference.shape[1], candidate.shape[1])
    a, b = reference[:, :n], candidate[:, :n]
    diff = parity.difference(a, b)
    cosine = float(np.sum(a * b) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-30))
    top5 = min(5, n)
    ref5 = np.argsort(-a, axis=1)[:, :top5]
    cand5 = np.argsort(-b, axis=1)[:, :top5]
    top5_agreement = float(np.mean([set(x) == set(y) for x, y in zip(ref5, cand5)]))
    per_class = np.abs(a - b).max(axis=0).tolist() if len(a) else []
    passed = (misaligned is None and (diff.max_abs <= atol or diff.max_rel <= rtol))
    return Report(diff.max_abs, diff.max_rel, diff.mean_abs, cosine, diff.top1_agreement,
                  top5_agreement, len(a), (reference.shape[1], candidate.shape[1]),
                  misaligned, per_class, passed)


def findings_of(form, role, images, first_logits, rtol=1e-5):
    """What can be seen wrong in one form by itself (``role``: reference or candidate)."""
    found = []
    if not form.deterministic_by_construction:
        again = form.run(images)
        repeat = parity.difference(first_logits, again)
        if repeat.max_rel > rtol:
            randoms = graphs.random_ops(form.graph_def, form.outputs) if form.graph_def else []
            cause = (f"it depends on random ops ({listed(randoms)}): dropout left active, "
                     "exported with is_training=True" if randoms else
                     "dropout or another random op is active at inference")
            found.append(Finding(
                "NONDETERMINISTIC", f"the {role} gives different outputs for the same images "
                f"on two runs (max abs {repeat.max_abs:.3g}): {cause}; export the graph with "
                "is_training=False (slimtune-export does)", fatal=True))
    if form.graph_def is not None:
        training = graphs.training_batch_norms(form.graph_def, form.outputs)
        if training:
            found.append(Finding(
                "BN IN TRAINING MODE", f"the {role} has {len(training)} BatchNorm ops with "
                f"is_training=True ({listed(training)}): each image is normalised with its "
                "batch's statistics, not the moving ones; export with is_training=False",
                fatal=True))
    if form.bn_statistics is not None:
        stats = form.bn_statistics()
        initial = graphs.initial_statistics(stats)
        if initial:
            found.append(Finding(
                "BN STATS AT 0/1", f"the {role}'s BatchNorm moving statistics are at their "
                f"initial values (mean 0, variance 1) in {len(initial)} of {len(stats)} layers "
                f"({listed(initial)}): they were never updated in training or were "
                "lost in conversion; train with the UPDATE_OPS dependency (slimtune-train "
                "does) or convert the checkpoint that holds them", fatal=False))
    return found


def check(reference, candidate, images, atol=1e-4, rtol=1e-5, reference_logits=None):
    """Run two opened forms on ``images``; the report includes each form's findings.

    ``reference_logits`` skips running the reference again when several candidates are
    checked against one reference.
    """
    ref = reference.run(images) if reference_logits is None else reference_logits
    cand = candidate.run(images)
    report = compare(ref, cand, atol, rtol)
    report.findings = (findings_of(reference, "reference", images, ref, rtol)
                       + findings_of(candidate, "candidate", images, cand, rtol))
    if any(f.fatal for f in report.findings):
        report.passed = False
    return report


def inputs(image_files: Sequence[str] = (), random=0, seed=0, size=224, preprocessing="inception",
           dataset=None):
    """The images both forms see: files (preprocessed for eval), random, or a split."""
    from slimtune.convert.convert import load_images

    batches = []
    if image_files:
        batches.append(load_images(list(image_files), preprocessing, size))
    if dataset:
        from slimtune.data import pipeline

        name, directory, split_name, limit = dataset
        batches.append(pipeline.load_eval_arrays(name, directory, split_name, preprocessing,
                                                 size, limit)[0])
    if random:
        batches.append(parity.random_images(random, size, seed))
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

    ref = _open_checkpoint(checkpoint_path, model_name)
    spec = registry.get(ref.model_name)
    meta = metadata.read(ref.path)
    bn = batch_norm.as_trained(spec.batch_norm, meta)
    num_classes = checkpoint.logits_classes(spec, checkpoint.read_shapes(ref.path), ref.path)
    points = spec.end_points()
    model = load_keras(keras_path)
    missing = [name for _, name in points if name not in {l.name for l in model.layers}]
    if missing:
        raise UnusableInput(f"{keras_path} is not a slimtune conversion of {spec.name}: it has "
                            f"no layer {missing[0]}")
    _, slim_points = parity.slim_outputs(spec, ref.path, images, num_classes, bn,
                                         [key for key, _ in points])
    probe = keras.Model(model.input, [model.get_layer(n).output for _, n in points])
    outs = probe(images, training=False)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    rows, first_bad = [], None
    for (key, name), value in zip(points, outs):
        diff = parity.difference(slim_points[key], np.asarray(value))
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


def _log(message):
    print(message, flush=True)


def input_settings(cfg, forms):
    """``(image size, preprocessing)`` both forms accept; conflicting fixed sizes are unusable."""
    fixed = {f.image_size for f in forms if f.image_size}
    if len(fixed) > 1:
        raise UnusableInput(f"the two models take different input sizes ({sorted(fixed)}): "
                            "compare forms exported at the same --image_size")
    if cfg.image_size and fixed and cfg.image_size not in fixed:
        raise UnusableInput(f"--image_size={cfg.image_size} but a model has a fixed input size "
                            f"of {fixed.pop()}")
    name = next((f.model_name for f in forms if f.model_name), None)
    size = (cfg.image_size or (fixed.pop() if fixed else None)
            or next((f.trained_size for f in forms if f.trained_size), None))
    if size is None:
        size = registry.get(name).default_image_size if name else 224
    preprocessing = (cfg.preprocessing_name
                     or next((f.preprocessing for f in forms if f.preprocessing), None)
                     or "inception")
    return size, preprocessing


def verify(cfg: VerifyConfig, log=_log):
    """Open both forms, compare them on the chosen inputs, print the report.

    Returns the result dict (also written to ``cfg.report_json``); ``result["passed"]``
    is the verdict.
    """
    ref = open_form(cfg.reference, cfg.model_name, cfg.input_node, cfg.output_node,
                    cfg.signature)
    cand = open_form(cfg.candidate, cfg.model_name, cfg.input_node, cfg.output_node,
                     cfg.signature)
    size, preprocessing = input_settings(cfg, (ref, cand))
    dataset = ((cfg.dataset_name, cfg.dataset_dir, cfg.dataset_split_name, cfg.max_images)
               if cfg.dataset_name or cfg.dataset_dir else None)
    images = inputs(cfg.images, cfg.random, cfg.seed, size, preprocessing, dataset)
    log(f"reference {ref.kind} {ref.path}\ncandidate {cand.kind} {cand.path}\n"
        f"{len(images)} images at {size}px, {preprocessing} preprocessing")
    report = check(ref, cand, images, cfg.atol, cfg.rtol)
    for line in report.lines():
        log(line)
    result = {"reference": ref.path, "candidate": cand.path, **report.as_dict()}
    if cfg.layerwise:
        rows, bad = layerwise(cfg.reference, cfg.candidate, images, cfg.model_name, cfg.rtol)
        log(f"\n{'end point':<55} {'max rel':>10}")
        for row in rows:
            mark = "  <- first beyond --rtol" if row is bad else ""
            log(f"{row[0]:<55} {row[2].max_rel:>10.3g}{mark}")
        result["layerwise"] = [{"end_point": k, "keras_layer": n, "max_rel": d.max_rel}
                               for k, n, d in rows]
        result["first_divergence"] = bad[0] if bad else None
        log(f"first divergence: {bad[0]} (Keras layer {bad[1]}): {bad[2].line()}" if bad
            else "every end point within --rtol")
    if cfg.report_json:
        tmp = f"{cfg.report_json}.tmp{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
        os.replace(tmp, cfg.report_json)
    return result
