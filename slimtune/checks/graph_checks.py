"""Graph checks: does the training step update BatchNorm, and is a serving graph pure?

Training graphs (a train dir's MetaGraph): every BatchNorm moving-average update must be
an ancestor of the train op, through data or control edges, inside function bodies
too.  ``optimizer.minimize(loss)`` without ``UPDATE_OPS`` dependencies builds a train op
that never runs them (seed 001).

Serving graphs (a frozen ``.pb``, a SavedModel signature): BatchNorm in training mode,
random ops the outputs depend on (dropout left active), and a ``keras_learning_phase``
placeholder that decides the mode at run time.

Both: BatchNorm in training mode on one value per channel (a rank-2 input with a static
batch of 1, as after a fully connected layer fed one example at a time): the variance
is 0, so the output is beta whatever the input and no gradient flows back.  Training
graphs also: a BatchNorm over 4 or fewer values per channel (batch x final map size),
where a step can blow the weights up.  Mixed precision (both): BatchNorm with half
statistics, float16 gradients without a loss scale (:mod:`.precision_checks`).
"""

import numpy as np

from slimtune import graphs
from slimtune.checks import precision_checks
from slimtune.findings import ERROR, NOTE, WARNING, Finding, listed

_APPLY_PREFIXES = ("Apply", "ResourceApply", "ResourceSparseApply", "SparseApply")


def _names(collection):
    if collection.HasField("node_list"):
        return [v.split(":")[0].lstrip("^") for v in collection.node_list.value]
    return []


def _moving_average_updates(graph_def, meta_graph_def):
    """Names of the ops that update moving statistics: the UPDATE_OPS collection, or
    slim/tf.layers' ``AssignMovingAvg`` ops when the collection was not saved."""
    names = []
    if meta_graph_def is not None and "update_ops" in meta_graph_def.collection_def:
        names = _names(meta_graph_def.collection_def["update_ops"])
    if not names:
        names = [n.name for n in graph_def.node if n.name.rsplit("/", 1)[-1] == "AssignMovingAvg"
                 or n.name.endswith("/AssignMovingAvg_1")]
    return names


def batch_norm_decays(graph_def):
    """``{BN scope: decay}`` read from the moving-average update ops' constants.

    TF's fused path computes ``1 - decay`` as ``AssignMovingAvg/sub(1.0, <decay const>)``;
    ``assign_moving_average`` stores ``1 - decay`` itself as ``AssignMovingAvg/decay``.
    """
    import tensorflow as tf

    by_name = {n.name: n for n in graph_def.node}

    def const(name):
        node = by_name.get(name.split(":")[0].lstrip("^"))
        if node is None or node.op != "Const":
            return None
        value = tf.make_ndarray(node.attr["value"].tensor)
        return float(value) if value.size == 1 else None

    decays = {}
    for node in graph_def.node:
        scope, _, last = node.name.rpartition("/AssignMovingAvg/")
        if not scope or "/" in last:
            continue
        if last == "sub" and node.op == "Sub" and len(node.input) == 2 \
                and const(node.input[0]) == 1.0 and const(node.input[1]) is not None:
            decays[scope] = const(node.input[1])
        elif last == "decay" and node.op == "Const" and const(node.name) is not None:
            decays.setdefault(scope, 1.0 - const(node.name))
    return decays


# At or below this many values per channel a training-mode BatchNorm is warned about:
# the batch variance of so few values is tiny or 0 for some channels, and dividing by
# it magnifies gradients (densenet121 at 32 px, batch 2, SGD at 0.01: a 1x1 last map,
# 2 values per channel, and NaN inference outputs after 2 steps).
FEW_VALUES = 4


def _as_graph(graph):
    """A ``tf.Graph`` (static shapes) for a graph or GraphDef; None if TF cannot rebuild it."""
    import tensorflow as tf

    if isinstance(graph, tf.Graph):
        return graph
    rebuilt = tf.Graph()
    try:
        with rebuilt.as_default():
            tf.graph_util.import_graph_def(graph, name="")
    except Exception:  # custom ops or a graph TF cannot rebuild: no static shapes to read
        return None
    return rebuilt


