"""research/slim's NASNet-A (cifar, mobile, large) and PNASNet-5 (mobile, large): the
slim graphs have the published checkpoints' variables (no root scope) and parameter
counts, and convert to Keras 3 with parity on random images and scikit-image photos.

Reference counts (trainable, without the auxiliary head, 1001 classes): NASNet-A
mobile 5,291,035 and large 88,757,183, keras.applications.NASNetMobile's 5,289,978 and
NASNetLarge's 88,753,150 at 1000 classes plus one more class (research/slim's README:
5.3M and 88.9M); PNASNet-5 mobile 5.1M and large 86.1M (research/slim's README).

The default run keeps each net small: nasnet_cifar at its native 32 px, the mobile
variants at 67 px (the smallest input their auxiliary head builds at) and 75; the
large ones and full sizes are nightly (``-m slow``).
"""

import numpy as np
import pytest
import tensorflow as tf

from conversion import check_parity, photos
from slimtune import compat, probe, registry

v1 = tf.compat.v1
NAMES = ("nasnet_cifar", "nasnet_mobile", "nasnet_large", "pnasnet_mobile", "pnasnet_large")


def _variables(model_name, size, num_classes=1001):
    compat.apply()
    with tf.Graph().as_default():
        images = v1.placeholder(tf.float32, [None, size, size, 3])
        registry.get(model_name).build(images, num_classes, is_training=True)
        shapes = {v.op.name: v.shape.as_list() for v in v1.global_variables()}
        trainable = {v.op.name: v.shape.num_elements() for v in v1.trainable_variables()}
    return shapes, trainable


def _without_aux(trainable):
    return sum(n for name, n in trainable.items() if not name.startswith("aux_"))


@pytest.mark.parametrize("model_name,size,count,published", [
    ("nasnet_mobile", 67, 5_291_035, 5.3), ("pnasnet_mobile", 67, None, 5.1),
    pytest.param("nasnet_large", 331, 88_757_183, 88.9, marks=pytest.mark.slow),
    pytest.param("pnasnet_large", 331, None, 86.1, marks=pytest.mark.slow)])
def test_variables_and_parameter_counts_are_research_slim_s(model_name, size, count,
                                                            published):
    shapes, trainable = _variables(model_name, size)
    _NAMES_AND_SHAPES.get(model_name, lambda shapes: None)(shapes)
    total = _without_aux(trainable)
    print(f"{model_name}: {total:,} trainable parameters without the aux head "
          f"({sum(trainable.values()):,} with), {len(shapes)} variables")
    if count is not None:
        assert total == count
    assert abs(total / 1e6 - published) < 0.15, total
    # No root scope; drop path (nasnet_large, pnasnet_large) reads the global step.
    assert all("/" in name or name == "global_step" for name in shapes)


def _nasnet_mobile_names_and_shapes(shapes):
    assert shapes["conv0/weights"] == [3, 3, 3, 32]
    assert shapes["conv0_bn/gamma"] == [32]
    assert shapes["cell_stem_0/1x1/weights"] == [1, 1, 32, 11]
    assert shapes["cell_stem_0/comb_iter_0/left/separable_5x5_1/depthwise_weights"] == \
        [5, 5, 11, 1]
    assert shapes["cell_stem_0/comb_iter_0/left/separable_5x5_1/pointwise_weights"] == \
        [1, 1, 11, 11]
    assert shapes["cell_stem_0/comb_iter_0/right/separable_7x7_1/depthwise_weights"] == \
        [7, 7, 32, 1]
    assert shapes["cell_stem_1/path1_conv/weights"] == [1, 1, 32, 11]
    assert shapes["cell_stem_1/final_path_bn/beta"] == [22]
    # cell_0's older input (cell_stem_0, 44 channels) is one stride bigger: a factorized
    # reduction; cell_1's (cell_stem_1, 88) has the size but not the channels: prev_1x1.
    assert shapes["cell_0/path1_conv/weights"] == [1, 1, 44, 22]
    assert "cell_0/prev_1x1/weights" not in shapes
    assert shapes["cell_1/prev_1x1/weights"] == [1, 1, 88, 44]
    assert shapes["cell_0/comb_iter_0/left/bn_sep_5x5_2/moving_variance"] == [44]
    assert shapes["reduction_cell_0/1x1/weights"] == [1, 1, 264, 88]
    assert shapes["aux_7/aux_logits/proj/weights"] == [1, 1, 528, 128]
    assert shapes["aux_7/aux_logits/Conv/weights"][2:] == [128, 768]
    assert shapes["aux_7/aux_logits/FC/weights"] == [768, 1001]
    assert shapes["final_layer/FC/weights"] == [1056, 1001]
    assert shapes["final_layer/FC/biases"] == [1001]
    assert not any(name.endswith("/biases") for name in shapes
                   if not name.endswith("FC/biases"))


