"""research/slim's ``--use_grayscale``, end to end: each preprocessing converts with
``tf.image.rgb_to_grayscale`` where upstream's does, the network then takes one channel
(conv1's kernel ``[k, k, 1, C]``), the run records it in slimtune.json, and evaluation,
conversion (parity), verification and export of the run take it from there.

The run is the in-process tiny_convnet (tests/test_register_architecture.py) on the
digits at 32 px, so the commands are called as libraries.
"""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from slimtune import convert, evaluate, export, metadata, sources, train, verify
from slimtune.data import preprocessing
from slimtune.data.preprocessing import VGG_MEANS, preprocess
from test_register_architecture import NAME, SCOPE, _register

SIZE = 24
SEED = tf.constant([7, 11], tf.int64)


def _image():
    rng = np.random.RandomState(0)
    return tf.constant(rng.randint(0, 256, (40, 36, 3)), tf.uint8)


def _gray(x):
    return tf.image.rgb_to_grayscale(x).numpy()


def _both(name, is_training):
    """(RGB output, grayscale output) of one image, the same stateless seed for both."""
    seed = SEED if is_training else None
    rgb = preprocess(name, _image(), SIZE, SIZE, is_training, seed).numpy()
    gray = preprocess(name, _image(), SIZE, SIZE, is_training, seed, grayscale=True).numpy()
    assert rgb.shape == (SIZE, SIZE, 3) and gray.shape == (SIZE, SIZE, 1)
    return rgb, gray


def _float(image):
    return tf.cast(image, tf.float32)


@pytest.mark.parametrize("is_training", [True, False])
def test_inception_converts_after_the_colour_distortion_and_first_when_evaluating(is_training):
    rgb, gray = _both("inception", is_training)
    if is_training:  # the crop, flip and colours of the seed, then gray, then [-1, 1]
        expected = (_gray(rgb / 2.0 + 0.5) - 0.5) * 2.0
    else:  # gray right after the conversion to float, then crop, resize, [-1, 1]
        image = tf.image.rgb_to_grayscale(tf.image.convert_image_dtype(_image(), tf.float32))
        image = tf.image.resize(tf.image.central_crop(image, 0.875), [SIZE, SIZE])
        expected = (image.numpy() - 0.5) * 2.0
    np.testing.assert_allclose(gray, expected, atol=1e-5)


@pytest.mark.parametrize("name,scale", [("vgg", 1.0), ("densenet", preprocessing.DENSENET_SCALE)])
@pytest.mark.parametrize("is_training", [True, False])
def test_vgg_and_densenet_convert_after_the_crop_and_subtract_the_means_gray(
        name, scale, is_training):
    rgb, gray = _both(name, is_training)
    mean_gray = _gray(tf.constant(VGG_MEANS))
    # The crop (and the seed's flip) are the RGB run's; gray before the mean subtraction.
    expected = (_gray(rgb / scale + np.float32(VGG_MEANS)) - mean_gray) * scale
    np.testing.assert_allclose(gray, expected, atol=1e-3 * scale)


@pytest.mark.parametrize("is_training", [True, False])
def test_lenet_converts_first(is_training):
    _, gray = _both("lenet", is_training)
    image = tf.image.resize_with_crop_or_pad(tf.image.rgb_to_grayscale(_float(_image())),
                                            SIZE, SIZE)
    np.testing.assert_allclose(gray, (image.numpy() - 128.0) / 128.0, atol=1e-6)


def test_cifarnet_converts_first():
    """Evaluation: gray, crop or pad, standardise (standardising before the conversion
    would not give this: it mixes the channels' statistics).  Training: 1 channel through
    the padding, crop and colour jitter, standardised."""
    _, gray = _both("cifarnet", False)
    image = tf.image.resize_with_crop_or_pad(tf.image.rgb_to_grayscale(_float(_image())),
                                            SIZE, SIZE)
    np.testing.assert_allclose(gray, tf.image.per_image_standardization(image).numpy(),
                               atol=1e-5)
    _, gray = _both("cifarnet", True)
    assert abs(gray.mean()) < 1e-4 and abs(gray.std() - 1.0) < 1e-3


def test_a_seeded_training_image_is_the_same_each_time_in_gray_too():
    first = preprocess("inception", _image(), SIZE, SIZE, True, SEED, grayscale=True)
    again = preprocess("inception", _image(), SIZE, SIZE, True, SEED, grayscale=True)
    np.testing.assert_array_equal(first.numpy(), again.numpy())


@pytest.fixture(scope="module")
def gray_run(digits_dir, tmp_path_factory):
    """A 2-step grayscale tiny_convnet run on the digits (slim engine)."""
    _register()
    train_dir = str(tmp_path_factory.mktemp("gray") / "run")
    lines = []
    train.train(train.TrainConfig(
        train_dir=train_dir, dataset_name="digits", model_name=NAME, train_image_size=32,
        batch_size=8, max_number_of_steps=2, use_grayscale=True, seed=0,
        num_preprocessing_threads=1), log=lines.append)
    return train_dir, lines


