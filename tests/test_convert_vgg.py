"""VGG 16/19 and AlexNet v2 convert to Keras 3 with logits parity (fixed input sizes)."""

import pytest

from conversion import check_parity


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
