"""slimtune-verify: faithful forms pass, planted faults are caught and named."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from slim_checkpoints import freeze, make_checkpoint
from slimtune import compare, export, registry, verify
from slimtune.forms import open_form
from slimtune import convert
from slimtune.nets import batch_norm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL, SIZE = "resnet_v1_50", 33
FAULTY_BN = "block2.unit_3.bottleneck_v1.conv1.BatchNorm"


@pytest.fixture(scope="module")
def forms(tmp_path_factory):
    """A checkpoint and its faithful .keras and .pb; a .keras with one BN epsilon changed."""
    root = tmp_path_factory.mktemp("verify")
    prefix = make_checkpoint(str(root / "ckpt" / "model.ckpt"), MODEL, 7, image_size=SIZE)
    convert.convert(convert.ConvertConfig(checkpoint_path=prefix, output_dir=str(root / "k"),
                                          image_size=SIZE), log=print)
    export.export(export.ExportConfig(checkpoint_path=prefix, model_name=MODEL,
                                      image_size=SIZE, output_file=str(root / "frozen.pb")))
    model = keras.models.load_model(str(root / "k" / "model.keras"))
    model.get_layer(FAULTY_BN).epsilon = 1e-2
    model.save(str(root / "faulty.keras"))
    # Moving statistics reset to their initial values, as when a conversion reads the
    # wrong tensors or a model is rebuilt and only the trainable weights are copied.
    model = keras.models.load_model(str(root / "k" / "model.keras"))
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(np.zeros(layer.moving_mean.shape))
            layer.moving_variance.assign(np.ones(layer.moving_variance.shape))
    model.save(str(root / "reset.keras"))
    return {"ckpt": prefix, "keras": str(root / "k" / "model.keras"),
            "pb": str(root / "frozen.pb"), "faulty": str(root / "faulty.keras"),
            "reset": str(root / "reset.keras"), "root": root}


def _verify(*flags):
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "verify_model.py"),
                             *flags], capture_output=True, text=True, cwd=ROOT, timeout=600)
    return result.returncode, result.stdout, result.stderr.strip().splitlines()


@pytest.mark.slow  # the main job (test_quickstart) verifies every form against the graph
def test_faithful_forms_pass(forms, tmp_path):
    report = tmp_path / "r.json"
    code, out, err = _verify(f"--reference={forms['ckpt']}", f"--candidate={forms['keras']}",
                             f"--model_name={MODEL}", "--random=4", f"--image_size={SIZE}",
                             f"--report_json={report}")
    assert code == 0, out + "\n".join(err)
    assert "verdict              PASS" in out
    data = json.loads(report.read_text())
    # PASS is the bound; top-1 agreement is printed, not asserted (near ties may flip).
    assert data["passed"] and len(data["per_class_max_abs"]) == 7
    code, out, _ = _verify(f"--reference={forms['ckpt']}", f"--candidate={forms['pb']}",
                           f"--model_name={MODEL}", "--random=2", f"--image_size={SIZE}")
    assert code == 0, out


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """scikit-image's bundled photographs as PNG files."""
    from skimage import data

    root = tmp_path_factory.mktemp("photos")
    paths = []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "logo", "hubble_deep_field",
                 "immunohistochemistry", "colorwheel"):
        image = getattr(data, name)()[..., :3]
        path = str(root / f"{name}.png")
        tf.io.write_file(path, tf.io.encode_png(image))
        paths.append(path)
    return paths


@pytest.mark.parametrize("preprocessing,count", [("inception", 1), pytest.param("vgg", 8, marks=pytest.mark.slow)])
def test_faithful_conversion_on_real_photos(forms, photos, preprocessing, count):
    images = verify.inputs(photos[:count], size=SIZE, preprocessing=preprocessing)
    assert images.shape == (count, SIZE, SIZE, 3)
    ref = open_form(forms["ckpt"], MODEL)
    cand = open_form(forms["keras"])
    report = compare.compare(ref.run(images), cand.run(images))
    print(preprocessing, count, "\n".join(report.lines()))
    assert report.passed  # within the bound; top-1 agreement printed above


def test_layerwise_names_the_changed_bn_layer(forms):
    images = verify.inputs(random=2, size=SIZE)
    ref = open_form(forms["ckpt"], MODEL)
    report = compare.compare(ref.run(images), open_form(forms["faulty"]).run(images))
    assert not report.passed
    rows, bad = verify.layerwise(forms["ckpt"], forms["faulty"], images, MODEL)
    assert bad is not None
    key, layer, diff = bad
    print("first divergence:", key, layer, diff.line())
    assert key == "resnet_v1_50/block2/unit_3/bottleneck_v1/conv1"
    assert all(d.max_rel <= 1e-5 for _, _, d in rows[:rows.index(bad)])


