"""MobileNet v3 (small, large, minimalistic) and MobileNet EdgeTPU: the slim graphs have
the published checkpoints' variables, the registry tells the six apart by their
variables, and each converts to Keras 3 with parity on random images and photos.

Reference counts at 1000 classes: keras.applications' MobileNetV3Large / Small (the same
networks, ``weights=None, include_preprocessing=False``) report 5,483,032 / 2,542,856
trainable parameters, and with ``minimalistic=True`` 3,924,288 / 2,044,736.
research/slim's mobilenet README gives 5.4, 3.9 and 2.0 million for large, large
minimalistic and small minimalistic (its 2.9 for small disagrees with the network it
builds; the MobileNet v3 paper says 2.5), and 4.0 and 2.9 million for EdgeTPU 1.0 and
0.75.  The default run keeps the nets at 33 px; 224 px and 225 px are nightly.
"""

import functools

import numpy as np
import pytest
import tensorflow as tf

import test_convert_mobilenet
from slimtune import registry
from conversion import check_every_command
from test_convert_small import _parity

NAMES = ("mobilenet_v3_small", "mobilenet_v3_large", "mobilenet_v3_small_minimalistic",
         "mobilenet_v3_large_minimalistic", "mobilenet_edgetpu", "mobilenet_edgetpu_075")


# ``({variable: shape}, trainable parameter count)``, each graph built once.
_variables = functools.lru_cache(maxsize=None)(test_convert_mobilenet._variables)


@pytest.mark.parametrize("model_name,trainable_1000", [
    ("mobilenet_v3_large", 5_483_032), ("mobilenet_v3_small", 2_542_856),
    ("mobilenet_v3_large_minimalistic", 3_924_288),
    ("mobilenet_v3_small_minimalistic", 2_044_736)])
def test_v3_parameter_counts(model_name, trainable_1000):
    assert _variables(model_name, num_classes=1000)[1] == trainable_1000


@pytest.mark.parametrize("model_name,millions", [
    ("mobilenet_edgetpu", 4.0), ("mobilenet_edgetpu_075", 2.9)])
def test_edgetpu_parameter_counts(model_name, millions):
    trainable = _variables(model_name)[1]
    print(f"{model_name}: {trainable:,} trainable parameters at 1001 classes")
    assert abs(trainable / 1e6 - millions) < 0.1, trainable


def test_v3_large_variables_are_the_published_checkpoint_s():
    shapes, _ = _variables("mobilenet_v3_large")
    assert shapes["MobilenetV3/Conv/weights"] == [3, 3, 3, 16]
    assert "MobilenetV3/expanded_conv/expand/weights" not in shapes  # expansion 1
    assert shapes["MobilenetV3/expanded_conv/depthwise/depthwise_weights"] == [3, 3, 16, 1]
    assert shapes["MobilenetV3/expanded_conv_3/expand/weights"] == [1, 1, 24, 72]
    assert shapes["MobilenetV3/expanded_conv_3/depthwise/depthwise_weights"] == [5, 5, 72, 1]
    se = "MobilenetV3/expanded_conv_3/squeeze_excite/"
    assert shapes[se + "Conv/weights"] == [1, 1, 72, 24]
    assert shapes[se + "Conv/biases"] == [24]
    assert shapes[se + "Conv_1/weights"] == [1, 1, 24, 72]
    assert shapes[se + "Conv_1/biases"] == [72]
    assert shapes["MobilenetV3/expanded_conv_8/expand/weights"] == [1, 1, 80, 184]
    assert shapes["MobilenetV3/expanded_conv_14/project/BatchNorm/gamma"] == [160]
    assert shapes["MobilenetV3/Conv_1/weights"] == [1, 1, 160, 960]
    assert shapes["MobilenetV3/Conv_2/weights"] == [1, 1, 960, 1280]
    assert shapes["MobilenetV3/Conv_2/biases"] == [1280]
    assert "MobilenetV3/Conv_2/BatchNorm/beta" not in shapes
    assert shapes["MobilenetV3/Logits/Conv2d_1c_1x1/weights"] == [1, 1, 1280, 1001]
    assert not any(n.startswith("MobilenetV3/expanded_conv_15/") for n in shapes)


def test_v3_small_and_minimalistic_variables():
    shapes, _ = _variables("mobilenet_v3_small")
    assert shapes["MobilenetV3/expanded_conv/squeeze_excite/Conv/weights"] == [1, 1, 16, 8]
    assert shapes["MobilenetV3/expanded_conv_1/expand/weights"] == [1, 1, 16, 72]
    assert shapes["MobilenetV3/expanded_conv_2/expand/weights"] == [1, 1, 24, 88]
    assert shapes["MobilenetV3/expanded_conv_10/project/weights"] == [1, 1, 576, 96]
    assert shapes["MobilenetV3/Conv_1/weights"] == [1, 1, 96, 576]
    assert shapes["MobilenetV3/Conv_2/weights"] == [1, 1, 576, 1024]
    minimal, _ = _variables("mobilenet_v3_small_minimalistic")
    assert not any("squeeze_excite" in n for n in minimal)
    assert minimal["MobilenetV3/expanded_conv_3/depthwise/depthwise_weights"] == [3, 3, 96, 1]
    assert minimal["MobilenetV3/Conv_2/weights"] == [1, 1, 576, 1024]


