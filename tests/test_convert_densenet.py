"""DenseNet 121/161/169: the slim graphs have the published checkpoints' variables, and
convert to Keras 3 with parity at even and odd sizes.

The variable layout is pudae/tensorflow-densenet's (ENGINEERING 4).  Trainable
parameter counts at 1000 classes are the published models' (the same architecture as
torchvision's and keras.applications' DenseNets, whose counts agree): 7,978,856 for
121, 14,149,480 for 169, 28,681,000 for 161.
"""

import pytest
import tensorflow as tf

from conversion import check_parity, check_tools_path
from slimtune import compat, registry

v1 = tf.compat.v1


def _variables(model_name, num_classes=1000, size=224):
    compat.apply()
    spec = registry.get(model_name)
    with tf.Graph().as_default():
        images = v1.placeholder(tf.float32, [None, size, size, 3])
        spec.build(images, num_classes, is_training=True)
        every = {v.op.name: v.shape.as_list() for v in v1.global_variables()}
        trainable = sum(v.shape.num_elements() for v in v1.trainable_variables())
    return every, trainable


def test_densenet121_variables_are_the_published_checkpoint_s():
    names, trainable = _variables("densenet121")
    assert len(names) == 606
    assert trainable == 7_978_856
    assert names["densenet121/conv1/weights"] == [7, 7, 3, 64]
    assert names["densenet121/BatchNorm/moving_variance"] == [64]
    # The first conv block: BN of the 64 stem channels, 1x1 to 128, BN, 3x3 to growth 32.
    block = "densenet121/dense_block1/conv_block1"
    assert names[f"{block}/x1/BatchNorm/gamma"] == [64]
    assert names[f"{block}/x1/Conv/weights"] == [1, 1, 64, 128]
    assert names[f"{block}/x2/BatchNorm/beta"] == [128]
    assert names[f"{block}/x2/Conv/weights"] == [3, 3, 128, 32]
    # 64 + 6 * 32 = 256 channels, compressed to 128 by the first transition.
    assert names["densenet121/transition_block1/blk/Conv/weights"] == [1, 1, 256, 128]
    assert names["densenet121/dense_block4/conv_block16/x2/Conv/weights"] == [3, 3, 128, 32]
    assert names["densenet121/final_block/BatchNorm/moving_mean"] == [1024]
    assert names["densenet121/logits/weights"] == [1, 1, 1024, 1000]
    assert names["densenet121/logits/biases"] == [1000]
    batch_norms = [n for n in names if n.endswith("/moving_mean")]
    assert len(batch_norms) == 121
    assert not any(n.endswith("/Conv/biases") for n in names)


@pytest.mark.parametrize("model_name,trainable,final_channels,variables", [
    pytest.param("densenet169", 14_149_480, 1664, 4 * 169 + 168 + 2, marks=pytest.mark.slow),
    pytest.param("densenet161", 28_681_000, 2208, 4 * 161 + 160 + 2,
                 marks=pytest.mark.slow),
])
def test_other_densenets_match_the_published_counts(model_name, trainable, final_channels,
                                                     variables):
    names, count = _variables(model_name, size=64)
    assert count == trainable
    assert names[f"{model_name}/final_block/BatchNorm/gamma"] == [final_channels]
    # 4 per BatchNorm, 1 per conv (stem, 2 per conv block, 3 transitions), 2 for the logits.
    assert len(names) == variables


# densenet121 at an odd size (the SAME stem and pools split differently) by default;
# its exported forms (at 32 px) and 161/169, which only repeat conv blocks, nightly.
@pytest.mark.parametrize("model_name,image_size", [
    ("densenet121", 33),
    pytest.param("densenet121", 32, marks=pytest.mark.slow),
    pytest.param("densenet169", 33, marks=pytest.mark.slow),
    pytest.param("densenet161", 32, marks=pytest.mark.slow)])
def test_parity(tmp_path, model_name, image_size):
    check_parity(tmp_path, model_name, image_size,
                 forms=model_name == "densenet121" and image_size == 32)


@pytest.mark.slow
def test_densenet_fine_tunes_evaluates_and_converts(tmp_path, digits_dir):
    """Two minutes on 2 cores, so nightly; export and verify of densenet121 run by
    default (test_parity's forms at 33 px)."""
    check_tools_path(tmp_path, "densenet121", 1000)
