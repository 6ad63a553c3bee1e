"""Which tensor of a frozen classifier graph to compare, and what it holds.

research/slim's ``export_inference_graph.py`` + ``freeze_graph`` recipe freezes a graph
at ``<Scope>/Predictions/Reshape_1``: the probabilities of ``slim.softmax`` (a Reshape
to 2-D, the Softmax, a Reshape back), ``[B, 1, 1, C]`` for networks whose logits are
spatial (ResNet).  Logits compare more sharply than probabilities, so an output that is
a Softmax (through Reshape/Identity ops) is walked back to the tensor the Softmax reads,
through the same ops, when that is a ``[B, C]`` or ``[B, 1, 1, C]`` tensor of the same
class count; otherwise the probabilities are compared with the softmax of the other
form's logits.  Singleton spatial dimensions are squeezed.  :class:`Output` says which
was done, in one line.

A graph given without an output node gets its only classifier output: among its sink
nodes, those of a classifier shape, grouped by the logits they come from.  More than
one (or none) is :class:`~slimtune.errors.UnusableInput` listing the candidates.
"""

import dataclasses
from typing import Optional

from slimtune.errors import UnusableInput

_PASS_THROUGH = ("Reshape", "Identity")  # ops that change no value (slim.softmax's reshapes)
_NOT_OUTPUTS = ("NoOp", "Const", "Placeholder", "PlaceholderWithDefault", "Assert")


@dataclasses.dataclass
class Output:
    """The node a graph is read at and what it holds.

    ``tensor`` is what is fetched: ``node``'s output, or the logits behind its Softmax
    (``walked``).  ``probabilities``: the fetched values are probabilities (no logits
    were found behind the Softmax).  ``squeeze``: ``[B, 1, 1, C]``, squeezed to
    ``[B, C]``; ``None`` when the rank is not known until the graph runs.
    """

    node: str
    tensor: str
    probabilities: bool = False
    walked: bool = False
    squeeze: Optional[bool] = False
    chosen: bool = False  # picked as the graph's only classifier output (no --output_node)

    def note(self):
        """What was done to make the output comparable, in one line; None if nothing."""
        chosen = f"{self.node}, the graph's only classifier output (no --output_node)"
        node = chosen + "," if self.chosen else self.node
        plain = self.chosen and not (self.walked or self.probabilities)
        parts = [f"read at {chosen}" if plain else None]
        logits = self.tensor.split(":")[0]
        if self.walked:
            parts.append(f"{node} is probabilities (a Softmax): walked back to the logits "
                         f"node {logits}")
        elif self.probabilities:
            parts.append(f"{node} is probabilities (a Softmax) with no logits of a known "
                         "[B,C] or [B,1,1,C] shape behind it: probabilities compared with "
                         "the softmax of the other form's logits")
        if self.squeeze:
            parts.append("squeezed [B,1,1,C] to [B,C]")
        elif self.squeeze is None:
            parts.append("squeezed to [B,C] if it is [B,1,1,C] (rank unknown)")
        parts = [p for p in parts if p]
        return "; ".join(parts) if parts else None

    def fetched(self, values):
        """``values`` of ``tensor`` as ``[B, C]``."""
        import numpy as np

        values = np.asarray(values)
        if self.squeeze is not False and values.ndim == 4 and values.shape[1:3] == (1, 1):
            values = values[:, 0, 0, :]
        return values


def _pass_back(op):
    """The first op at or before ``op`` that is not a Reshape/Identity (nor a
    StopGradient), following first inputs."""
    while op.type in _PASS_THROUGH + ("StopGradient",) and op.inputs:
        op = op.inputs[0].op
    return op


def _classifier_shape(shape):
    """``(classes, squeeze)`` of a ``[B, C]`` / ``[B, 1, 1, C]`` static shape; classes
    None for any other shape, squeeze None when the rank is unknown."""
    if shape.rank is None:
        return None, None
    dims = shape.as_list()
    if shape.rank == 2:
        return dims[1], False
    if shape.rank == 4 and all(d in (1, None) for d in dims[1:3]):
        return dims[3], True
    return None, False


def resolve(graph, node):
    """The :class:`Output` of ``node`` in ``graph`` (a ``tf.Graph``)."""
    tensor = graph.get_tensor_by_name(node + ":0")
    classes, squeeze = _classifier_shape(tensor.shape)
    softmax = _pass_back(tensor.op)
    if softmax.type != "Softmax":
        return Output(node, tensor.name, squeeze=squeeze)
    logits = _pass_back(softmax.inputs[0].op).outputs[0]
    logit_classes, logit_squeeze = _classifier_shape(logits.shape)
    if logit_classes is not None and logit_classes == (classes or logit_classes):
        return Output(node, logits.name, walked=True, squeeze=logit_squeeze)
    return Output(node, tensor.name, probabilities=True, squeeze=squeeze)


def candidates(graph):
    """``[(node, Output)]`` of the graph's sink nodes that look like classifier outputs
    (float, ``[B, C]`` or ``[B, 1, 1, C]``, or a Softmax), in graph order."""
    used = {t.op.name for op in graph.get_operations() for t in op.inputs}
    found = []
    for op in graph.get_operations():
        if op.name in used or op.type in _NOT_OUTPUTS or not op.outputs:
            continue
        if not op.outputs[0].dtype.is_floating:
            continue
        output = resolve(graph, op.name)
        if output.walked or output.probabilities or _classifier_shape(
                op.outputs[0].shape)[0] is not None:
            found.append(output)
    return found


def describe(graph, output):
    """``node (probabilities|logits, shape)`` for a list of candidates."""
    shape = graph.get_tensor_by_name(output.node + ":0").shape
    kind = "probabilities" if output.walked or output.probabilities else "logits"
    return f"{output.node} ({kind}, {shape})"


def listing(graph):
    """The candidates in one phrase, for an error naming no usable output node."""
    found = candidates(graph)
    if found:
        return "candidates: " + ", ".join(describe(graph, o) for o in found)
    softmaxes = [op.name for op in graph.get_operations() if op.type == "Softmax"]
    return ("no sink of shape [B, C] or [B, 1, 1, C]"
            + (f"; Softmax ops: {', '.join(softmaxes)}" if softmaxes else ""))


def choose(graph, path, flag="--output_node"):
    """The graph's only classifier output (sinks reading the same logits count once),
    else :class:`UnusableInput` listing the candidates on its first line."""
    groups = {}
    # Plain logits first: a graph with logits and their softmax is read at the logits.
    for output in sorted(candidates(graph), key=lambda o: o.walked or o.probabilities):
        root = _pass_back(graph.get_tensor_by_name(output.tensor).op).name
        groups.setdefault(root, output)
    if len(groups) == 1:
        return dataclasses.replace(next(iter(groups.values())), chosen=True)
    what = f"{len(groups)} classifier outputs" if groups else "no classifier output"
    raise UnusableInput(f"{path} has no node 'logits' and {what}: pass {flag} "
                        f"({listing(graph)})")