def test_edgetpu_variables_are_the_published_checkpoint_s():
    """The first nine blocks are fused (a 3x3 expansion, no depthwise); the first has no
    expansion at all (32 -> 32) and only projects; Conv_1 is the last conv."""
    shapes, _ = _variables("mobilenet_edgetpu")
    root = "MobilenetEdgeTPU/"
    assert shapes[root + "Conv/weights"] == [3, 3, 3, 32]
    assert not any(n.startswith(root + "expanded_conv/expand/") for n in shapes)
    assert shapes[root + "expanded_conv/project/weights"] == [1, 1, 32, 16]
    assert shapes[root + "expanded_conv_1/expand/weights"] == [3, 3, 16, 128]
    assert not any("depthwise" in n for n in shapes if "/expanded_conv_8/" in n)
    assert shapes[root + "expanded_conv_9/expand/weights"] == [1, 1, 48, 384]
    assert shapes[root + "expanded_conv_9/depthwise/depthwise_weights"] == [3, 3, 384, 1]
    assert shapes[root + "expanded_conv_17/depthwise/depthwise_weights"] == [5, 5, 768, 1]
    assert shapes[root + "expanded_conv_21/project/weights"] == [1, 1, 1280, 192]
    assert shapes[root + "Conv_1/weights"] == [1, 1, 192, 1280]
    assert not any(n.startswith(root + "Conv_2/") for n in shapes)
    narrow, _ = _variables("mobilenet_edgetpu_075")
    assert narrow[root + "Conv/weights"] == [3, 3, 3, 24]
    assert narrow[root + "expanded_conv_21/project/weights"] == [1, 1, 960, 144]
    assert narrow[root + "Conv_1/weights"] == [1, 1, 144, 1280]  # finegrain: kept


def test_the_registry_tells_the_six_apart():
    """v3's four forms share ``MobilenetV3`` and EdgeTPU's two ``MobilenetEdgeTPU``:
    conversion without --model_name reads which one from the variables."""
    for name in NAMES:
        # The graphs the tests above built (v3 at 1000 classes, EdgeTPU at 1001).
        shapes, _ = _variables(name, num_classes=1001 if "edgetpu" in name else 1000)
        assert registry.identify(shapes).name == name


@pytest.mark.parametrize("model_name", [
    name if "minimalistic" not in name else pytest.param(name, marks=pytest.mark.slow)
    for name in NAMES])
def test_parity_at_33px(tmp_path, model_name):
    """Every net on random images; v3 small and EdgeTPU (fused blocks) on photos too.
    The minimalistic forms (relu, 3x3, no squeeze-excite: pieces the others have) are
    nightly."""
    _parity(tmp_path, model_name, 33, _random(33), "random")
    if model_name in ("mobilenet_v3_small", "mobilenet_edgetpu"):
        _parity(tmp_path, model_name, 33, _photos(33), "photos")


@pytest.mark.slow
@pytest.mark.parametrize("size", [224, 225])
@pytest.mark.parametrize("model_name", NAMES)
def test_parity_at_full_size(tmp_path, model_name, size):
    _parity(tmp_path, model_name, size, _random(size), "random")
    _parity(tmp_path, model_name, size, _photos(size), "photos")


def _random(size):
    from slimtune import probe

    return probe.random_images(4, size, seed=0)


def _photos(size):
    from conversion import photos

    return photos(size)


def test_hard_swish_and_gate_match_slim_s_formulas():
    """The Keras hard-swish and squeeze-excite gate against research/slim's formulas run
    by TensorFlow, across the kinks at -3 and 3 (the same float32 operations in the same
    order: the difference printed is expected to be 0)."""
    import keras

    from slimtune import compare
    from slimtune.keras_nets import layers as L
    from slimtune.nets import mobilenet_v3 as nets

    x = np.concatenate([np.linspace(-5, 5, 2001), np.random.RandomState(0).normal(0, 4, 999)])
    x = x.astype(np.float32).reshape(1, 1, -1, 1)
    inputs = keras.Input((1, None, 1))
    swish = keras.Model(inputs, L.activation(inputs, "a", "hard_swish"))
    gate = keras.Model(inputs, keras.layers.Rescaling(nets.GATE_SCALE)(
        L.relu6_shifted(inputs, "g")))
    for label, ours, theirs in (
            ("hard-swish", swish(x), x * tf.nn.relu6(x + np.float32(3)) * np.float32(1. / 6.)),
            ("gate", gate(x), tf.nn.relu6(x + 3) * 0.16667)):
        diff = compare.difference(np.asarray(theirs), np.asarray(ours))
        print(f"{label}: {diff.line()}")
        assert diff.max_rel <= 1e-7


