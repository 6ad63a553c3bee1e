"""slimtune-convert end to end: outputs, reloading, planted faults and bad input."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from slim_checkpoints import make_checkpoint, read, write
from slimtune import compare, probe, registry, slim_run, train
from slimtune import convert
from slimtune.keras_nets import layers
from slimtune.errors import CheckpointError, SlimtuneError, UsageError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = "resnet_v1_50"
SIZE = 33  # odd input: SAME-padded stride-2 layers see odd and even maps
EVEN = 64


@pytest.fixture(scope="module")
def checkpoint_7(tmp_path_factory):
    """A 7-class resnet_v1_50 checkpoint with random weights and BN statistics."""
    return make_checkpoint(str(tmp_path_factory.mktemp("c7") / "model.ckpt"), MODEL, 7,
                           image_size=SIZE)


@pytest.fixture(scope="module")
def finetuned(digits_dir, tmp_path_factory):
    """Two steps of tools/train_image_classifier's loop with a non-default BN epsilon."""
    train_dir = str(tmp_path_factory.mktemp("finetune"))
    train.train(train.TrainConfig(
        train_dir=train_dir, dataset_name="digits", model_name=MODEL,
        preprocessing_name="lenet", train_image_size=32, batch_size=8,
        max_number_of_steps=3, batch_norm_epsilon=1e-3, batch_norm_decay=0.5,
        optimizer="sgd", learning_rate=0.01, seed=0), log=print)
    return train_dir


def test_finetuned_checkpoint_converts_with_no_flags(finetuned, tmp_path):
    out = str(tmp_path / "keras")
    meta = convert.convert(convert.ConvertConfig(checkpoint_path=finetuned, output_dir=out))
    assert meta["model_name"] == MODEL and meta["num_classes"] == 10
    assert meta["batch_norm"]["epsilon"] == 1e-3  # from slimtune.json, not the 1e-5 default
    assert meta["labels"]["3"] == "3" and meta["image_size"] == 32
    assert meta["parity"]["random"]["max_rel"] <= 1e-5
    assert sorted(os.listdir(out)) == ["model.keras", "saved_model", "slimtune.json"]
    model = keras.models.load_model(os.path.join(out, "model.keras"))
    bn = model.get_layer("block2.unit_1.bottleneck_v1.conv1.BatchNorm")
    assert bn.epsilon == 1e-3 and bn.momentum == 0.5


_RELOAD = """
import sys, numpy as np, keras, tensorflow as tf
out, images = sys.argv[1], np.load(sys.argv[2])
model = keras.models.load_model(out + "/model.keras", safe_mode=True)
served = tf.saved_model.load(out + "/saved_model")
np.save(sys.argv[3], np.asarray(model(images, training=False)))
np.save(sys.argv[4], served.serve(tf.constant(images)).numpy())
with tf.Graph().as_default(), tf.compat.v1.Session() as sess:  # TF1's loader, as TF Serving
    meta = tf.compat.v1.saved_model.load(sess, ["serve"], out + "/saved_model")
    sig = meta.signature_def["serving_default"]
    np.save(sys.argv[5], sess.run(sig.outputs["output_0"].name,
                                  {sig.inputs["images"].name: images}))
"""


@pytest.mark.slow  # the main job (test_quickstart) reloads and checks both Keras forms
def test_outputs_reload_in_a_fresh_process(checkpoint_7, tmp_path):
    out = str(tmp_path / "keras")
    pictures = []  # real image files join the parity check; one slim graph serves both sets
    for i in range(2):
        pixels = np.random.RandomState(i).randint(0, 256, (48, 40, 3), dtype=np.uint8)
        pictures.append(str(tmp_path / f"picture{i}.png"))
        tf.io.write_file(pictures[-1], tf.io.encode_png(pixels))
    lines = []
    meta = convert.convert(convert.ConvertConfig(checkpoint_path=checkpoint_7, output_dir=out,
                                                 image_size=SIZE, images=pictures),
                           log=lines.append)
    print("\n".join(lines))
    assert meta["parity"]["images"]["count"] == 2 and meta["parity"]["random"]["count"] == 4
    assert meta["parity"]["images"]["max_rel"] <= 1e-5
    assert sum(line.startswith("slim graph built") for line in lines) == 1
    images = probe.random_images(3, 40, seed=5)  # open input size: 40 px works too
    np.save(tmp_path / "images.npy", images)
    in_memory = keras.models.load_model(os.path.join(out, "model.keras"))
    expected = np.asarray(in_memory(images, training=False))
    # The SavedModel's signature has open shapes, and TensorFlow picks conv kernels by
    # what it knows of the shapes: run the in-memory model the same way to compare like
    # with like.  With oneDNN kernels (slimtune's default) a fresh process may also pick
    # another algorithm, so reloads match to float32 summation noise (measured 2e-6
    # relative at max |logit| 250), not bit for bit.
    open_shape = tf.TensorSpec([None, None, None, 3], tf.float32)
    as_graph = np.asarray(tf.function(lambda x: in_memory(x, training=False),
                                      input_signature=[open_shape])(images))
    subprocess.run([sys.executable, "-c", _RELOAD, out, str(tmp_path / "images.npy"),
                    str(tmp_path / "k.npy"), str(tmp_path / "s.npy"), str(tmp_path / "v1.npy")],
                   check=True,
                   env={**os.environ, "PYTHONPATH": ""}, cwd=str(tmp_path))
    reloaded, served = np.load(tmp_path / "k.npy"), np.load(tmp_path / "s.npy")
    served_v1 = np.load(tmp_path / "v1.npy")
    print("model.keras reloaded:", compare.difference(expected, reloaded).line())
    print("SavedModel vs graph:", compare.difference(as_graph, served).line())
    print("SavedModel vs eager:", compare.difference(expected, served).line())
    print("SavedModel in TF1's loader vs graph:", compare.difference(as_graph, served_v1).line())
    assert compare.difference(expected, reloaded).max_rel <= 1e-5
    assert compare.difference(as_graph, served).max_rel <= 1e-5
    assert compare.difference(expected, served).max_rel <= 1e-5
    assert compare.difference(as_graph, served_v1).max_rel <= 1e-5
    # ...and the in-memory conversion equals the slim graph at that size too
    slim, _ = slim_run.slim_outputs(registry.get(MODEL), checkpoint_7, images, 7,
                                  registry.get(MODEL).batch_norm)
    assert compare.difference(slim, expected).max_rel <= 1e-5


