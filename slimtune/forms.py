"""Open any form of a model as a function from preprocessed images to logits.

Forms: a slim checkpoint (the network built with ``is_training=False``), a frozen
GraphDef ``.pb``, a SavedModel directory (TF1 or TF2) and a Keras ``.keras`` file.  Each
opens as a :class:`Form` that also says what it knows of itself (architecture, input
size, preprocessing, from the JSON slimtune writes beside it) and gives what the checks
read: the graph and its outputs, the BatchNorm moving statistics.  A file that is not
the form it claims to be is :class:`~slimtune.errors.UnusableInput`.
"""

import dataclasses
import os
from typing import Callable, Optional

import numpy as np

from slimtune import bn_layers, checkpoint, graph_outputs, metadata, registry, slim_run
from slimtune import sources
from slimtune.errors import BrokenCheckpoint, SlimtuneError, UnusableInput


@dataclasses.dataclass
class Form:
    """One opened model: ``run(images) -> logits [B, C]`` plus what it knows of itself.

    ``graph_def``/``outputs`` (graph forms) let the checks name random ops and
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
    # What ``run`` returns when it is not plain logits (``graph_outputs.Output``): a
    # graph read at its probabilities, walked back to its logits, squeezed.
    output: object = None
    channels: Optional[int] = None  # the input's channels (1: a grayscale model), if known

    @property
    def probabilities(self):
        """``run`` returns probabilities, not logits (compare them with a softmax)."""
        return bool(self.output and self.output.probabilities)

    def output_note(self):
        """What was done to make this form's output comparable, in one line, or None."""
        return self.output.note() if self.output else None


def read_graph_def(path):
    """The ``GraphDef`` in a frozen ``.pb`` file."""
    import tensorflow as tf

    from google.protobuf import text_format

    graph_def = tf.compat.v1.GraphDef()
    try:
        with open(path, "rb") as f:
            data = f.read()
        graph_def.ParseFromString(data)
    except Exception as e:
        try:  # a text GraphDef (export --write_text_graphdef)
            text_format.Parse(data.decode("utf-8"), graph_def)
        except Exception:
            raise UnusableInput(f"{path} is not a frozen GraphDef (.pb): "
                                f"{str(e).splitlines()[0]}") from None
    return graph_def


def read_meta_graph(path):
    """The ``MetaGraphDef`` in a ``.meta`` file (a training graph a Saver wrote)."""
    import tensorflow as tf

    meta_graph = tf.compat.v1.MetaGraphDef()
    try:
        with open(path, "rb") as f:
            meta_graph.ParseFromString(f.read())
    except Exception:
        raise UnusableInput(f"{path} is not a MetaGraphDef (.meta written by a Saver)") from None
    return meta_graph


def checkpoint_run(prefix, model_name=None):
    """What the slim checkpoint at ``prefix`` is (a resolved
    :class:`~slimtune.metadata.RunInfo`: ``model_name`` else its slimtune.json, BatchNorm
    as trained) and what its file records; no architecture is unusable."""
    recorded = metadata.recorded(prefix)
    if not (model_name or recorded.model_name):
        raise UnusableInput(f"{prefix}: a slim checkpoint needs --model_name (no slimtune.json "
                            "beside it names the architecture)")
    return metadata.resolve(metadata.RunInfo(model_name=model_name), recorded), recorded


def open_checkpoint(path, model_name=None):
    """The slim checkpoint at ``path`` as a :class:`Form`; one holding values no working
    network holds is refused here (``checkpoint.refuse_broken``), before any graph runs."""
    prefix = sources.checkpoint_prefix(path)
    checkpoint.refuse_broken(prefix)
    run_info, recorded = checkpoint_run(prefix, model_name)
    spec, bn = run_info.spec, run_info.batch_norm
    num_classes = checkpoint.logits_classes(spec, checkpoint.read_shapes(prefix), prefix)

    def run(images):
        return slim_run.slim_outputs(spec, prefix, images, num_classes, bn)[0]

    channels = 1 if run_info.grayscale else checkpoint.input_channels(
        checkpoint.read_shapes(prefix))
    return Form("checkpoint", prefix, run, spec.name, None, run_info.preprocessing,
                trained_size=recorded.image_size, deterministic_by_construction=True,
                bn_statistics=lambda: _checkpoint_statistics(prefix), channels=channels)


def _checkpoint_statistics(prefix):
    names = [name for name in checkpoint.read_shapes(prefix)
             if name.endswith(("/moving_mean", "/moving_variance"))]
    return bn_layers.tensor_statistics(checkpoint.read_tensors(prefix, names))