def small_batch_norms(graph, limit=FEW_VALUES):
    """``[(BN op name, input shape, values per channel)]``, in network order, of the
    training-mode BatchNorms of a graph (or GraphDef) that normalise over at most
    ``limit`` values per channel: batch x height x width of their input, from static
    shapes, so only what the graph fixes.

    slim reshapes a rank-2 input ``[B, C]`` to ``[B, 1, 1, C]`` for its fused kernel, so
    a rank-2 BN counts its batch; ``tf.nn.moments`` based BNs show as
    ``.../moments/mean`` ``Mean`` ops over the reduced axes.
    """
    import tensorflow as tf

    graph = _as_graph(graph)
    if graph is None:
        return []
    found = []
    for op in graph.get_operations():
        if (op.type.startswith("FusedBatchNorm") and "Grad" not in op.type
                and op.get_attr("is_training")):
            shape = op.inputs[0].shape
            if shape.rank != 4:
                continue
            nchw = op.get_attr("data_format") in (b"NCHW", "NCHW")
            reduced = [shape[0], shape[2], shape[3]] if nchw else list(shape)[:3]
        elif op.type == "Mean" and op.name.endswith("moments/mean"):
            axes = tf.get_static_value(op.inputs[1])
            shape = op.inputs[0].shape
            if axes is None or shape.rank is None:
                continue
            reduced = [shape[int(a)] for a in np.atleast_1d(axes)]
        else:
            continue
        if all(d is not None for d in reduced) and int(np.prod(reduced)) <= limit:
            found.append((op.name, shape.as_list(), int(np.prod(reduced))))
    return found


def batch_norm_size_findings(graph, training_graph=True):
    """Findings for training-mode BatchNorms over too few values per channel: one value
    is an error in any graph; 2 to :data:`FEW_VALUES` a warning in a training graph
    (what slimtune-train prints before its first step)."""
    found = small_batch_norms(graph)
    single = [f"{name} on {shape}" for name, shape, count in found if count == 1]
    few = [(name, shape, count) for name, shape, count in found if count > 1]
    findings = []
    if single:
        findings.append(Finding(
            ERROR, "bn-single-value", "BatchNorm in training mode over one value per channel",
            f"{len(single)} BatchNorm ops normalise a static batch of 1 with no spatial "
            f"extent: {listed(single, 2)}",
            "the batch variance is 0 and the mean is the value itself, so the output is beta "
            "for every input, no gradient reaches earlier layers, and the moving statistics "
            "learn nothing useful",
            "train with batches larger than 1 (leave the batch dimension None), or drop "
            "BatchNorm after that fully connected layer / use is_training=False there"))
    if few and training_graph:
        name, shape, count = few[0]
        more = f" (and {len(few) - 1} more layers)" if len(few) > 1 else ""
        findings.append(Finding(
            WARNING, "bn-few-values", f"BatchNorm in training mode over {FEW_VALUES} or fewer "
            "values per channel", f"{name} normalises {count} values per channel (batch x "
            f"height x width of its input {shape}){more}",
            "the variance of so few values is tiny or 0 for some channels, and dividing by it "
            "magnifies gradients: a step at an ordinary learning rate can blow the weights "
            "up and leave a checkpoint that computes NaN",
            "train with a larger --batch_size or --train_image_size (batch x final map size "
            f"above {FEW_VALUES}), or with --freeze_batch_norm"))
    return findings


def check_training_graph(meta_graph_def):
    """Findings for a training MetaGraphDef (what a train dir's ``.meta`` holds)."""
    return (batch_norm_size_findings(meta_graph_def.graph_def)
            + _update_findings(meta_graph_def)
            + precision_checks.graph_findings(meta_graph_def.graph_def))


