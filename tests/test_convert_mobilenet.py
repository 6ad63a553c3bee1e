"""MobileNet v1 and v2 at every published depth multiplier: the slim graphs have the
published checkpoints' variables, and convert to Keras 3 with parity at even and odd
sizes.

Reference counts: v1 at 1.0 and 1000 classes has 4,231,976 trainable parameters and
21,888 moving-statistics values, as keras.applications.MobileNet (the same network)
reports; research/slim's mobilenet_v1.md gives 4.24, 2.59, 1.34 and 0.47 million
parameters for 1.0, 0.75, 0.5 and 0.25.  v2 at 1.0 and 1000 classes: 3,504,872
trainable, 34,112 moving-statistics values (keras.applications.MobileNetV2); the
published checkpoint holds 262 variables.
"""

import pytest
import tensorflow as tf

from conversion import check_parity, check_tools_path, photos
from slimtune import compat, registry

v1 = tf.compat.v1


def _variables(model_name, num_classes=1001, size=224):
    compat.apply()
    with tf.Graph().as_default():
        images = v1.placeholder(tf.float32, [None, size, size, 3])
        registry.get(model_name).build(images, num_classes, is_training=True)
        shapes = {v.op.name: v.shape.as_list() for v in v1.global_variables()}
        trainable = sum(v.shape.num_elements() for v in v1.trainable_variables())
    return shapes, trainable


def test_mobilenet_v1_variables_are_the_published_checkpoint_s():
    shapes, trainable = _variables("mobilenet_v1", num_classes=1000)
    assert trainable == 4_231_976
    moving = sum(s[0] for n, s in shapes.items() if n.endswith("/moving_mean"))
    assert 2 * moving == 21_888
    # 27 convs with weights and 4 BatchNorm variables each, and the logits' 2.
    assert len(shapes) == 27 * 5 + 2
    assert shapes["MobilenetV1/Conv2d_0/weights"] == [3, 3, 3, 32]
    assert shapes["MobilenetV1/Conv2d_1_depthwise/depthwise_weights"] == [3, 3, 32, 1]
    assert shapes["MobilenetV1/Conv2d_1_pointwise/weights"] == [1, 1, 32, 64]
    assert shapes["MobilenetV1/Conv2d_13_pointwise/BatchNorm/gamma"] == [1024]
    assert shapes["MobilenetV1/Logits/Conv2d_1c_1x1/weights"] == [1, 1, 1024, 1000]


@pytest.mark.parametrize("model_name,millions,last", [
    ("mobilenet_v1_075", 2.59, 768), ("mobilenet_v1_050", 1.34, 512),
    ("mobilenet_v1_025", 0.47, 256)])
def test_depth_multipliers_scale_every_conv(model_name, millions, last):
    shapes, trainable = _variables(model_name, size=128)
    assert abs(trainable / 1e6 - millions) < 0.012, trainable
    assert shapes["MobilenetV1/Conv2d_13_pointwise/weights"][-1] == last
    assert shapes["MobilenetV1/Logits/Conv2d_1c_1x1/weights"] == [1, 1, last, 1001]


def test_mobilenet_v2_variables_are_the_published_checkpoint_s():
    shapes, trainable = _variables("mobilenet_v2", num_classes=1000)
    assert trainable == 3_504_872
    moving = sum(s[0] for n, s in shapes.items() if n.endswith("/moving_mean"))
    assert 2 * moving == 34_112
    assert len(shapes) == 262
    assert "MobilenetV2/expanded_conv/expand/weights" not in shapes  # expansion 1
    assert shapes["MobilenetV2/expanded_conv/depthwise/depthwise_weights"] == [3, 3, 32, 1]
    assert shapes["MobilenetV2/expanded_conv/project/weights"] == [1, 1, 32, 16]
    assert shapes["MobilenetV2/expanded_conv_1/expand/weights"] == [1, 1, 16, 96]
    assert shapes["MobilenetV2/expanded_conv_16/project/weights"] == [1, 1, 960, 320]
    assert shapes["MobilenetV2/Conv_1/weights"] == [1, 1, 320, 1280]
    assert shapes["MobilenetV2/Logits/Conv2d_1c_1x1/weights"] == [1, 1, 1280, 1000]