# -- planted faults: the parity check must be able to fail ------------------------------

def _diff_against_slim(prefix, model, images, slim_classes=7, slim_slice=None):
    spec = registry.get(MODEL)
    slim, _ = slim_run.slim_outputs(spec, prefix, images, slim_classes, spec.batch_norm)
    if slim_slice is not None:
        slim = slim[:, slim_slice]
    return compare.difference(slim, np.asarray(model(images, training=False)))


def test_changed_bn_epsilon_is_caught(checkpoint_7):
    spec = registry.get(MODEL)
    model = spec.keras_from_tensors(read(checkpoint_7), 7, spec.batch_norm)
    images = probe.random_images(2, SIZE)
    assert _diff_against_slim(checkpoint_7, model, images).max_rel <= 1e-5
    model.get_layer("block3.unit_2.bottleneck_v1.conv2.BatchNorm").epsilon = 1e-3
    diff = _diff_against_slim(checkpoint_7, model, images)
    print("epsilon 1e-5 -> 1e-3 in one layer:", diff.line())
    assert diff.max_rel > 1e-5


def _plant_zero_padded_pool1(monkeypatch):
    """keras.applications' ZeroPadding2D + VALID max-pool, which is not TF SAME
    (ENGINEERING 6), in place of the stem's 3x3/2 pool.  It differs only at even map
    sizes (TF pads 0 before and 1 after; this pads 1 and 1): test at EVEN."""
    same_pool = layers.max_pool

    def max_pool(x, scope, size, strides, padding="same"):
        if scope != "pool1":
            return same_pool(x, scope, size, strides, padding)
        x = keras.layers.ZeroPadding2D(1, name="pool1.zeropad")(x)
        return keras.layers.MaxPooling2D(size, strides, "valid", name="pool1")(x)

    monkeypatch.setattr(layers, "max_pool", max_pool)


def test_zero_padded_max_pool_is_caught(checkpoint_7, monkeypatch):
    _plant_zero_padded_pool1(monkeypatch)
    spec = registry.get(MODEL)
    model = spec.keras_from_tensors(read(checkpoint_7), 7, spec.batch_norm)
    diff = _diff_against_slim(checkpoint_7, model, probe.random_images(2, EVEN))
    print("zero-padded pool1:", diff.line())
    assert diff.max_rel > 1e-5


@pytest.mark.slow  # test_verify names the same mistake by default
def test_background_dropped_on_one_side_is_caught(checkpoint_7):
    spec = registry.get(MODEL)
    model = spec.keras_from_tensors(read(checkpoint_7), 6, spec.batch_norm,
                                    drop_background=True)
    images = probe.random_images(4, SIZE)
    assert _diff_against_slim(checkpoint_7, model, images, slim_slice=slice(1, None)
                              ).max_rel <= 1e-5
    shifted = _diff_against_slim(checkpoint_7, model, images, slim_slice=slice(0, 6))
    print("classes off by one:", shifted.line())
    assert shifted.max_rel > 1e-5
    with pytest.raises(ValueError, match="shapes differ"):
        _diff_against_slim(checkpoint_7, model, images)


def test_parity_failure_writes_nothing(checkpoint_7, tmp_path, monkeypatch):
    _plant_zero_padded_pool1(monkeypatch)
    out = tmp_path / "keras"
    with pytest.raises(convert.ParityError, match="does not match the checkpoint"):
        convert.convert(convert.ConvertConfig(checkpoint_path=checkpoint_7,
                                              output_dir=str(out), image_size=EVEN))
    assert not out.exists() and os.listdir(tmp_path) == []


