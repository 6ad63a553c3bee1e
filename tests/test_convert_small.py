"""research/slim's LeNet and CifarNet: logits and end point parity on random images and
scikit-image photos, CifarNet's LRN where it matters, and each through every command.

Their fully connected layers take the flattened map, so a checkpoint fixes its input
size; each is checked at its default size and at one that gives other feature maps
(a separate random checkpoint: LeNet at 33 px, 8x8 before fc3; CifarNet at 29, 7x7).
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from conversion import keras_end_points, photos, verify_frozen_and_keras
from slim_checkpoints import make_checkpoint, read
from slimtune import compare, probe, registry

SIZES = [("lenet", 28), ("lenet", 33), ("cifarnet", 32), ("cifarnet", 29)]


def _parity(tmp_path, model_name, size, images, label, rtol=1e-5):
    """Slim graph vs converted Keras model on ``images``: logits and every end point
    within ``rtol`` of the largest value, the median within rtol / 10."""
    spec = registry.get(model_name)
    points = spec.end_points()
    prefix, slim_logits, slim_points = make_checkpoint(
        str(tmp_path / label / "model.ckpt"), model_name, 10, image_size=size,
        run_on=images, end_point_keys=[key for key, _ in points])
    model = spec.keras_from_tensors(read(prefix), 10, image_size=size)
    pairs = [("logits", slim_logits, np.asarray(model(images, training=False)))]
    pairs += [(key, slim_points[key], value) for (key, _), value in
              zip(points, keras_end_points(model, [name for _, name in points], images))]
    worst = {}
    for key, reference, value in pairs:
        diff = compare.difference(reference, value)
        median = float(np.median(np.abs(np.asarray(reference, np.float64) - value))
                       / max(1.0, diff.reference_max))
        print(f"{model_name} {size}px {label} {key}: {diff.line()}, median rel {median:.3g}")
        worst[key] = (diff.max_rel, median)
    bad = {k: v for k, v in worst.items() if v[0] > rtol or v[1] > rtol / 10}
    assert not bad, f"{model_name} at {size}px on {label} diverges: {bad}"
    assert np.abs(slim_logits).max() > 1e-3, "degenerate test: slim logits are all ~0"


@pytest.mark.parametrize("model_name,size", SIZES)
def test_parity_on_random_images_and_photos(tmp_path, model_name, size):
    _parity(tmp_path, model_name, size, probe.random_images(4, size, seed=0), "random")
    _parity(tmp_path, model_name, size, photos(size), "photos")


def test_lrn_matches_tf_nn_lrn_where_it_matters():
    """CifarNet's LRN from Keras layers against tf.nn.lrn, on inputs large enough that it
    divides by up to ~10 (random checkpoints' activations of ~1 move it by 1e-3 only),
    and across the channel edges (8 channels, a window of 9)."""
    import keras
    import tensorflow as tf

    from slimtune.keras_nets import layers as L
    from slimtune.nets import small

    args = (small.LRN_DEPTH_RADIUS, small.LRN_BIAS, small.LRN_ALPHA, small.LRN_BETA)
    for channels, scale in ((64, 100.0), (8, 300.0), (64, 1.0)):
        x = np.random.RandomState(channels).normal(0.0, scale, (3, 5, 6, channels))
        x = x.astype(np.float32)
        inputs = keras.Input(x.shape[1:])
        model = keras.Model(inputs, L.local_response_normalization(inputs, "norm1", *args))
        ours = np.asarray(model(x))
        theirs = tf.nn.lrn(x, *args).numpy()
        diff = compare.difference(theirs, ours)
        print(f"LRN {channels} channels, inputs ~{scale:g}: {diff.line()}, "
              f"largest division {np.max(np.abs(x) / np.maximum(np.abs(theirs), 1e-30)):.3g}")
        assert diff.max_rel <= 1e-6
        assert np.max(np.abs(ours - theirs) / np.maximum(np.abs(theirs), 1e-6)) <= 1e-5
    assert np.max(np.abs(x) / np.maximum(np.abs(theirs), 1e-30)) > 1.0  # it does divide


_RELOAD = """
import sys, numpy as np, keras
model = keras.models.load_model(sys.argv[1], safe_mode=True)
assert not [m for m in sys.modules if m.split(".")[0] == "slimtune"], "slimtune was imported"
np.save(sys.argv[3], np.asarray(model(np.load(sys.argv[2]), training=False)))
"""


def _reload_without_slimtune(path, images, tmp_path):
    """The .keras file's logits computed in a fresh process that never imports slimtune."""
    np.save(tmp_path / "x.npy", images)
    subprocess.run([sys.executable, "-c", _RELOAD, path, str(tmp_path / "x.npy"),
                    str(tmp_path / "y.npy")], check=True,
                   env={**os.environ, "PYTHONPATH": ""}, cwd=str(tmp_path))
    return np.load(tmp_path / "y.npy")


def _train_eval_export(tmp_path, digits_dir, model_name, size):
    """Two slim-engine steps on digits from scratch, eval of the train dir and export."""
    from slimtune import evaluate, export, train

    train_dir = str(tmp_path / "run")
    # Each net's own preprocessing (the registry's default: lenet, cifarnet).
    result = train.train(train.TrainConfig(
        train_dir=train_dir, dataset_name="digits", dataset_dir=digits_dir,
        model_name=model_name, train_image_size=size,
        batch_size=8, max_number_of_steps=2, weight_decay=4e-5, seed=0),
        log=lambda line: None)
    assert result.global_step == 2 and np.isfinite(result.loss)
    scores = evaluate.evaluate(evaluate.EvalConfig(
        checkpoint_path=train_dir, dataset_name="digits",
        dataset_split_name="validation", dataset_dir=digits_dir,
        max_num_batches=1, batch_size=16), log=lambda line: None)
    assert scores.count == 16
    frozen = str(tmp_path / "frozen.pb")
    export.export(export.ExportConfig(checkpoint_path=train_dir, output_file=frozen),
                  log=lambda line: None)
    return train_dir, frozen


@pytest.mark.parametrize("model_name", ["lenet", "cifarnet"])
def test_train_eval_export_convert_verify_and_doctor(tmp_path, digits_dir, model_name):
    from slimtune import convert, doctor

    spec = registry.get(model_name)
    size = spec.default_image_size
    train_dir, frozen = _train_eval_export(tmp_path, digits_dir, model_name, size)
    meta = convert.convert(convert.ConvertConfig(checkpoint_path=train_dir,
                                                 output_dir=str(tmp_path / "keras")),
                           log=lambda line: None)
    assert meta["model_name"] == model_name and meta["num_classes"] == 10
    assert meta["image_size"] == size and meta["batch_norm"] is None
    print(f"{model_name} convert parity: {meta['parity']['random']}")
    assert meta["parity"]["random"]["max_rel"] <= 1e-5
    keras_file = str(tmp_path / "keras" / "model.keras")
    rows = verify_frozen_and_keras(train_dir, frozen, keras_file)
    assert [row["end_point"] for row in rows] == [k for k, _ in spec.end_points()]
    found = doctor.diagnose(doctor.DoctorConfig(train_dir=train_dir, keras_model=keras_file))
    print("\n".join(found.lines()))
    assert not found.errors, found.lines()
    assert any(line.startswith("Keras model") for line in found.checked)
    images = probe.random_images(3, size, seed=1)
    import keras

    expected = np.asarray(keras.models.load_model(keras_file)(images, training=False))
    reloaded = _reload_without_slimtune(keras_file, images, tmp_path)
    print(f"{model_name} model.keras reloaded without slimtune: "
          f"{compare.difference(expected, reloaded).line()}")
    assert compare.difference(expected, reloaded).max_rel <= 1e-5


@pytest.mark.parametrize("model_name", ["lenet", "cifarnet"])
def test_a_keras_engine_step(tmp_path, digits_dir, model_name):
    """The Keras engine trains the mirror (no BatchNorm, dropout, LRN) and saves a plain
    model.keras; a second run resumes it."""
    import keras

    from slimtune import train

    def run(steps):
        return train.train(train.TrainConfig(
            train_dir=str(tmp_path / "run"), dataset_name="digits", dataset_dir=digits_dir,
            model_name=model_name,
            train_image_size=registry.get(model_name).default_image_size, batch_size=8,
            max_number_of_steps=steps, weight_decay=4e-5, seed=0, engine="keras"),
            log=lambda line: None)

    result = run(1)
    assert result.global_step == 1 and np.isfinite(result.loss)
    model = keras.models.load_model(result.checkpoint, safe_mode=True)
    assert model.name == registry.get(model_name).scope
    assert run(2).global_step == 2
