"""Compare any two forms of a model on the same inputs, and find the first layer that differs.

Forms: a slim checkpoint (the network is built with ``is_training=False``), a frozen
GraphDef ``.pb``, a SavedModel directory (TF1 or TF2) and a Keras ``.keras`` file.  Each
is opened as a function from preprocessed images to logits, so a pair compares what the
user actually ships.  Differences are measured class by class, never sorted; a candidate
whose classes are shifted by one against the reference (1001 with background versus
1000 without) is reported as a class misalignment rather than as noise.
"""

import dataclasses
import json
import os
from typing import Optional, Sequence

import numpy as np

from slimtune import checkpoint, metadata, registry
from slimtune.convert import parity
from slimtune.errors import SlimtuneError


class UnusableInput(SlimtuneError):
    """A model file or input the verifier cannot use (exit code 2)."""

    exit_code = 2


@dataclasses.dataclass
class Form:
    """One opened model: ``run(images) -> logits [B, C]`` plus what it knows of itself."""

    kind: str
    path: str
    run: object
    model_name: Optional[str] = None
    image_size: Optional[int] = None  # a fixed input size, if the form has one
    preprocessing: Optional[str] = None


def _sidecar(path):
    for candidate in (path + ".json", os.path.join(path, metadata.FILENAME)):
        if os.path.isfile(candidate):
            with open(candidate, encoding="utf-8") as f:
                return json.load(f)
    return metadata.read(path) if os.path.exists(path) else {}


def _open_checkpoint(path, model_name):
    prefix = checkpoint.resolve(path)
    meta = metadata.read(prefix)
    name = model_name or meta.get("model_name")
    if not name:
        raise UnusableInput(f"{path}: a slim checkpoint needs --model_name (no slimtune.json "
                            "beside it)")
    spec = registry.get(name)
    bn = spec.batch_norm
    if bn is not None and meta.get("batch_norm"):
        bn = bn.replace(**{k: meta["batch_norm"].get(k) for k in ("decay", "epsilon", "scale")})
    num_classes = checkpoint.read_shapes(prefix)[spec.logits_scopes[0] + "/weights"][-1]

    def run(images):
        return parity.slim_outputs(spec, prefix, images, num_classes, bn)[0]

    return Form("checkpoint", prefix, run, spec.name, None,
                meta.get("preprocessing") or spec.preprocessing)


def _open_frozen(path, input_node, output_node):
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    try:
        with open(path, "rb") as f:
            graph_def.ParseFromString(f.read())
    except Exception as e:
        raise UnusableInput(f"{path} is not a frozen GraphDef: {str(e).splitlines()[0]}") from None
    side = _sidecar(path)
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

    def run(images):
        with tf.compat.v1.Session(graph=graph) as sess:
            return sess.run(output_node + ":0", {input_node + ":0": images})

    size = shape[1] if shape.rank == 4 else None
    return Form("frozen", path, run, side.get("model_name"), size, side.get("preprocessing"))


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
    side = _sidecar(path)

    def run(images):
        return fn(**{arg: tf.constant(images)})[key].numpy()

    size = spec.shape[1] if spec.shape.rank == 4 else None
    return Form("saved_model", path, run, side.get("model_name"), size, side.get("preprocessing"))


def _open_keras(path):
    import keras

    try:
        model = keras.models.load_model(path, safe_mode=True)
    except Exception as e:
        raise UnusableInput(f"cannot load Keras model {path}: {str(e).splitlines()[0]}") from None
    side = _sidecar(os.path.dirname(path) or ".")

    def run(images):
        out = model(images, training=False)
        return np.asarray(out[0] if isinstance(out, (list, tuple)) else out)

    return Form("keras", path, run, side.get("model_name"), model.input_shape[1],
                side.get("preprocessing"))


def open_form(path, model_name=None, input_node=None, output_node=None,
              signature="serving_default"):
    """Open ``path`` as whichever form it is."""
    from slimtune import compat

    compat.apply()
    if path.endswith(".keras"):
        if not os.path.isfile(path):
            raise UnusableInput(f"Keras file {path} does not exist")
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

    def lines(self):
        out = [f"images compared      {self.count}",
               f"classes              reference {self.num_classes[0]}, candidate "
               f"{self.num_classes[1]}"]
        if self.misalignment:
            out.append(f"CLASS MISALIGNMENT   {self.misalignment}")
        out += [f"max abs difference   {self.max_abs:.3g}",
                f"max rel difference   {self.max_rel:.3g}",
                f"mean abs difference  {self.mean_abs:.3g}",
                f"cosine similarity    {self.cosine:.9f}",
                f"top-1 agreement      {self.top1_agreement:.4f}",
                f"top-5 agreement      {self.top5_agreement:.4f}",
                f"verdict              {'PASS' if self.passed else 'FAIL'}"]
        return out


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
        split = pipeline.open_split(name, directory, split_name)
        data = pipeline.batches(split, preprocessing, size, 50, is_training=False,
                                num_classes=split.num_classes)
        images = np.concatenate([b[0].numpy() for b in data])[:limit]
        batches.append(images.astype(np.float32))
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

    from slimtune.convert import families

    ref = _open_checkpoint(checkpoint_path, model_name)
    spec = registry.get(ref.model_name)
    meta = metadata.read(ref.path)
    bn = spec.batch_norm
    if bn is not None and meta.get("batch_norm"):
        bn = bn.replace(**{k: meta["batch_norm"].get(k) for k in ("decay", "epsilon", "scale")})
    num_classes = checkpoint.read_shapes(ref.path)[spec.logits_scopes[0] + "/weights"][-1]
    points = families.module_for(spec).end_points(spec)
    model = keras.models.load_model(keras_path, safe_mode=True)
    missing = [name for _, name in points if name not in {l.name for l in model.layers}]
    if missing:
        raise UnusableInput(f"{keras_path} is not a slimtune conversion of {spec.name}: it has "
                            f"no layer {missing[0]}")
    _, slim_points = parity.slim_outputs(spec, ref.path, images, num_classes, bn,
                                         [key for key, _ in points])
    probe = keras.Model(model.inputs, [model.get_layer(n).output for _, n in points])
    outs = probe(images, training=False)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    rows, first_bad = [], None
    for (key, name), value in zip(points, outs):
        diff = parity.difference(slim_points[key], np.asarray(value))
        rows.append((key, name, diff))
        if first_bad is None and diff.max_rel > rtol:
            first_bad = rows[-1]
    return rows, first_bad
