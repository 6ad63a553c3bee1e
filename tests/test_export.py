"""slimtune-export: what the frozen .pb and the SavedModel hold besides their logits.

Parity of both forms with the checkpoint graph is checked per architecture in the
converter tests (``conversion.check_forms``) and in the main job test.
"""

import json

import numpy as np
import pytest
import tensorflow as tf

from slim_checkpoints import make_checkpoint
from slimtune import export, probe
from slimtune.errors import UsageError

MODEL, SIZE = "inception_v2", 33


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    prefix = make_checkpoint(str(root / "ckpt" / "model.ckpt"), MODEL, 7, image_size=SIZE)
    sidecar = export.export(export.ExportConfig(
        checkpoint_path=prefix, model_name=MODEL, image_size=SIZE,
        output_file=str(root / "frozen.pb"), output_dir=str(root / "saved_model")))
    return root, sidecar


def test_frozen_graph_is_constants_in_inference_mode_with_named_nodes(exported):
    root, sidecar = exported
    with open(root / "frozen.pb.json") as f:
        stored = json.load(f)
    assert stored["input_node"] == sidecar["input_node"] == "input"
    assert stored["output_nodes"] == ["logits", "probabilities"]
    assert stored["model_name"] == MODEL and stored["num_classes"] == 7
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString((root / "frozen.pb").read_bytes())
    assert not any(n.op in ("VariableV2", "VarHandleOp") for n in graph_def.node)
    assert not any(n.op.startswith("FusedBatchNorm") and n.attr["is_training"].b
                   for n in graph_def.node)
    assert not any("dropout" in n.name.lower() and "random" in n.op.lower()
                   for n in graph_def.node)


def test_saved_model_serves_probabilities_in_tf2(exported):
    root, _ = exported
    served = tf.saved_model.load(str(root / "saved_model"))
    out = served.signatures["serving_default"](images=tf.constant(probe.random_images(3, SIZE)))
    assert out["logits"].shape == (3, 7)
    np.testing.assert_allclose(out["probabilities"].numpy().sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(out["probabilities"].numpy(),
                               tf.nn.softmax(out["logits"]).numpy(), rtol=1e-5)


def test_existing_output_dir_is_refused(exported):
    root, _ = exported
    with pytest.raises(UsageError, match="already exists"):
        export.export(export.ExportConfig(checkpoint_path=str(root / "ckpt"),
                                          model_name=MODEL, output_dir=str(root / "saved_model")))