# -- bad input --------------------------------------------------------------------------

def _run_tool(*flags):
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "convert_checkpoint.py"),
                             *flags], capture_output=True, text=True, cwd=ROOT, timeout=600)
    return result.returncode, (result.stderr.strip().splitlines() or [""])[0]


def test_cli_missing_checkpoint(tmp_path):
    code, first = _run_tool(f"--checkpoint_path={tmp_path / 'nope.ckpt'}",
                            f"--output_dir={tmp_path / 'out'}")
    assert code != 0 and first.startswith("error: checkpoint") and "nope.ckpt" in first
    assert not (tmp_path / "out").exists()


def test_cli_other_architecture(checkpoint_7, tmp_path):
    code, first = _run_tool(f"--checkpoint_path={checkpoint_7}", "--model_name=inception_v3",
                            f"--output_dir={tmp_path / 'out'}")
    assert code != 0 and "not a inception_v3" in first and "--model_name=resnet_v1_50" in first
    assert not (tmp_path / "out").exists()


def test_truncated_checkpoint(checkpoint_7, tmp_path):
    tensors = read(checkpoint_7)
    prefix = write(str(tmp_path / "cut" / "model.ckpt"), tensors)
    data = prefix + ".data-00000-of-00001"
    with open(data, "r+b") as f:
        f.truncate(os.path.getsize(data) // 2)
    with pytest.raises(CheckpointError, match="truncated") as e:
        convert.convert(convert.ConvertConfig(checkpoint_path=prefix, image_size=SIZE,
                                              output_dir=str(tmp_path / "out")))
    assert "model.ckpt" in str(e.value).splitlines()[0]
    assert not (tmp_path / "out").exists()


def test_missing_moving_statistics(checkpoint_7, tmp_path):
    """A Saver over trainable variables only: gamma/beta saved, moving statistics not."""
    tensors = {k: v for k, v in read(checkpoint_7).items() if "moving_" not in k}
    prefix = write(str(tmp_path / "nostats" / "model.ckpt"), tensors)
    with pytest.raises(CheckpointError) as e:
        convert.convert(convert.ConvertConfig(checkpoint_path=prefix, image_size=SIZE,
                                              output_dir=str(tmp_path / "out")))
    first = str(e.value).splitlines()[0]
    assert "moving statistics" in first and "moving_mean" in first and "global variables" in first
    assert not (tmp_path / "out").exists()


def test_shape_mismatch_names_the_variable(checkpoint_7, tmp_path):
    tensors = read(checkpoint_7)
    name = "resnet_v1_50/block2/unit_1/bottleneck_v1/conv2/weights"
    tensors[name] = np.zeros((3, 3, 128, 64), np.float32)
    prefix = write(str(tmp_path / "bad" / "model.ckpt"), tensors)
    with pytest.raises(CheckpointError) as e:
        convert.convert(convert.ConvertConfig(checkpoint_path=prefix, image_size=SIZE,
                                              output_dir=str(tmp_path / "out")))
    first = str(e.value).splitlines()[0]
    assert name in first and "[3, 3, 128, 64]" in first
    assert not (tmp_path / "out").exists()


def test_wrong_num_classes_suggests_drop_background(checkpoint_7, tmp_path):
    with pytest.raises(UsageError, match="--drop_background"):
        convert.convert(convert.ConvertConfig(checkpoint_path=checkpoint_7, num_classes=6,
                                              output_dir=str(tmp_path / "out")))


def test_output_dir_not_overwritten(checkpoint_7, tmp_path):
    out = tmp_path / "keras"
    out.mkdir()
    (out / "precious.txt").write_text("x")
    with pytest.raises(SlimtuneError, match="--overwrite"):
        convert.convert(convert.ConvertConfig(checkpoint_path=checkpoint_7, output_dir=str(out)))
    assert (out / "precious.txt").exists()


@pytest.mark.slow  # tests/test_download.py unpacks archives by default
def test_archive_of_a_published_checkpoint(checkpoint_7, tmp_path):
    import tarfile

    archive = tmp_path / "resnet_v1_50_2016_08_28.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for suffix in (".index", ".data-00000-of-00001"):
            tar.add(checkpoint_7 + suffix, arcname="resnet_v1_50.ckpt" + suffix)
    meta = convert.convert(convert.ConvertConfig(checkpoint_path=str(archive), image_size=SIZE,
                                                 output_dir=str(tmp_path / "out")))
    assert meta["source_prefix"] == "resnet_v1_50.ckpt"
    assert set(meta["source_sha256"]) == {"resnet_v1_50.ckpt.index",
                                          "resnet_v1_50.ckpt.data-00000-of-00001"}
    with open(tmp_path / "out" / "slimtune.json") as f:
        parity = json.load(f)["parity"]["random"]
    assert parity["max_rel"] <= 1e-5, parity  # the bound; top-1 agreement is not asserted
