"""research/slim's exported and frozen graphs (issue 23 parts 3 and 4).

Each graph is made as users make it: ``slimtune-export`` without ``--checkpoint_path``
writes what upstream's ``export_inference_graph.py`` writes (the architecture only,
placeholder ``input``, upstream's node names), then TF 2.21's own
``python -m tensorflow.python.tools.freeze_graph`` freezes it with a checkpoint at
``<Scope>/Predictions/Reshape_1``: probabilities, ``[B, 1, 1, C]`` for ResNet.
slimtune-verify and the doctor take the result, with or without ``--output_node``.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from slim_checkpoints import make_checkpoint
from slimtune import doctor, export, forms, verify
from slimtune.errors import UnusableInput, UsageError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# model: (size, classes, export flags, node frozen at, logits node walked back to,
# squeezed).  ResNet v1's 1000 classes are ImageNet's 1001 with --labels_offset=1.
CASES = {
    "resnet_v1_50": (64, 1000, ["--labels_offset=1"], "resnet_v1_50/predictions/Reshape_1",
                     "resnet_v1_50/logits/BiasAdd", True),
    "inception_v3": (107, 1001, [], "InceptionV3/Predictions/Reshape_1",
                     "InceptionV3/Logits/SpatialSqueeze", False),
    "mobilenet_v1": (32, 1001, [], "MobilenetV1/Predictions/Reshape_1",
                     "MobilenetV1/Logits/SpatialSqueeze", False),
}


def _run(*command):
    result = subprocess.run([sys.executable, *command], capture_output=True, text=True,
                            cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def freeze_graph(graph, prefix, nodes, output):
    """TF 2.21's freeze_graph, run as users run it."""
    _run("-m", "tensorflow.python.tools.freeze_graph", f"--input_graph={graph}",
         "--input_binary=true", f"--input_checkpoint={prefix}",
         f"--output_node_names={','.join(nodes)}", f"--output_graph={output}")
    return str(output)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """``made(model)``: (model, checkpoint prefix, frozen .pb) made by the upstream
    recipe, once per model for the module."""
    cache = {}

    def make(model):
        if model not in cache:
            cache[model] = _make(model, tmp_path_factory.mktemp(model))
        return cache[model]

    return make


def _make(model, root):
    size, classes, flags, node, _, _ = CASES[model]
    prefix = make_checkpoint(str(root / "ckpt" / "model.ckpt"), model, classes,
                             image_size=size)
    out = _run(os.path.join("tools", "export_inference_graph.py"), f"--model_name={model}",
               f"--image_size={size}", *flags, f"--output_file={root / 'inf_graph.pb'}")
    assert f"--output_node_names={node} " in out  # the freeze command is printed
    frozen = freeze_graph(root / "inf_graph.pb", prefix, [node], root / "frozen.pb")
    return model, prefix, frozen


def _slow(*models):
    return [pytest.param(m, marks=pytest.mark.slow) if m in models else m for m in CASES]


def _verify(prefix, candidate, model, **flags):
    lines = []
    result = verify.verify(verify.VerifyConfig(
        reference=prefix, candidate=candidate, model_name=model, random=4,
        image_size=CASES[model][0], **flags), log=lines.append)
    print("\n".join(lines))
    return result, "\n".join(lines)


@pytest.mark.parametrize("model", list(CASES))
def test_verify_takes_the_frozen_graph_without_output_node(made, model):
    model, prefix, frozen = made(model)
    _, _, _, node, logits, squeezed = CASES[model]
    result, out = _verify(prefix, frozen, model)
    assert result["passed"], out
    assert (f"candidate output: {node}, the graph's only classifier output (no "
            f"--output_node), is probabilities (a Softmax): walked back to the logits node "
            f"{logits}") in out
    assert ("squeezed [B,1,1,C] to [B,C]" in out) == squeezed
    assert tuple(result["num_classes"]) == (CASES[model][1],) * 2


@pytest.mark.parametrize("model", _slow("inception_v3", "mobilenet_v1"))
def test_verify_takes_the_frozen_graph_at_its_output_node(made, model):
    model, prefix, frozen = made(model)
    node = CASES[model][3]
    result, out = _verify(prefix, frozen, model, output_node=node)
    assert result["passed"], out
    assert f"candidate output: {node} is probabilities (a Softmax): walked back" in out


@pytest.mark.parametrize("model", _slow("resnet_v1_50", "inception_v3"))
def test_the_doctor_runs_the_frozen_graph_on_images(made, model, tmp_path):
    model, _, frozen = made(model)
    paths = []
    for i in range(2):
        image = np.random.RandomState(i).randint(0, 255, (40, 50, 3), dtype=np.uint8)
        paths.append(str(tmp_path / f"{i}.png"))
        tf.io.write_file(paths[-1], tf.io.encode_png(image))
    report = doctor.diagnose(doctor.DoctorConfig(graph=frozen, images=paths,
                                                 image_size=CASES[model][0]))
    print("\n".join(report.lines()))
    assert not [f for f in report.findings if f.fatal]
    assert any("walked back to the logits node" in c for c in report.checked)


def _edited(frozen, path, edit):
    graph_def = forms.read_graph_def(frozen)
    edit(graph_def)
    with open(path, "wb") as f:
        f.write(graph_def.SerializeToString())
    return str(path)