def test_a_grayscale_run_trains_a_one_channel_network_and_records_it(gray_run):
    train_dir, lines = gray_run
    reader = tf.train.load_checkpoint(train_dir)
    assert reader.get_variable_to_shape_map()[f"{SCOPE}/conv1/weights"] == [3, 3, 1, 8]
    assert metadata.read(train_dir)["grayscale"] is True
    assert metadata.recorded(train_dir).channels == 1
    assert any("preprocessing (grayscale)" in line for line in lines)


def test_evaluation_of_a_grayscale_run_needs_no_flag(gray_run):
    result = evaluate.evaluate(evaluate.EvalConfig(
        checkpoint_path=gray_run[0], dataset_name="digits", dataset_split_name="validation",
        batch_size=50, max_num_batches=1), log=lambda line: None)
    assert result.count == 50 and 0.0 <= result.top1 <= 1.0


def test_a_grayscale_run_converts_with_parity_and_verifies(gray_run, tmp_path):
    out = str(tmp_path / "keras")
    meta = convert.convert(convert.ConvertConfig(checkpoint_path=gray_run[0], output_dir=out),
                           log=lambda line: None)
    parity = meta["parity"]["random"]
    print(f"grayscale tiny_convnet parity: max rel {parity['max_rel']:.3g}")
    assert parity["max_rel"] <= 1e-5 and parity["reference_max"] > 1e-3
    assert meta["grayscale"] is True
    import keras

    assert keras.models.load_model(os.path.join(out, "model.keras")).input_shape[-1] == 1
    report = verify.verify(verify.VerifyConfig(
        reference=gray_run[0], candidate=os.path.join(out, "model.keras"), random=4,
        dataset_name="digits", dataset_split_name="validation", max_images=8),
        log=lambda line: None)
    assert report["passed"]


def test_a_research_slim_grayscale_checkpoint_converts_from_its_weights(gray_run, tmp_path):
    """No slimtune.json: conv1's input depth of 1 says it, in one log line."""
    bare = tmp_path / "bare"
    bare.mkdir()
    prefix = sources.checkpoint_prefix(gray_run[0])
    for name in os.listdir(gray_run[0]):
        if name.startswith(os.path.basename(prefix) + "."):
            shutil.copy(os.path.join(gray_run[0], name), bare)
    lines = []
    meta = convert.convert(convert.ConvertConfig(
        checkpoint_path=str(bare / os.path.basename(prefix)), model_name=NAME,
        image_size=32, output_dir=str(tmp_path / "keras")), log=lines.append)
    assert meta["grayscale"] is True and meta["parity"]["random"]["max_rel"] <= 1e-5
    assert sum("takes 1 input channel" in line for line in lines) == 1


def test_export_with_the_checkpoint_gives_a_one_channel_input(gray_run, tmp_path):
    path = str(tmp_path / "frozen.pb")
    export.export(export.ExportConfig(checkpoint_path=gray_run[0], output_file=path),
                  log=lambda line: None)
    graph_def = tf.compat.v1.GraphDef()
    with open(path, "rb") as f:
        graph_def.ParseFromString(f.read())
    node = next(n for n in graph_def.node if n.name == export.INPUT_NODE)
    assert [d.size for d in node.attr["shape"].shape.dim] == [-1, 32, 32, 1]
    with open(path + ".json") as f:
        assert json.load(f)["input_shape"] == [None, 32, 32, 1]


def test_a_keras_engine_grayscale_step(digits_dir, tmp_path):
    _register()
    train_dir = str(tmp_path / "keras_run")
    result = train.train(train.TrainConfig(
        train_dir=train_dir, dataset_name="digits", model_name=NAME, train_image_size=32,
        batch_size=8, max_number_of_steps=1, use_grayscale=True, engine="keras", seed=0,
        num_preprocessing_threads=1), log=lambda line: None)
    assert result.global_step == 1
    assert metadata.read(train_dir)["grayscale"] is True
    conv1, = [w for w in result.final_weights() if w.slim_name.endswith("conv1/weights")]
    assert conv1.value.shape[2] == 1  # [k, k, 1 channel, filters]


def test_resuming_a_grayscale_run_without_the_flag_is_refused(gray_run):
    from slimtune.errors import UsageError

    with pytest.raises(UsageError, match="grayscale=True, this command asks for False"):
        train.train(train.TrainConfig(
            train_dir=gray_run[0], dataset_name="digits", model_name=NAME,
            train_image_size=32, batch_size=8, max_number_of_steps=3),
            log=lambda line: None)
