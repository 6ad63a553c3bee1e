"""ResNet v1/v2 (50/101/152/200) convert to Keras 3 with logits parity at even and odd sizes.

Even and odd inputs exercise different padding: slim's ``conv2d_same`` pads symmetrically
whatever the size, while the SAME max-pools pad asymmetrically only for even maps.  Sizes
are small because the deep slim graphs are slow to build (about a minute per case for
the 200-layer nets, two graph builds each), not to run.

The default run covers resnet_v1_50 and resnet_v2_50 at an even and an odd size each,
and resnet_v2_50's frozen ``.pb``, SavedModel and ``.keras`` (resnet_v1_50's forms are
checked in the main job test).  101, 152 and 200 differ from 50 only in the number of
units per block, which the port table derives from one list: their parity (both
sizes) and forms run in the nightly ``pytest -m slow``, keeping the default suite
under 30 minutes on 2 cores.
"""

import numpy as np
import pytest

from conversion import check_parity
from slim_checkpoints import make_checkpoint, read
from slimtune import compare, probe, registry
from slimtune.errors import CheckpointError

# model -> (size always run, size marked slow); v1 and v2 alternate even/odd at each depth.
_SIZES = {
    "resnet_v1_50": (64, 33), "resnet_v2_50": (33, 64),
    "resnet_v1_101": (32, 37), "resnet_v2_101": (37, 32),
    "resnet_v1_152": (37, 32), "resnet_v2_152": (32, 37),
    "resnet_v1_200": (32, 37), "resnet_v2_200": (37, 32),
}
_ALWAYS = ()  # the second size of every depth runs nightly
# Deeper nets only add units to the blocks: the same code, up to a minute per build.
_NIGHTLY = ("resnet_v1_101", "resnet_v2_101", "resnet_v1_152", "resnet_v2_152",
            "resnet_v1_200", "resnet_v2_200")


def _cases():
    for model_name, (first, second) in _SIZES.items():
        marks = (pytest.mark.slow,) if model_name in _NIGHTLY else ()
        yield pytest.param(model_name, first, marks=marks, id=f"{model_name}-{first}")
        marks = () if model_name in _ALWAYS else (pytest.mark.slow,)
        yield pytest.param(model_name, second, marks=marks, id=f"{model_name}-{second}")


@pytest.mark.parametrize("model_name,image_size", list(_cases()))
def test_parity(tmp_path, model_name, image_size):
    check_parity(tmp_path, model_name, image_size,
                 forms=model_name == "resnet_v2_50" and image_size == _SIZES[model_name][0])


@pytest.mark.slow
@pytest.mark.parametrize("model_name", [n for n in _SIZES if n != "resnet_v2_50"])
def test_exported_and_saved_forms(tmp_path, model_name):
    """The .pb, SavedModel and .keras of every depth (resnet_v2_50's run by default, and
    resnet_v1_50's in the main job test; the export code does not depend on depth)."""
    check_parity(tmp_path, model_name, _SIZES[model_name][0], forms=True)


def test_wrong_architecture_lists_missing_tensors(tmp_path):
    """A resnet_v1_50 checkpoint converted as resnet_v1_101 fails with every unmatched
    name listed, not just the first.  As saved, every tensor is under the wrong root;
    renamed to the 101 root, only block3 units 7-23 are missing."""
    prefix = make_checkpoint(str(tmp_path / "model.ckpt"), "resnet_v1_50", 7)
    tensors = read(prefix)
    spec = registry.get("resnet_v1_101")
    with pytest.raises(CheckpointError, match="resnet_v1_101/conv1/weights not in the checkpoint"):
        spec.keras_from_tensors(tensors, 7, spec.batch_norm)

    renamed = {name.replace("resnet_v1_50/", "resnet_v1_101/", 1): value
               for name, value in tensors.items()}
    with pytest.raises(CheckpointError) as error:
        spec.keras_from_tensors(renamed, 7, spec.batch_norm)
    message = str(error.value)
    assert ("resnet_v1_101/block3/unit_7/bottleneck_v1/conv1/weights not in the checkpoint"
            in message)
    assert "resnet_v1_101/block3/unit_23/bottleneck_v1/conv3/BatchNorm/gamma" in message
    assert "Keras weights got no value" in message
    assert "tensors were not used" not in message  # the 50's tensors all fit the 101


def test_open_input_size(tmp_path):
    """With ``image_size=None`` one Keras model serves every size, as the slim graph does."""
    spec = registry.get("resnet_v2_50")
    tensors = read(make_checkpoint(str(tmp_path / "model.ckpt"), spec.name, 7))
    model = spec.keras_from_tensors(tensors, 7, spec.batch_norm, image_size=None)
    assert tuple(model.input_shape) == (None, None, None, 3)
    for size in (33, 64):
        fixed = spec.keras_from_tensors(tensors, 7, spec.batch_norm, image_size=size)
        images = probe.random_images(2, size)
        # Two graphs (open and fixed shapes) may pick other kernels: rounding apart.
        gap = compare.difference(np.asarray(fixed(images)), np.asarray(model(images)))
        print(f"{size} px: open vs fixed input size {gap.max_rel:.3g} relative")
        assert gap.max_rel <= 1e-6
