"""VGG A/16/19, AlexNet v2 and OverFeat convert to Keras 3 with logits parity (fixed
input sizes).

vgg_a and OverFeat build at no size below their defaults (fc6 needs a 7x7 / 6x6 last
map: 224 and 231 px), so their parity checks, on random images and scikit-image
photos, are nightly (-m slow); their variables, research/slim's, are checked by default.
"""

import pytest
import tensorflow as tf

from conversion import check_parity, photos
from slimtune import compat, registry


@pytest.mark.parametrize("model_name,image_size", [
    ("vgg_16", 224), ("vgg_16", 225),
    pytest.param("vgg_19", 224, marks=pytest.mark.slow),  # vgg_16's code, three more layers
    # same code path as vgg_16 at 225; a 570 MB checkpoint, so nightly (-m slow) only
    pytest.param("vgg_19", 225, marks=pytest.mark.slow),
    ("alexnet_v2", 224), pytest.param("alexnet_v2", 225, marks=pytest.mark.slow)])
def test_parity(tmp_path, model_name, image_size):
    check_parity(tmp_path, model_name, image_size)


@pytest.mark.slow
@pytest.mark.parametrize("model_name", ["vgg_16", "vgg_19", "alexnet_v2"])
def test_exported_and_saved_forms(tmp_path, model_name):
    """The .pb, SavedModel and .keras at 224 px: 200-550 MB of weights written and read
    three more times, so nightly (-m slow); the export code is shared with the ResNets
    and Inceptions checked by default."""
    check_parity(tmp_path, model_name, 224, forms=True)


def _variables(model_name):
    compat.apply()
    spec = registry.get(model_name)
    size = spec.default_image_size
    with tf.Graph().as_default():
        images = tf.compat.v1.placeholder(tf.float32, [None, size, size, 3])
        spec.build(images, spec.num_classes, is_training=True)
        return {v.op.name: v.shape.as_list() for v in tf.compat.v1.global_variables()}


def test_vgg_a_has_configuration_a_s_eleven_layers():
    """tf_slim's vgg_a: 1, 1, 2, 2, 2 convs, fc6-fc8; 132,863,336 parameters (VGG's A)."""
    shapes = _variables("vgg_a")
    assert len(shapes) == 2 * 11
    assert sum(tf.TensorShape(s).num_elements() for s in shapes.values()) == 132_863_336
    assert shapes["vgg_a/conv2/conv2_1/weights"] == [3, 3, 64, 128]
    assert shapes["vgg_a/conv5/conv5_2/weights"] == [3, 3, 512, 512]
    assert shapes["vgg_a/fc6/weights"] == [7, 7, 512, 4096]
    assert shapes["vgg_a/fc8/biases"] == [1000]


def test_overfeat_variables_are_tf_slim_s():
    shapes = _variables("overfeat")
    assert len(shapes) == 2 * 8
    assert shapes["overfeat/conv1/weights"] == [11, 11, 3, 64]
    assert shapes["overfeat/conv2/weights"] == [5, 5, 64, 256]
    assert shapes["overfeat/conv5/weights"] == [3, 3, 1024, 1024]
    assert shapes["overfeat/fc6/weights"] == [6, 6, 1024, 3072]
    assert shapes["overfeat/fc7/weights"] == [1, 1, 3072, 4096]
    assert shapes["overfeat/fc8/weights"] == [1, 1, 4096, 1000]


@pytest.mark.slow
@pytest.mark.parametrize("model_name,image_size", [("vgg_a", 224), ("overfeat", 231)])
def test_parity_at_the_only_sizes(tmp_path, model_name, image_size):
    check_parity(tmp_path / "random", model_name, image_size)
    check_parity(tmp_path / "photos", model_name, image_size, images=photos(image_size),
                 label="photos ")
