"""slimtune-export: the frozen .pb and the SavedModel compute what the checkpoint computes."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from slim_checkpoints import make_checkpoint
from slimtune import export, registry
from slimtune.convert import parity
from slimtune.errors import UsageError

MODEL, SIZE = "resnet_v2_50", 33


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    prefix = make_checkpoint(str(root / "ckpt" / "model.ckpt"), MODEL, 7, image_size=SIZE)
    sidecar = export.export(export.ExportConfig(
        checkpoint_path=prefix, model_name=MODEL, image_size=SIZE,
        output_file=str(root / "frozen.pb"), output_dir=str(root / "saved_model")))
    images = parity.random_images(3, SIZE, seed=3)
    spec = registry.get(MODEL)
    reference, _ = parity.slim_outputs(spec, prefix, images, 7, spec.batch_norm)
    return root, sidecar, images, reference


def test_frozen_graph_matches_the_checkpoint(exported):
    root, sidecar, images, reference = exported
    with open(root / "frozen.pb.json") as f:
        assert json.load(f)["input_node"] == sidecar["input_node"] == "input"
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString((root / "frozen.pb").read_bytes())
    assert not any(n.op in ("VariableV2", "VarHandleOp") for n in graph_def.node)
    assert not any(n.op.startswith("FusedBatchNorm") and n.attr["is_training"].b
                   for n in graph_def.node)
    with tf.Graph().as_default() as graph:
        tf.graph_util.import_graph_def(graph_def, name="")
        with tf.compat.v1.Session(graph=graph) as sess:
            logits = sess.run("logits:0", {"input:0": images})
    diff = parity.difference(reference, logits)
    print("frozen .pb:", diff.line())
    assert diff.max_rel <= 1e-5


def test_saved_model_serves_in_tf2(exported):
    root, _, images, reference = exported
    served = tf.saved_model.load(str(root / "saved_model"))
    out = served.signatures["serving_default"](images=tf.constant(images))
    diff = parity.difference(reference, out["logits"].numpy())
    print("SavedModel:", diff.line())
    assert diff.max_rel <= 1e-5
    np.testing.assert_allclose(out["probabilities"].numpy().sum(-1), 1.0, rtol=1e-5)


def test_existing_output_dir_is_refused(exported):
    root, *_ = exported
    with pytest.raises(UsageError, match="already exists"):
        export.export(export.ExportConfig(checkpoint_path=str(root / "ckpt"),
                                          model_name=MODEL, output_dir=str(root / "saved_model")))