def test_two_classifier_outputs_are_listed_not_guessed(made, tmp_path):
    """Frozen at the probabilities and the pooled features (an embedding): which one is
    meant cannot be told, so the error lists both on its first line."""
    model, prefix, frozen = made("resnet_v1_50")

    def add_features(graph_def):
        node = graph_def.node.add(name="features", op="Identity",
                                  input=["resnet_v1_50/pool5"])
        node.attr["T"].type = tf.float32.as_datatype_enum

    two = _edited(frozen, tmp_path / "two.pb", add_features)
    with pytest.raises(UnusableInput) as raised:
        _verify(prefix, two, model)
    first = str(raised.value).splitlines()[0]
    assert "has no node 'logits' and 2 classifier outputs: pass --output_node" in first
    assert "resnet_v1_50/predictions/Reshape_1 (probabilities, " in first
    assert "features (logits, (None, 1, 1, 2048))" in first


def test_probabilities_without_known_logits_compare_with_a_softmax(made, tmp_path):
    """A Softmax whose input has no known shape (here an op of unknown rank spliced in
    before it, passing the values on): its input cannot be told to be the logits, so
    the probabilities are compared with the softmax of the checkpoint's logits."""
    model, prefix, frozen = made("resnet_v1_50")

    def hide_logits(graph_def):
        opaque = graph_def.node.add(name="opaque", op="PlaceholderWithDefault",
                                    input=["resnet_v1_50/logits/BiasAdd"])
        opaque.attr["dtype"].type = tf.float32.as_datatype_enum
        opaque.attr["shape"].shape.unknown_rank = True
        reshape = next(n for n in graph_def.node if n.name == "resnet_v1_50/predictions/Reshape")
        reshape.input[0] = "opaque"

    blind = _edited(frozen, tmp_path / "blind.pb", hide_logits)
    result, out = _verify(prefix, blind, model, output_node=CASES[model][3])
    assert result["passed"], out
    assert ("is probabilities (a Softmax) with no logits of a known [B,C] or [B,1,1,C] "
            "shape behind it: probabilities compared with the softmax of the other form's "
            "logits; squeezed [B,1,1,C] to [B,C]") in out


# -- slimtune-export without --checkpoint_path: upstream's export_inference_graph.py ----
def _architecture(tmp_path, **flags):
    path = str(tmp_path / "graph.pb")
    lines = []
    export.export(export.ExportConfig(output_file=path, **flags), log=lines.append)
    return forms.read_graph_def(path), "\n".join(lines)


def test_architecture_graph_has_upstreams_input_nodes_and_flags(tmp_path):
    from slimtune.data import tfrecord

    tfrecord.write_labels(str(tmp_path), {i: f"class{i}" for i in range(7)})
    graph_def, out = _architecture(
        tmp_path, model_name="resnet_v1_50", image_size=32, batch_size=2,
        dataset_name="own", dataset_dir=str(tmp_path), write_text_graphdef=True,
        use_grayscale=True)
    print(out)
    nodes = {n.name: n for n in graph_def.node}
    shape = [d.size for d in nodes["input"].attr["shape"].shape.dim]
    assert nodes["input"].op == "Placeholder" and shape == [2, 32, 32, 1]
    assert nodes["resnet_v1_50/logits/biases"].op == "VariableV2"  # freeze_graph needs these
    assert [d.size for d in nodes["resnet_v1_50/logits/biases"].attr["shape"].shape.dim] == [7]
    assert "resnet_v1_50/predictions/Reshape_1" in nodes
    assert not any(n.op == "VarHandleOp" for n in graph_def.node)
    assert not any(n.attr["is_training"].b for n in graph_def.node)
    assert (tmp_path / "graph.pb").read_text().startswith("node {")  # text GraphDef
    assert "--input_binary=false" in out


def test_architecture_graph_in_training_mode_and_mobilenet_names(tmp_path):
    graph_def, out = _architecture(tmp_path, model_name="mobilenet_v1", image_size=32,
                                   is_training=True)
    nodes = {n.name for n in graph_def.node}
    assert {"MobilenetV1/Logits/SpatialSqueeze", "MobilenetV1/Predictions/Reshape_1"} <= nodes
    assert any(n.op.startswith("FusedBatchNorm") and n.attr["is_training"].b
               for n in graph_def.node)
    assert "1001 classes (imagenet - labels_offset 0)" in out


@pytest.mark.parametrize("flags,message", [
    ({"model_name": "resnet_v1_50", "quantize": True}, "--quantize is not supported: TF 2 "
     "has no quantize rewrite for TF1 graphs"),
    ({"model_name": "resnet_v1_50", "output_dir": "sm"}, "--output_dir (a SavedModel) needs "
     "weights: pass --checkpoint_path"),
    ({"checkpoint_path": "ckpt", "is_training": True}, "--is_training applies to the "
     "architecture-only graph"),
])
def test_export_refuses_what_it_cannot_do(tmp_path, flags, message):
    with pytest.raises(UsageError) as raised:
        _architecture(tmp_path, **flags)
    assert message in str(raised.value)


def test_logits_and_their_probabilities_are_one_output():
    """slimtune's own graph without its JSON: 'logits' and 'probabilities' (its softmax)
    are sinks reading the same logits, so the graph has one classifier output."""
    from slimtune import graph_outputs

    with tf.Graph().as_default() as graph:
        images = tf.compat.v1.placeholder(tf.float32, [None, 4, 4, 3], name="input")
        scores = tf.matmul(tf.reduce_mean(images, [1, 2]), tf.ones([3, 5]))
        tf.nn.softmax(scores, name="probabilities")
        tf.identity(scores, name="logits")
    output = graph_outputs.choose(graph, "g.pb")
    assert output.tensor == "logits:0" and not output.probabilities
    assert output.note() == ("read at logits, the graph's only classifier output (no "
                             "--output_node)")
