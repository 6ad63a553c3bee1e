"""Inception v1/v2/v3/v4 convert to Keras 3 with logits, end point and aux-logits parity.

Each model runs at an even and an odd size (TF SAME padding of stride-2 layers splits
differently) kept small where the converter is size-generic, including v1's and v3's
smallest sizes.
"""

import numpy as np
import pytest

from conversion import check_parity, check_tools_path
from slim_checkpoints import make_checkpoint, read
from slimtune import compare, probe, registry, slim_run
from slimtune import convert
from slimtune.errors import CheckpointError


@pytest.mark.parametrize("model_name,image_size", [
    pytest.param("inception_v1", 224, marks=pytest.mark.slow), ("inception_v1", 193),
    # 256 px: an 8x8 last map, where slim's stride-2 7x7 window averages only the
    # top-left cells; 33 px: a 2x2 map, where slim shrinks the window to 2x2.
    ("inception_v2", 256), ("inception_v2", 33),
    pytest.param("inception_v3", 128, marks=pytest.mark.slow), ("inception_v3", 107),
    # v4 and Inception-ResNet v2 have no SAME stride-2 layer, so even and odd sizes
    # exercise the same padding; the second size runs nightly.  Both include the
    # auxiliary head, whose conv kernel is the pooled map: 2x2 at 155 px, 1x1 at 107 to
    # 122 px, 5x5 at the published 299 px.
    ("inception_v4", 155), pytest.param("inception_v4", 120, marks=pytest.mark.slow),
    # IRv2's table entries are v4's plus Residual; its count test runs by default.
    pytest.param("inception_resnet_v2", 155, marks=pytest.mark.slow),
    pytest.param("inception_resnet_v2", 122, marks=pytest.mark.slow),
    pytest.param("inception_resnet_v2", 299, marks=pytest.mark.slow)])
def test_parity(tmp_path, model_name, image_size):
    # v2 at 33 px also checks the exported .pb and SavedModel and the saved .keras;
    # v1's and v3's forms are checked nightly (test_exported_and_saved_forms).
    check_parity(tmp_path, model_name, image_size, forms=image_size == 33,
                 aux=model_name in ("inception_v4", "inception_resnet_v2"))


@pytest.mark.slow
@pytest.mark.parametrize("model_name,image_size", [("inception_v1", 224), ("inception_v3", 107),
                                                   ("inception_v4", 107)])
def test_exported_and_saved_forms(tmp_path, model_name, image_size):
    check_parity(tmp_path, model_name, image_size, forms=True)


@pytest.mark.parametrize("size,aux_kernel", [
    # v4 at 155 px checks an aux head in the default run; v3's run nightly
    pytest.param(107, 1, marks=pytest.mark.slow), pytest.param(299, 5, marks=pytest.mark.slow)])
def test_v3_aux_logits(tmp_path, size, aux_kernel, num_classes=7):
    """The auxiliary head against slim's, with and without the background class.

    107 px is the smallest size slim builds v3 for (``Conv2d_2a_1x1``); 299 px is the
    published size (``Conv2d_2a_5x5``), costing about as much: graph building and
    checkpoint writing dominate, not the convolutions.
    """
    spec = registry.get("inception_v3")
    prefix = make_checkpoint(str(tmp_path / "model.ckpt"), spec.name, num_classes,
                             image_size=size)
    images = probe.random_images(2, size)
    slim_logits, slim_points = slim_run.slim_outputs(
        spec, prefix, images, num_classes, spec.batch_norm, ["AuxLogits"])
    tensors = read(prefix)
    for drop_background in (False, True):
        first = 1 if drop_background else 0
        model = spec.keras_from_tensors(
            tensors, num_classes - first, spec.batch_norm,
            drop_background=drop_background, include_aux_logits=True, image_size=size)
        conv = model.get_layer(f"AuxLogits.Conv2d_2a_{aux_kernel}x{aux_kernel}")
        assert conv.kernel.shape == (aux_kernel, aux_kernel, 128, 768)
        logits, aux = (np.asarray(o) for o in model(images, training=False))
        for key, reference, candidate in (("logits", slim_logits, logits),
                                          ("AuxLogits", slim_points["AuxLogits"], aux)):
            diff = compare.difference(reference[:, first:], candidate)
            print(f"inception_v3 {size}px drop_background={drop_background} {key}: "
                  f"{diff.line()}")
            assert diff.max_rel < 1e-5, (key, diff)  # top-1 agreement: printed
            assert diff.reference_max > 1e-3
    # slimtune-convert's own parity check covers the auxiliary head too.
    meta = convert.convert(convert.ConvertConfig(
        checkpoint_path=prefix, output_dir=str(tmp_path / "keras"), model_name=spec.name,
        drop_background=True, include_aux_logits=True, image_size=size, random_images=2))
    assert meta["parity"]["random aux"]["max_rel"] < 1e-5
    assert meta["parity"]["random aux"]["reference_max"] > 1e-3


def test_open_size_and_size_checks():
    """Open sizes build (without aux); sizes slim cannot build are refused."""
    spec = registry.get("inception_v3")
    model = spec.build_keras(5, spec.batch_norm)
    assert model.input_shape == (None, None, None, 3)
    assert model(np.zeros((1, 139, 139, 3), np.float32)).shape == (1, 5)
    with pytest.raises(ValueError, match="image_size"):
        spec.build_keras(5, spec.batch_norm, include_aux_logits=True)
    with pytest.raises(ValueError, match="auxiliary"):
        registry.get("inception_v1").build_keras(5, spec.batch_norm, include_aux_logits=True,
                                                 image_size=224)
    for name, size in (("inception_v1", 192), ("inception_v1", 225),
                       ("inception_v2", 257), ("inception_v3", 106), ("inception_v3", 347)):
        with pytest.raises(ValueError):
            registry.get(name).build_keras(5, spec.batch_norm, image_size=size)