def _update_findings(meta_graph_def):
    graph_def = meta_graph_def.graph_def
    targets = []
    if "train_op" in meta_graph_def.collection_def:
        targets = _names(meta_graph_def.collection_def["train_op"])
    if not targets:
        targets = [n.name for n in graph_def.node if n.op.startswith(_APPLY_PREFIXES)]
    updates = _moving_average_updates(graph_def, meta_graph_def)
    if not targets:
        return [Finding(NOTE, "not-a-training-graph", "no train op in the graph",
                        "no TRAIN_OP collection and no optimizer Apply* ops",
                        "the BatchNorm update check applies to training graphs only",
                        "pass the MetaGraph of the training run (the .meta beside its "
                        "checkpoints)")]
    if not updates:
        return [Finding(NOTE, "no-bn-updates", "no BatchNorm update ops in the graph",
                        "no UPDATE_OPS collection and no AssignMovingAvg ops",
                        "either the network has no BatchNorm, BatchNorm is frozen, or it "
                        "updates in place (updates_collections=None)", "nothing to do")]
    run = {node.name for _, node in graphs.reachable_nodes(graph_def, targets)}
    missing = [name for name in updates if name not in run]
    if not missing:
        return [Finding(NOTE, "bn-updates-run", "the train op runs every BatchNorm update",
                        f"{len(updates)} moving-average updates are ancestors of "
                        f"{listed(targets, 2)}", "moving statistics follow the data",
                        "nothing to do")]
    return [Finding(
        ERROR, "bn-updates-not-run", "the train op never runs the BatchNorm updates",
        f"{len(missing)} of {len(updates)} moving-average update ops are not ancestors of "
        f"the train op ({listed(targets, 2)}): {listed(missing)}",
        "every training step normalises with batch statistics but the moving mean and "
        "variance used with is_training=False stay at their initial values, so eval and "
        "served accuracy collapse while training accuracy looks fine",
        "build the train op with slim.learning.create_train_op (it adds the UPDATE_OPS "
        "dependencies), or wrap minimize() in tf.control_dependencies("
        "tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS))")]


def sinks(graph_def):
    """Nodes no other node reads: the outputs of a frozen inference graph."""
    used = {i.split(":")[0].lstrip("^") for n in graph_def.node for i in n.input}
    return [n.name for n in graph_def.node if n.name not in used and n.op not in ("NoOp",)]


def check_serving_graph(graph_def, outputs=None):
    """Findings for an inference graph; ``outputs`` default to its sink nodes."""
    outputs = outputs or sinks(graph_def)
    findings = (batch_norm_size_findings(graph_def, training_graph=False)
                + precision_checks.graph_findings(graph_def))
    training = graphs.training_batch_norms(graph_def, outputs)
    if training:
        findings.append(Finding(
            ERROR, "serving-bn-training-mode", "BatchNorm in training mode in a serving graph",
            f"{len(training)} FusedBatchNorm ops with is_training=True feed "
            f"{listed(outputs, 2)}: {listed(training)}",
            "each image is normalised with the statistics of the batch it arrives in: "
            "predictions depend on the other images, and a batch of one gives garbage",
            "export with is_training=False (slimtune-export does), or call a Keras model "
            "with training=False"))
    randoms = graphs.random_ops(graph_def, outputs)
    if randoms:
        findings.append(Finding(
            ERROR, "serving-random-ops", "the outputs depend on random ops (dropout active)",
            f"{len(randoms)} random ops feed {listed(outputs, 2)}: {listed(randoms)}",
            "the same image gives a different answer on every call",
            "export with is_training=False so dropout is the identity"))
    phase = [n.name for n in graph_def.node
             if n.op in ("Placeholder", "PlaceholderWithDefault")
             and n.name.rsplit("/", 1)[-1].startswith("keras_learning_phase")]
    if phase:
        findings.append(Finding(
            WARNING, "serving-learning-phase", "a keras_learning_phase placeholder in a "
            "serving graph", f"placeholders: {listed(phase)}",
            "BatchNorm and dropout mode is decided by whoever feeds the graph; fed 1 (or "
            "defaulting to it), the model runs in training mode",
            "export after tf.keras.backend.set_learning_phase(0), or from a model called "
            "with training=False"))
    return findings