def _pnasnet_mobile_names_and_shapes(shapes):
    assert shapes["cell_stem_0/1x1/weights"] == [1, 1, 32, 13]
    assert shapes["cell_stem_1/final_path_bn/gamma"] == [26]  # int(27 / 2) twice
    assert shapes["cell_stem_1/comb_iter_0/right/1x1/weights"] == [1, 1, 26, 27]
    # cell_3 reduces: its "none" on the older input becomes a strided 1x1 conv.
    assert shapes["cell_3/comb_iter_4/right/1x1/weights"] == [1, 1, 108, 108]
    assert "reduction_cell_0/1x1/weights" not in shapes
    assert shapes["aux_5/aux_logits/FC/weights"] == [768, 1001]
    assert shapes["final_layer/FC/weights"] == [1080, 1001]


_NAMES_AND_SHAPES = {"nasnet_mobile": _nasnet_mobile_names_and_shapes,
                     "pnasnet_mobile": _pnasnet_mobile_names_and_shapes}


@pytest.mark.parametrize("model_name,filters", [
    ("nasnet_cifar", 32), ("nasnet_mobile", 44), ("nasnet_large", 168),
    ("pnasnet_mobile", 54), ("pnasnet_large", 216)])
def test_identify_tells_the_variants_apart(model_name, filters):
    """No root scope: the width of cell_0/1x1 (num_conv_filters) names the variant."""
    tensors = {"cell_0/1x1/weights": (1, 1, 7, filters), "final_layer/FC/weights": (7, 10)}
    assert registry.identify(tensors).name == model_name
    assert registry.identify(tensors, model_name).name == model_name


def test_identify_refuses_another_nasnet():
    from slimtune.errors import CheckpointError

    tensors = {"cell_0/1x1/weights": (1, 1, 7, 44), "final_layer/FC/weights": (7, 10)}
    with pytest.raises(CheckpointError, match="use --model_name=nasnet_mobile"):
        registry.identify(tensors, "pnasnet_mobile")


def _random_and_photos(size):
    """Two seeded random images and the four photos in one batch: one slim build."""
    return np.concatenate([probe.random_images(2, size, seed=0), photos(size)])


@pytest.mark.parametrize("model_name,size", [
    ("nasnet_cifar", 32), ("pnasnet_mobile", 75),
    pytest.param("nasnet_mobile", 67, marks=pytest.mark.slow),  # cells as cifar, stem as pnasnet
    pytest.param("nasnet_mobile", 224, marks=pytest.mark.slow),
    pytest.param("pnasnet_mobile", 224, marks=pytest.mark.slow),
    pytest.param("nasnet_cifar", 33, marks=pytest.mark.slow),
    pytest.param("nasnet_large", 331, marks=pytest.mark.slow),
    pytest.param("pnasnet_large", 331, marks=pytest.mark.slow),
    pytest.param("nasnet_large", 99, marks=pytest.mark.slow),
    pytest.param("pnasnet_large", 101, marks=pytest.mark.slow)])
def test_parity_on_random_images_and_photos(tmp_path, model_name, size):
    """Logits, AuxLogits and every end point within 1e-5 of slim's largest value, the
    median within 1e-6."""
    results = check_parity(tmp_path, model_name, size, aux=True,
                           images=_random_and_photos(size), label="random+photos ")
    for key, diff in results.items():
        print(f"{model_name} {size}px {key}: median rel {diff.median_rel:.3g}")
    assert max(diff.median_rel for diff in results.values()) <= 1e-6