def _open_frozen(path, input_node, output_node):
    import tensorflow as tf

    graph_def = read_graph_def(path)
    side = metadata.recorded_beside(path)
    serving = side.serving or metadata.Serving()
    input_node = input_node or serving.input_node or "input"
    names = {n.name for n in graph_def.node}
    if input_node not in names:
        raise UnusableInput(f"{path} has no node {input_node!r}: pass --input_node (nodes "
                            f"include {', '.join(sorted(names)[:8])} ...)")
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    output = _frozen_output(graph, path, names, output_node, serving)
    shape = graph.get_tensor_by_name(input_node + ":0").shape
    session = []  # one session for every call: graph optimisation runs once

    def run(images):
        if not session:
            session.append(tf.compat.v1.Session(graph=graph))
        return output.fetched(session[0].run(output.tensor, {input_node + ":0": images}))

    size = shape[1] if shape.rank == 4 else None
    return Form("frozen", path, run, side.model_name, size, side.preprocessing,
                trained_size=(serving.input_shape or (None, None))[1],
                graph_def=graph_def, outputs=[output.node],
                bn_statistics=lambda: bn_layers.graph_statistics(graph_def), output=output,
                channels=shape[3] if shape.rank == 4 else None)


def _frozen_output(graph, path, names, output_node, serving):
    """The :class:`~slimtune.graph_outputs.Output` to read: ``--output_node``, else the
    sidecar's, else ``logits``, else the graph's only classifier output."""
    output_node = output_node or (serving.output_nodes or [None])[0]
    if output_node is None and "logits" in names:
        output_node = "logits"
    if output_node is None:
        return graph_outputs.choose(graph, path)
    if output_node not in names:
        raise UnusableInput(f"{path} has no node {output_node!r}: pass --output_node "
                            f"({graph_outputs.listing(graph)})")
    return graph_outputs.resolve(graph, output_node)


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
    side = metadata.recorded_beside(path)

    def run(images):
        return fn(**{arg: tf.constant(images)})[key].numpy()

    graph_def = fn.graph.as_graph_def()
    size = spec.shape[1] if spec.shape.rank == 4 else None
    return Form("saved_model", path, run, side.model_name, size, side.preprocessing,
                graph_def=graph_def, outputs=[t.name for t in fn.outputs],
                bn_statistics=lambda: bn_layers.graph_statistics(graph_def),
                channels=spec.shape[3] if spec.shape.rank == 4 else None)


def _open_keras(path):
    model = sources.load_keras(path)
    side = metadata.recorded_beside(os.path.dirname(path) or ".")

    def run(images):
        out = model(images, training=False)
        return np.asarray(out[0] if isinstance(out, (list, tuple)) else out)

    return Form("keras", path, run, side.model_name, model.input_shape[1],
                side.preprocessing, trained_size=side.image_size,
                bn_statistics=lambda: bn_layers.keras_statistics(model),
                channels=model.input_shape[-1])


def open_form(path, model_name=None, input_node=None, output_node=None,
              signature="serving_default"):
    """Open ``path`` as whichever form it is."""
    from slimtune import compat

    compat.apply()
    kind = sources.kind_of(path)
    if kind == sources.KERAS:
        return _open_keras(sources.keras_path(path))
    if kind == sources.FROZEN:
        return _open_frozen(path, input_node, output_node)
    if kind == sources.SAVED_MODEL:
        return _open_saved_model(path, signature)
    try:
        return open_checkpoint(path, model_name)
    except BrokenCheckpoint:
        raise  # a checkpoint, readable: its values are what is wrong, said in one line
    except SlimtuneError as e:
        raise UnusableInput(f"{path} is not a .keras file, a frozen .pb, a SavedModel or a "
                            f"usable slim checkpoint ({e})") from None


def input_channels(forms):
    """The channels the ``forms`` take: 1 (images converted to grayscale, research/slim's
    ``--use_grayscale``) or 3; forms taking different counts are unusable together."""
    known = {f.channels for f in forms if f.channels}
    if len(known) > 1:
        raise UnusableInput(f"the two models take different input channels "
                            f"({sorted(known)}): one was trained on grayscale images")
    return known.pop() if known else 3


def input_settings(cfg, forms):
    """``(image size, preprocessing)`` the ``forms`` accept, from ``cfg``'s
    ``image_size``/``preprocessing_name`` flags, else the forms' own, else the
    architecture's; conflicting fixed sizes are unusable."""
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