def _with_shadows(tmp_path, model_name, size=33):
    """A random checkpoint whose every model variable has an ExponentialMovingAverage
    shadow 0.8-1.2 times its value (research/slim's published MobileNet v3 layout):
    ``(prefix, {variable: shadow value})``."""
    from slim_checkpoints import make_checkpoint, read, write

    raw = read(make_checkpoint(str(tmp_path / "raw" / "model.ckpt"), model_name, 5,
                               image_size=size))
    rng = np.random.RandomState(0)
    shadows = {name: (value * rng.uniform(0.8, 1.2, value.shape)).astype(value.dtype)
               for name, value in raw.items() if name != "global_step"}
    prefix = str(tmp_path / "averaged" / "model.ckpt")
    write(prefix, {**raw, **{f"{n}/ExponentialMovingAverage": v for n, v in shadows.items()}})
    return prefix, shadows, raw


def test_published_averages_are_converted_by_default(tmp_path):
    """A MobileNet v3 checkpoint holding shadows converts from the shadows (one line
    says so), its slim graph reads them too (the parity check passes), and
    ``use_moving_averages=False`` takes the raw weights; other architectures keep
    reading their variables unless asked."""
    from slimtune import checkpoint, convert, slim_run

    prefix, shadows, raw = _with_shadows(tmp_path, "mobilenet_v3_small")
    kernel = "MobilenetV3/Conv/weights"
    assert np.abs(shadows[kernel] - raw[kernel]).max() > 1e-3
    lines = []
    for label, flag, expected in (("default", None, shadows), ("raw", False, raw)):
        meta = convert.convert(convert.ConvertConfig(
            checkpoint_path=prefix, output_dir=str(tmp_path / f"keras_{label}"), image_size=33,
            use_moving_averages=flag), log=lines.append)
        print(f"{label}: parity {meta['parity']['random']['max_rel']:.3g}")
        assert meta["use_moving_averages"] is (flag is None)
        assert meta["parity"]["random"]["max_rel"] <= 1e-5
        import keras

        model = keras.models.load_model(str(tmp_path / f"keras_{label}" / "model.keras"))
        np.testing.assert_array_equal(np.asarray(model.get_layer("Conv").kernel),
                                      expected[kernel])
    said = [line for line in lines if "ExponentialMovingAverage" in line]
    print("\n".join(said))
    assert len(said) == 1 and "--nouse_moving_averages" in said[0]
    # The slim inference graph of every other command (eval, verify, export) follows
    # the same default: without a map it computes what the shadows compute.
    spec, images = registry.get("mobilenet_v3_small"), _random(33)
    names = list(checkpoint.read_shapes(prefix))
    by_default = slim_run.slim_outputs(spec, prefix, images, 5, spec.batch_norm)[0]
    as_named = slim_run.slim_outputs(spec, prefix, images, 5, spec.batch_norm,
                                     variable_map={})[0]
    averaged = slim_run.slim_outputs(spec, prefix, images, 5, spec.batch_norm,
                                     variable_map=checkpoint.average_map(names))[0]
    assert np.abs(by_default - as_named).max() > 1e-3
    np.testing.assert_array_equal(by_default, averaged)  # one graph, restored alike
    assert checkpoint.averages_to_read(registry.get("mobilenet_v2"), names) == (False, None)
    assert checkpoint.averages_to_read(spec, [n for n in names if "Exponential" not in n]) \
        == (False, None)


def test_a_broken_shadow_is_refused_where_the_default_reads_it(tmp_path):
    """The commands that read a v3 checkpoint's averages by default judge them before
    any graph runs: a NaN shadow stops export and verify in one line naming it."""
    from slim_checkpoints import read, write
    from slimtune import export, forms
    from slimtune.errors import BrokenCheckpoint

    prefix, _, _ = _with_shadows(tmp_path, "mobilenet_v3_small")
    tensors = read(prefix)
    shadow = "MobilenetV3/Conv/BatchNorm/moving_variance/ExponentialMovingAverage"
    tensors[shadow] = np.full_like(tensors[shadow], np.nan)
    broken = write(str(tmp_path / "broken" / "model.ckpt"), tensors)
    with pytest.raises(BrokenCheckpoint) as error:
        export.export(export.ExportConfig(
            checkpoint_path=broken, model_name="mobilenet_v3_small", image_size=33,
            output_file=str(tmp_path / "frozen.pb")), log=lambda line: None)
    print(error.value)
    assert str(error.value).splitlines()[0].count(shadow) == 1
    assert not (tmp_path / "frozen.pb").exists()
    form = forms.open_checkpoint(broken, "mobilenet_v3_small")
    with pytest.raises(BrokenCheckpoint, match="ExponentialMovingAverage"):
        form.run(np.zeros([1, 33, 33, 3], np.float32))


def test_mobilenet_v3_small_through_every_command(tmp_path, digits_dir):
    """Two slim-engine steps at 32 px, eval, export, convert, verify (the frozen graph,
    and the .keras layer by layer), the doctor, recalibration, a fresh-process reload of
    the .keras without slimtune and a Keras-engine step (BatchNorm, hard-swish,
    squeeze-excite).  The other five names: tests/test_every_architecture.py, nightly."""
    done = check_every_command(tmp_path, digits_dir, "mobilenet_v3_small", 32)
    assert done["convert"]["use_moving_averages"] is False  # no --moving_average_decay