def test_class_count_is_read_from_each_family_s_logits_kernel():
    """Inception's logits kernel sits one scope deeper than ResNet's and VGG's, so the
    class count of a checkpoint without slimtune.json is found by scope, not by a fixed
    name (export, convert and verify all rely on this)."""
    from slimtune import checkpoint

    for name, kernel in (("inception_v2", "InceptionV2/Logits/Conv2d_1c_1x1/weights"),
                         ("inception_v3", "InceptionV3/Logits/Conv2d_1c_1x1/weights"),
                         ("resnet_v1_50", "resnet_v1_50/logits/weights"),
                         ("vgg_16", "vgg_16/fc8/weights")):
        shapes = {kernel: (1, 1, 64, 6), kernel.replace("weights", "biases"): (6,),
                  "InceptionV3/AuxLogits/Conv2d_2b_1x1/weights": (1, 1, 64, 9)}
        assert checkpoint.logits_classes(registry.get(name), shapes) == 6
    with pytest.raises(CheckpointError, match="no logits kernels under InceptionV1/Logits/"):
        checkpoint.logits_classes(registry.get("inception_v1"), {"x/weights": (3,)})


def _published_layout(model_name, num_classes):
    """``({variable: shape}, trainable parameters without the auxiliary head)`` at 299 px."""
    import tensorflow as tf

    from slimtune import compat

    compat.apply()
    v1 = tf.compat.v1
    with tf.Graph().as_default():
        images = v1.placeholder(tf.float32, [None, 299, 299, 3])
        registry.get(model_name).build(images, num_classes, is_training=True)
        shapes = {v.op.name: v.shape.as_list() for v in v1.global_variables()}
        trainable = sum(v.shape.num_elements() for v in v1.trainable_variables()
                        if "/AuxLogits/" not in v.op.name)
    return shapes, trainable


def test_inception_v4_variables_are_the_published_checkpoint_s():
    """slimtune's own Inception v4 (tf_slim.nets has none) against research/slim's
    checkpoint layout: 149 + 2 BatchNorms without gamma, a fully connected head, the
    auxiliary head on Mixed_6h."""
    shapes, trainable = _published_layout("inception_v4", 1001)
    root = "InceptionV4/"
    assert sum(n.endswith("/moving_mean") for n in shapes) == 149 + 2  # body + aux head
    assert not any(n.endswith("/gamma") for n in shapes)
    assert shapes[root + "Conv2d_1a_3x3/weights"] == [3, 3, 3, 32]
    assert shapes[root + "Mixed_4a/Branch_1/Conv2d_0b_1x7/weights"] == [1, 7, 64, 64]
    assert shapes[root + "Mixed_6a/Branch_0/Conv2d_1a_3x3/weights"] == [3, 3, 384, 384]
    assert shapes[root + "Mixed_7d/Branch_2/Conv2d_0c_1x3/weights"] == [1, 3, 448, 512]
    assert shapes[root + "Mixed_7d/Branch_2/Conv2d_0e_3x1/weights"] == [3, 1, 512, 256]
    assert shapes[root + "AuxLogits/Conv2d_2a/weights"] == [5, 5, 128, 768]
    assert shapes[root + "AuxLogits/Aux_logits/weights"] == [768, 1001]
    assert shapes[root + "Logits/Logits/weights"] == [1536, 1001]
    print("inception_v4 trainable parameters without the auxiliary head:", trainable)
    # timm's inception_v4 (the same network, plus BN gammas): 42.68 M; 42.65 M here.
    assert abs(trainable / 1e6 - 42.68) < 0.05


def test_inception_resnet_v2_variables_are_the_published_checkpoint_s():
    """slimtune's own Inception-ResNet v2 against research/slim's checkpoint layout and
    keras.applications.InceptionResNetV2 (the same network, ported from that
    checkpoint): 55,813,192 trainable parameters at 1000 classes without the
    auxiliary head."""
    shapes, trainable = _published_layout("inception_resnet_v2", 1000)
    root = "InceptionResnetV2/"
    assert trainable == 55_813_192
    assert not any(n.endswith("/gamma") for n in shapes)
    assert shapes[root + "Mixed_5b/Branch_1/Conv2d_0b_5x5/weights"] == [5, 5, 48, 64]
    assert shapes[root + "Repeat/block35_10/Conv2d_1x1/weights"] == [1, 1, 128, 320]
    assert shapes[root + "Repeat/block35_10/Conv2d_1x1/biases"] == [320]
    assert shapes[root + "Repeat_1/block17_20/Branch_1/Conv2d_0b_1x7/weights"] == [1, 7, 128, 160]
    assert shapes[root + "Repeat_2/block8_9/Conv2d_1x1/weights"] == [1, 1, 448, 2080]
    assert shapes[root + "Block8/Conv2d_1x1/biases"] == [2080]
    assert shapes[root + "Conv2d_7b_1x1/weights"] == [1, 1, 2080, 1536]
    assert shapes[root + "AuxLogits/Conv2d_2a_5x5/weights"] == [5, 5, 128, 768]
    assert shapes[root + "Logits/Logits/weights"] == [1536, 1000]


@pytest.mark.slow
@pytest.mark.parametrize("model_name", ["inception_v4", "inception_resnet_v2"])
def test_new_inceptions_fine_tune_evaluate_and_convert(tmp_path, digits_dir, model_name):
    """The tools' path (train with the auxiliary loss, evaluate, convert) at the
    smallest size the auxiliary heads build: minutes each, so nightly."""
    check_tools_path(tmp_path, model_name, 1001, image_size=107, aux=True)
