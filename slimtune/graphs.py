"""Read inference graphs for the two things that make a served model lie.

An inference graph must be a pure function of its input.  Two mistakes break that and
are invisible in the graph's signature: dropout left active (a random op the outputs
depend on: answers change from call to call) and BatchNorm in training mode (each
image is normalised with the statistics of whatever batch it arrived in).  Both come
from exporting a graph built with ``is_training=True``.  The helpers here look at a
``GraphDef`` (frozen ``.pb``, a SavedModel's signature graph) including the bodies of
the functions it calls, which is where TF2/Keras exports keep their layers.
"""

# Op types that draw random numbers.  Stateless ones count too: Keras 3's dropout uses
# them with a seed that changes on every call.
_RANDOM_TYPES = {"TruncatedNormal", "Multinomial", "StatefulUniform", "StatefulUniformInt",
                 "StatefulStandardNormalV2", "StatefulTruncatedNormal"}


_STATELESS_RANDOM_PREFIXES = ("StatelessTruncatedNormal", "StatelessMultinomial",
                              "StatelessParameterizedTruncatedNormal")


def is_random(op_type):
    """Random ops, stateless ones included; ``StatelessIf``/``StatelessWhile`` (TF2
    control flow, e.g. a ``tf.cond`` on the learning phase) are not."""
    return ("Random" in op_type or op_type in _RANDOM_TYPES
            or op_type.startswith(_STATELESS_RANDOM_PREFIXES))


def _function_bodies(graph_def):
    return {f.signature.name: f.node_def for f in graph_def.library.function}


def _called_functions(node):
    """Names of the library functions a node calls (as its op or through an attr)."""
    names = [node.op]
    for value in node.attr.values():
        if value.HasField("func"):
            names.append(value.func.name)
        names.extend(f.name for f in value.list.func)
    return names


def reachable_nodes(graph_def, outputs=None):
    """Nodes the ``outputs`` depend on (all nodes when ``outputs`` is None), with the
    nodes of every function they call, recursively.  Yields ``(scope, NodeDef)`` where
    scope is ``""`` for the graph and the function's name inside a body."""
    bodies = _function_bodies(graph_def)
    by_name = {n.name: n for n in graph_def.node}
    if outputs is None:
        chosen = list(graph_def.node)
    else:
        chosen, seen = [], set()
        stack = [name.split(":")[0].lstrip("^") for name in outputs]
        while stack:
            name = stack.pop()
            if name in seen or name not in by_name:
                continue
            seen.add(name)
            node = by_name[name]
            chosen.append(node)
            stack.extend(i.split(":")[0].lstrip("^") for i in node.input)
    visited = set()
    pending = []
    for node in chosen:
        yield "", node
        pending.extend(_called_functions(node))
    while pending:
        name = pending.pop()
        if name in visited or name not in bodies:
            continue
        visited.add(name)
        for node in bodies[name]:
            yield name, node
            pending.extend(_called_functions(node))


def random_ops(graph_def, outputs=None):
    """Names (``function/node`` inside bodies) of random ops the outputs depend on."""
    return [f"{scope}/{n.name}" if scope else n.name
            for scope, n in reachable_nodes(graph_def, outputs) if is_random(n.op)]


def training_batch_norms(graph_def, outputs=None):
    """Names of ``FusedBatchNorm*`` ops with ``is_training=True`` the outputs depend on."""
    return [f"{scope}/{n.name}" if scope else n.name
            for scope, n in reachable_nodes(graph_def, outputs)
            if n.op.startswith("FusedBatchNorm") and n.attr["is_training"].b]