def test_mobilenet_v2_140_widens_every_layer_and_the_last_conv():
    shapes, trainable = _variables("mobilenet_v2_140", size=128)
    assert shapes["MobilenetV2/Conv/weights"] == [3, 3, 3, 48]
    assert shapes["MobilenetV2/expanded_conv/project/weights"] == [1, 1, 48, 24]
    assert shapes["MobilenetV2/Conv_1/weights"] == [1, 1, 448, 1792]
    assert abs(trainable / 1e6 - 6.06) < 0.1, trainable  # mobilenet README: 6.06 M


def test_mobilenet_v2_035_narrows_every_layer_but_the_last_conv():
    """research/slim's mobilenet_v2_035: depth multiplier 0.35 with
    finegrain_classification_mode, so Conv_1 keeps its 1280 channels."""
    shapes, trainable = _variables("mobilenet_v2_035")
    assert len(shapes) == 262
    assert shapes["MobilenetV2/Conv/weights"] == [3, 3, 3, 16]
    assert shapes["MobilenetV2/expanded_conv/project/weights"] == [1, 1, 16, 8]
    assert shapes["MobilenetV2/expanded_conv_1/expand/weights"] == [1, 1, 8, 48]
    assert shapes["MobilenetV2/expanded_conv_16/project/weights"] == [1, 1, 336, 112]
    assert shapes["MobilenetV2/Conv_1/weights"] == [1, 1, 112, 1280]
    assert shapes["MobilenetV2/Logits/Conv2d_1c_1x1/weights"] == [1, 1, 1280, 1001]
    assert abs(trainable / 1e6 - 1.66) < 0.03, trainable  # mobilenet README: 1.66 M


def test_mobilenet_v2_035_parity_on_photos_at_224(tmp_path):
    check_parity(tmp_path / "random", "mobilenet_v2_035", 224)
    check_parity(tmp_path / "photos", "mobilenet_v2_035", 224, images=photos(224),
                 label="photos ")


@pytest.mark.parametrize("model_name,image_size", [
    pytest.param("mobilenet_v1", 64, marks=pytest.mark.slow), ("mobilenet_v1", 97), ("mobilenet_v1_075", 33),
    ("mobilenet_v1_050", 64), ("mobilenet_v1_025", 35),
    pytest.param("mobilenet_v2", 64, marks=pytest.mark.slow),
    pytest.param("mobilenet_v2", 65, marks=pytest.mark.slow), ("mobilenet_v2", 33),
    ("mobilenet_v2_140", 33), ("mobilenet_v2_035", 33)])
def test_parity(tmp_path, model_name, image_size):
    check_parity(tmp_path, model_name, image_size,
                 forms=(model_name, image_size) in (("mobilenet_v1", 97), ("mobilenet_v2", 65)))


@pytest.mark.slow
def test_mobilenet_fine_tunes_evaluates_and_converts(tmp_path, digits_dir):
    check_tools_path(tmp_path, "mobilenet_v1_050", 1001)


@pytest.mark.slow
def test_mobilenet_v2_fine_tunes_evaluates_and_converts(tmp_path, digits_dir):
    check_tools_path(tmp_path, "mobilenet_v2", 1001)


@pytest.mark.parametrize("stem,expected", [
    ("MobilenetV1/Conv2d_0/weights", {32: "mobilenet_v1", 24: "mobilenet_v1_075",
                                      16: "mobilenet_v1_050", 8: "mobilenet_v1_025"}),
    ("MobilenetV2/Conv/weights", {32: "mobilenet_v2", 48: "mobilenet_v2_140",
                                  16: "mobilenet_v2_035"})])
def test_the_width_is_read_from_the_checkpoint(stem, expected):
    """Every MobileNet width shares its root scope: conversion without --model_name
    tells them apart by the stem's output channels."""
    import numpy as np

    from slimtune import registry

    for channels, name in expected.items():
        tensors = {stem: np.zeros((3, 3, 3, channels), np.float32)}
        assert registry.identify(tensors).name == name