def test_moving_statistics_reset_to_0_1_are_caught_and_named(forms, tmp_path):
    report_file = tmp_path / "r.json"
    code, out, _ = _verify(f"--reference={forms['ckpt']}", f"--candidate={forms['reset']}",
                           f"--model_name={MODEL}", "--random=2", f"--image_size={SIZE}",
                           "--layerwise", f"--report_json={report_file}")
    print(out)
    assert code == 1
    assert "verdict              FAIL" in out
    assert "the candidate's BatchNorm moving statistics are at their initial values" in out
    assert "in 53 of 53 layers" in out  # every BN layer of resnet_v1_50
    # The first layer that reads the statistics is the first to diverge.
    assert json.loads(report_file.read_text())["first_divergence"] == "resnet_v1_50/conv1"


@pytest.mark.slow  # test_doctor's live dropout in a frozen graph runs by default
def test_dropout_left_active_in_an_exported_graph_is_reported(tmp_path):
    model_name, size = "inception_v2", 33
    prefix = make_checkpoint(str(tmp_path / "model.ckpt"), model_name, 7, image_size=size)
    # The training graph exported as is (BN frozen, as in a --freeze_batch_norm run, so
    # dropout is the only difference from an inference graph).
    bn = registry.get(model_name).batch_norm.replace(mode=batch_norm.FROZEN)
    freeze(prefix, str(tmp_path / "train_graph.pb"), model_name, size, 7, is_training=True,
           batch_norm=bn)
    code, out, _ = _verify(f"--reference={prefix}", f"--candidate={tmp_path / 'train_graph.pb'}",
                           f"--model_name={model_name}", "--random=4")
    print(out)
    assert code == 1
    assert "NONDETERMINISTIC" in out
    assert "InceptionV2/Logits/Dropout_1b/dropout/random_uniform/RandomUniform" in out
    # The fixed variant: the same checkpoint through slimtune-export.
    export.export(export.ExportConfig(checkpoint_path=prefix, model_name=model_name,
                                      image_size=size, output_file=str(tmp_path / "ok.pb")))
    code, out, _ = _verify(f"--reference={prefix}", f"--candidate={tmp_path / 'ok.pb'}",
                           f"--model_name={model_name}", "--random=4")
    assert code == 0, out
    assert "NONDETERMINISTIC" not in out


def test_background_dropped_on_one_side_is_named(forms, tmp_path):
    convert.convert(convert.ConvertConfig(checkpoint_path=forms["ckpt"], image_size=SIZE,
                                          output_dir=str(tmp_path / "k6"), drop_background=True))
    code, out, _ = _verify(f"--reference={forms['ckpt']}",
                           f"--candidate={tmp_path / 'k6' / 'model.keras'}",
                           f"--model_name={MODEL}", "--random=4", f"--image_size={SIZE}")
    assert code == 1
    assert "CLASS MISALIGNMENT" in out and "class 0" in out


def test_compare_detects_off_by_one_and_noise():
    rng = np.random.RandomState(0)
    logits = rng.normal(0, 3, (5, 10))
    assert compare.compare(logits, logits).passed
    shifted = np.concatenate([logits[:, 1:], rng.normal(0, 3, (5, 1))], axis=1)
    assert "shifted by one" in compare.compare(logits, shifted).misalignment


@pytest.mark.parametrize("kind", ["text file", "missing signature", "unknown node", "sizes"])
def test_unusable_input_exits_2(forms, tmp_path, kind):
    if kind == "text file":
        bogus = tmp_path / "notes.keras"
        bogus.write_text("hello")
        flags = [f"--reference={forms['ckpt']}", f"--candidate={bogus}"]
    elif kind == "missing signature":
        export.export(export.ExportConfig(checkpoint_path=forms["ckpt"], model_name=MODEL,
                                          image_size=SIZE, output_dir=str(tmp_path / "sm")))
        flags = [f"--reference={forms['ckpt']}", f"--candidate={tmp_path / 'sm'}",
                 "--signature=predict_v9"]
    elif kind == "unknown node":
        flags = [f"--reference={forms['ckpt']}", f"--candidate={forms['pb']}",
                 "--output_node=Softmax_nowhere"]
    else:
        flags = [f"--reference={forms['pb']}", f"--candidate={forms['keras']}",
                 "--image_size=64"]
    code, out, err = _verify(*flags, f"--model_name={MODEL}", "--random=1")
    assert code == 2, out + "\n".join(err)
    assert err[0].startswith("error: ")
    if kind == "text file":  # Keras itself says "File not found" for a file that exists
        assert err[0].startswith(f"error: {bogus} is not a valid .keras archive (not a zip "
                                 "file): ")
