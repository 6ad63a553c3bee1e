"""slimtune-recalibrate and slimtune-train --precise_bn_batches: exact BatchNorm statistics.

The statistics are checked against an oracle built independently here: the BatchNorm
inputs of every batch, fetched from the graph (or computed layer by layer for Keras),
concatenated, and reduced in float64 by numpy.  Served accuracy before and after is
judged with the doctor's sign test, never a raw threshold.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from slim_checkpoints import make_checkpoint, read, write
from slimtune import (batch_statistics, bn_layers, metadata, recalibrate, recalibration,
                      registry, slim_run, train)
from slimtune.data import pipeline
from slimtune.checks import statistics_checks
from slimtune.errors import CheckpointError, DataError, UsageError
from slimtune.nets import batch_norm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
v1 = tf.compat.v1


def _digit_batches(digits_dir, preprocessing, size, batch_size, count, seed=0):
    split = pipeline.open_split("digits", digits_dir, "train")
    batches = batch_statistics.image_batches(split, preprocessing, size, batch_size, seed)
    return [next(batches) for _ in range(count)]


def _concatenated_statistics(spec, prefix, batches, num_classes, bn):
    """Oracle: ``{variable scope: (mean, variance)}`` of each BatchNorm's input over all
    batches together, from the op inputs of a graph built here, named by op scope."""
    with tf.Graph().as_default() as graph:
        x = v1.placeholder(tf.float32, (None,) + batches[0].shape[1:])
        spec.build(x, num_classes, is_training=False,
                   batch_norm=bn.replace(mode=batch_norm.BATCH_STATS))
        ops = [op for op in graph.get_operations() if op.type == "FusedBatchNormV3"]
        assert ops and all(op.get_attr("is_training") for op in ops)
        with v1.Session() as sess:
            v1.train.Saver().restore(sess, prefix)
            values = [sess.run([op.inputs[0] for op in ops], {x: b}) for b in batches]
    result = {}
    for index, op in enumerate(ops):
        parts = op.name.split("/")[:-1]
        if parts[0] == parts[1]:  # Inception re-enters its root name scope
            parts = parts[1:]
        inputs = np.concatenate([v[index] for v in values]).astype(np.float64)
        inputs = inputs.reshape(-1, inputs.shape[-1])
        result["/".join(parts)] = (inputs.mean(0), inputs.var(0, ddof=1))
    return result


def _relative(a, b):
    return float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(b)))))


@pytest.mark.parametrize("model_name,size", [
    ("resnet_v2_50", 32), pytest.param("inception_v2", 33, marks=pytest.mark.slow)])
def test_slim_statistics_equal_those_of_the_concatenated_inputs(tmp_path, digits_dir,
                                                               model_name, size):
    """ResNet v2 (``preact``/``postnorm`` BatchNorms without a BatchNorm scope) and
    Inception v2 (ops under ``InceptionV2/InceptionV2/...``, dropout that must stay
    off); batches of unequal size, so the merge weighs them by count."""
    spec = registry.get(model_name)
    prefix = make_checkpoint(str(tmp_path / "model.ckpt"), model_name, 7, image_size=size)
    batches = _digit_batches(digits_dir, spec.preprocessing, size, 8, 3)
    batches[2] = batches[2][:5]
    source = read(prefix)
    tensors, layers, note = recalibration.recalibrated_checkpoint(
        spec, prefix, source, 7, spec.batch_norm, iter(batches), 3, log=None)
    expected = _concatenated_statistics(spec, prefix, batches, 7, spec.batch_norm)
    assert layers == len(expected) == len([n for n in source if n.endswith("moving_mean")])
    worst = max(max(_relative(tensors[scope + "/moving_mean"], mean),
                    _relative(tensors[scope + "/moving_variance"], variance))
                for scope, (mean, variance) in expected.items())
    print(f"{model_name}: {layers} layers, worst relative difference {worst:.2g}")
    assert worst <= 1e-5
    assert note is None
    assert all(np.array_equal(tensors[n], v) and tensors[n].dtype == v.dtype
               for n, v in source.items() if not n.endswith(("moving_mean", "moving_variance")))


def _small_keras_model():
    """Conv-BN-ReLU twice, then pooling, dropout (after the last BatchNorm, as in the
    converted nets) and a dense head; moving statistics away from 0/1."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(8, 3, name="conv2")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.5)(x)
    model = keras.Model(inputs, keras.layers.Dense(10)(x))
    rng = np.random.RandomState(0)
    for name in ("bn1", "bn2"):
        layer = model.get_layer(name)
        layer.moving_mean.assign(rng.normal(0, 0.5, 8))
        layer.moving_variance.assign(rng.uniform(0.5, 2.0, 8))
        layer.gamma.assign(rng.uniform(0.5, 1.5, 8))
        layer.beta.assign(rng.normal(0, 0.1, 8))
    return model


def _keras_oracle(model, batches, bn1_frozen):
    """The BatchNorm inputs computed layer by layer in numpy: bn1 normalises with its
    batch's (biased) statistics, as in training, or with its moving ones when frozen."""
    bn1 = model.get_layer("bn1")
    inputs = {"bn1": [], "bn2": []}
    for images in batches:
        a = np.asarray(model.get_layer("conv1")(images), np.float64)
        if bn1_frozen:
            mean, variance = np.asarray(bn1.moving_mean), np.asarray(bn1.moving_variance)
        else:
            mean, variance = a.mean((0, 1, 2)), a.var((0, 1, 2))
        normed = (a - mean) / np.sqrt(variance + bn1.epsilon) * np.asarray(bn1.gamma) \
            + np.asarray(bn1.beta)
        b = np.asarray(model.get_layer("conv2")(np.maximum(normed, 0).astype(np.float32)))
        inputs["bn1"].append(a.reshape(-1, 8))
        inputs["bn2"].append(b.reshape(-1, 8).astype(np.float64))
    return {name: (np.concatenate(v).mean(0), np.concatenate(v).var(0, ddof=1))
            for name, v in inputs.items()}


def test_keras_statistics_equal_those_of_the_concatenated_inputs(tmp_path, digits_dir):
    """A .keras beside a slimtune.json, as slimtune-convert writes it; bn1 frozen
    (trainable=False) is left alone unless --include_frozen."""
    model = _small_keras_model()
    model.get_layer("bn1").trainable = False
    source = tmp_path / "keras"
    source.mkdir()
    model.save(source / "model.keras")
    metadata.write(str(source), {"format": "slimtune.keras/1", "image_size": 32,
                                 "preprocessing": "lenet"})
    batches = _digit_batches(digits_dir, "lenet", 32, 16, 3)
    for include_frozen in (False, True):
        out = tmp_path / f"out_{include_frozen}"
        lines = []
        recalibrate.recalibrate(recalibrate.RecalibrateConfig(
            checkpoint_path=str(source), output_dir=str(out), dataset_name="digits",
            dataset_dir=digits_dir, num_batches=3, batch_size=16,
            include_frozen=include_frozen), log=lines.append)
        assert sorted(os.listdir(out)) == ["model.keras", "slimtune.json"]
        written = keras.models.load_model(out / "model.keras", safe_mode=True)
        expected = _keras_oracle(model, batches, bn1_frozen=not include_frozen)
        for name in ("bn1", "bn2"):
            layer = written.get_layer(name)
            if name == "bn1" and not include_frozen:
                assert np.array_equal(layer.moving_mean, model.get_layer(name).moving_mean)
                continue
            mean, variance = expected[name]
            worst = max(_relative(np.asarray(layer.moving_mean), mean),
                        _relative(np.asarray(layer.moving_variance), variance))
            print(f"{name} include_frozen={include_frozen}: worst relative {worst:.2g}")
            assert worst <= 1e-5
        assert not written.get_layer("bn1").trainable  # saved as it was
        for before, after in zip(model.get_layer("conv2").weights, written.get_layer("conv2").weights):
            assert np.array_equal(before, after)
        entry = json.loads((out / "slimtune.json").read_text())[metadata.RECALIBRATIONS][-1]
        assert entry["left_alone"] == ([] if include_frozen else ["bn1"])
        assert entry["preprocessing_mode"] == "evaluation" and entry["images"] == 48
        assert any("left alone: 1 frozen" in line for line in lines) != include_frozen


def test_training_preprocessing_is_used_and_recorded(tmp_path, digits_dir):
    path = tmp_path / "m.keras"
    _small_keras_model().save(path)

    def moving_means(name, train_preprocessing):
        recalibrate.recalibrate(recalibrate.RecalibrateConfig(
            checkpoint_path=str(path), output_dir=str(tmp_path / name), dataset_name="digits",
            dataset_dir=digits_dir, image_size=32, preprocessing_name="inception",
            num_batches=2, batch_size=8, train_preprocessing=train_preprocessing))
        entry = metadata.read(str(tmp_path / name))[metadata.RECALIBRATIONS][-1]
        assert entry["preprocessing_mode"] == ("training" if train_preprocessing
                                               else "evaluation")
        model = keras.models.load_model(tmp_path / name / "model.keras", safe_mode=True)
        return np.asarray(model.get_layer("bn1").moving_mean)

    # Random crops of 5-100% of the area, resized, against central crops: the first
    # layer's input means differ (the augmented ones are not reproducible, see
    # batch_statistics.image_batches, so only the difference is tested).
    assert not np.allclose(moving_means("a", True), moving_means("b", False), rtol=1e-3)


def test_random_layer_before_batch_norm_is_refused(tmp_path, digits_dir):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Dropout(0.2, name="early_dropout")(inputs)
    x = keras.layers.BatchNormalization()(keras.layers.Conv2D(4, 3)(x))
    path = tmp_path / "m.keras"
    keras.Model(inputs, x).save(path)
    with pytest.raises(UsageError, match="early_dropout"):
        recalibrate.recalibrate(recalibrate.RecalibrateConfig(
            checkpoint_path=str(path), output_dir=str(tmp_path / "out"), dataset_name="digits",
            dataset_dir=digits_dir, image_size=32, preprocessing_name="lenet", num_batches=1,
            batch_size=4))
    assert not (tmp_path / "out").exists()


EMA_SHADOWS = ("resnet_v1_50/conv1/BatchNorm/moving_mean/ExponentialMovingAverage",
               "resnet_v1_50/conv1/BatchNorm/moving_variance/ExponentialMovingAverage")


@pytest.fixture(scope="module")
def frozen_run(tmp_path_factory):
    """A resnet_v1_50 run trained with --freeze_batch_norm, as slimtune.json records it,
    with --moving_average_decay shadows of one layer's statistics (read only: every
    test writes elsewhere)."""
    run = tmp_path_factory.mktemp("frozen_run")
    prefix = make_checkpoint(str(run / "model.ckpt"), "resnet_v1_50", 10, global_step=40)
    tensors = read(prefix)
    for name in EMA_SHADOWS:
        tensors[name] = tensors[name.rsplit("/", 1)[0]] + 0.25
    write(prefix, tensors)
    bn = registry.get("resnet_v1_50").batch_norm.replace(mode=batch_norm.FROZEN)
    metadata.write(str(run), {"model_name": "resnet_v1_50", "num_classes": 10, "image_size": 32,
                              "preprocessing": "lenet", "batch_norm": bn.as_dict()})
    return run, prefix


def test_frozen_run_is_left_alone_unless_asked(tmp_path, digits_dir, frozen_run):
    run, prefix = frozen_run
    cfg = recalibrate.RecalibrateConfig(checkpoint_path=str(run), output_dir=str(tmp_path / "out"),
                                        dataset_name="digits", num_batches=2, batch_size=4)
    with pytest.raises(UsageError) as raised:
        recalibrate.recalibrate(cfg)
    assert "frozen BatchNorm" in str(raised.value) and "--include_frozen" in str(raised.value)
    assert not (tmp_path / "out").exists()

    cfg.include_frozen = True
    entry = recalibrate.recalibrate(cfg)
    out = tmp_path / "out"
    assert sorted(os.listdir(out)) == ["checkpoint", "model.ckpt-40.data-00000-of-00001",
                                       "model.ckpt-40.index", "model.ckpt-40.meta",
                                       "slimtune.json"]
    # The output directory is a checkpoint directory like a train dir.
    assert tf.train.latest_checkpoint(str(out)) == str(out / "model.ckpt-40")
    before, after = read(prefix), read(str(out / "model.ckpt-40"))
    assert set(before) == set(after)
    changed = {n for n in before if not np.array_equal(before[n], after[n])}
    assert changed == {n for n in before if n.endswith(("moving_mean", "moving_variance"))}
    # EMA shadows belong to the averaged weights: kept, and the record says so.
    assert all(n in before and n not in changed for n in EMA_SHADOWS)
    assert entry["note"].startswith("2 ExponentialMovingAverage shadows")
    assert after["global_step"] == 40 and after["global_step"].dtype == before["global_step"].dtype
    meta = json.loads((out / "slimtune.json").read_text())
    assert meta["batch_norm"]["mode"] == "frozen"  # the run's record, kept
    assert meta[metadata.RECALIBRATIONS] == [entry]
    assert entry["checkpoint"] == "model.ckpt-40" and entry["layers"] == 53
    assert entry["dataset"]["split"] == "train" and entry["num_batches"] == 2


def test_bad_input_fails_first_and_writes_nothing(tmp_path, digits_dir, frozen_run):
    run, prefix = frozen_run
    listing = sorted(os.listdir(run))
    # As a user runs it: one line naming the flag, exit code 1, no traceback.
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "recalibrate_batch_norm.py"),
         f"--checkpoint_path={run}", f"--output_dir={run}", "--dataset_name=digits"],
        capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 1, result.stderr
    first = result.stderr.strip().splitlines()[0]
    assert first.startswith(f"error: --output_dir={run} ") and "in place" in first
    assert "Traceback" not in result.stderr
    assert sorted(os.listdir(run)) == listing

    def attempt(**changes):
        settings = dict(checkpoint_path=str(run), output_dir=str(tmp_path / "out"),
                        dataset_name="digits", num_batches=2, batch_size=4,
                        include_frozen=True)
        settings.update(changes)
        recalibrate.recalibrate(recalibrate.RecalibrateConfig(**settings))

    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(UsageError, match="^--output_dir=.*full exists and is not empty"):
        attempt(output_dir=str(tmp_path / "full"))
    assert os.listdir(tmp_path / "full") == ["keep.txt"]
    with pytest.raises(UsageError, match="^--num_batches=0 must be positive"):
        attempt(num_batches=0)
    with pytest.raises(CheckpointError, match="nowhere.* does not exist"):
        attempt(checkpoint_path=str(tmp_path / "nowhere" / "model.ckpt-1"))
    # A failure after the work started (no such dataset) leaves no output, no temporary.
    with pytest.raises(DataError):
        attempt(dataset_name="flowers", dataset_dir=str(tmp_path / "no_data"))
    assert os.listdir(tmp_path) == ["full"]


def _top1_and_chance(better, worse, labels):
    """Top-1 of two logit sets on the same images, and how often a model whose two
    versions score alike would show the first's lead (the doctor's sign test)."""
    a, b = better.argmax(1) == labels, worse.argmax(1) == labels
    return a.mean(), b.mean(), statistics_checks.chance_of_gap(int(np.sum(a & ~b)),
                                                               int(np.sum(b & ~a)))


@pytest.mark.slow  # 100 resnet_v1_50 steps, shared with the doctor's seed 001 test
def test_seed_001_broken_run_recalibrated_serves_like_batch_statistics(
        tmp_path, digits_dir, seed_001_broken):
    """Seed 001: update ops never ran, so the statistics are 0/1 and served top-1 is at
    chance.  Recalibrated, the same weights serve within chance of what they score with
    batch statistics (all 359 held-out digits)."""
    spec = registry.get("resnet_v1_50")
    raw = os.path.join(seed_001_broken, "model.ckpt-100")
    out = str(tmp_path / "recalibrated")
    recalibrate.recalibrate(recalibrate.RecalibrateConfig(
        checkpoint_path=seed_001_broken, output_dir=out, model_name="resnet_v1_50",
        image_size=32, dataset_name="digits", num_batches=40, batch_size=32))
    images, labels = pipeline.load_eval_arrays("digits", digits_dir, "validation", "vgg", 32)
    bn = spec.batch_norm
    before, _ = slim_run.slim_outputs(spec, raw, images, 10, bn)
    served, batch, _ = statistics_checks.slim_measurements(
        spec, os.path.join(out, "model.ckpt-100"), images, 10, bn)
    batch_top1, before_top1, before_chance = _top1_and_chance(batch, before, labels)
    after_batch, served_top1, after_chance = _top1_and_chance(batch, served, labels)
    print(f"seed 001 on {len(labels)} images: served {before_top1:.3f} -> {served_top1:.3f}, "
          f"batch statistics {batch_top1:.3f}; chance of the gap before {before_chance:.2g}, "
          f"after {after_chance:.2g}")
    assert batch_top1 - before_top1 > 0.5 and before_chance < 1e-9  # the gap was real
    assert after_chance >= statistics_checks.GAP_CHANCE  # and now it is within chance
    assert served_top1 > 0.8


def _precise_run(train_dir, **changes):
    """Three resnet_v1_50 steps then --precise_bn_batches=2; returns (result, log lines)."""
    settings = dict(train_dir=str(train_dir), dataset_name="digits",
                    model_name="resnet_v1_50", preprocessing_name="lenet",
                    train_image_size=32, batch_size=4, max_number_of_steps=3,
                    optimizer="momentum", learning_rate=0.01, learning_rate_decay_type="fixed",
                    log_every_n_steps=1, seed=0, precise_bn_batches=2)
    settings.update(changes)
    lines = []
    return train.train(train.TrainConfig(**settings), log=lines.append), lines


@pytest.mark.slow  # test_keras_engine's --precise_bn_batches case runs by default
def test_precise_bn_batches_makes_the_final_checkpoint(tmp_path, digits_dir):
    """slimtune-train --precise_bn_batches: the recalibrated checkpoint becomes the
    latest, the raw one stays, slimtune.json says so."""
    with pytest.raises(UsageError, match="--freeze_batch_norm"):
        _precise_run(tmp_path / "frozen", freeze_batch_norm=True)
    assert not (tmp_path / "frozen").exists()  # refused before anything was written
    result, lines = _precise_run(tmp_path / "run")
    run = tmp_path / "run"
    assert result.checkpoint == str(run / "precise_bn.ckpt-3")
    assert tf.train.latest_checkpoint(str(run)) == result.checkpoint
    raw, precise = read(str(run / "model.ckpt-3")), read(result.checkpoint)
    changed = {n for n in raw if not np.array_equal(raw[n], precise[n])}
    assert changed == {n for n in raw if n.endswith(("moving_mean", "moving_variance"))}
    assert os.path.exists(result.checkpoint + ".meta")
    (entry,) = metadata.read(str(run))[metadata.RECALIBRATIONS]
    assert entry["checkpoint"] == "precise_bn.ckpt-3" and entry["num_batches"] == 2
    # Three steps at decay 0.997 leave the moving averages 99% 0/1 (the doctor warns on
    # such a run); the recalibrated checkpoint is judged as measured instead.
    assert not any("bn-decay-too-slow" in line for line in lines), lines


@pytest.mark.slow  # three short training runs
def test_precise_bn_batches_survives_interruption_and_resume(tmp_path, digits_dir):
    result, _ = _precise_run(tmp_path / "run")
    run = tmp_path / "run"
    precise = read(result.checkpoint)
    # Stopped during the recalibration: the same command does it, and gets the same
    # statistics (seeded batches).
    for name in os.listdir(run):
        if name.startswith("precise_bn.ckpt-3"):
            os.remove(run / name)
    v1.train.update_checkpoint_state(str(run), str(run / "model.ckpt-3"))
    again, lines = _precise_run(run)
    assert "Already at step 3 >= --max_number_of_steps; nothing to do" in lines
    assert again.checkpoint == str(run / "precise_bn.ckpt-3")
    assert all(np.array_equal(precise[n], v) for n, v in read(again.checkpoint).items())
    # Resuming continues from the recalibrated checkpoint.
    result, lines = _precise_run(run, max_number_of_steps=4)
    assert f"Resuming from {run / 'precise_bn.ckpt-3'}" in lines
    assert result.checkpoint == str(run / "precise_bn.ckpt-4")
    assert int(read(result.checkpoint)["global_step"]) == 4


def _digits_run(train_dir, decay, precise_bn_batches):
    """resnet_v1_50 on digits at 32 px, 100 steps of 32 (README's commands)."""
    return train.train(train.TrainConfig(
        train_dir=str(train_dir), dataset_name="digits", model_name="resnet_v1_50",
        preprocessing_name="lenet", train_image_size=32, batch_size=32,
        max_number_of_steps=100, optimizer="adam", learning_rate=1e-3, opt_epsilon=1e-8,
        learning_rate_decay_type="fixed", batch_norm_decay=decay, log_every_n_steps=50,
        seed=0, precise_bn_batches=precise_bn_batches))


def _served_and_batch(prefix, images, decay):
    spec = registry.get("resnet_v1_50")
    served, batch, _ = statistics_checks.slim_measurements(
        spec, prefix, images, 10, spec.batch_norm.replace(decay=decay))
    return served, batch


@pytest.mark.slow  # two 100-step resnet_v1_50 runs (README's table comes from these)
@pytest.mark.parametrize("decay", [0.9999, 0.9])
def test_precise_bn_on_a_digits_run(tmp_path, digits_dir, decay):
    """Acceptance.  Decay 0.9999: after 100 steps the moving statistics are still 99%
    their initial 0/1, so served top-1 is far below batch-statistics top-1; after
    --precise_bn_batches=40 it is within 3 points and within chance.  Decay 0.9, a
    healthy run: recalibration does not lower served top-1 beyond chance."""
    result = _digits_run(tmp_path / "run", decay, 40)
    images, labels = pipeline.load_eval_arrays("digits", digits_dir, "validation", "lenet", 32)
    raw, _ = _served_and_batch(str(tmp_path / "run" / "model.ckpt-100"), images, decay)
    served, batch = _served_and_batch(result.checkpoint, images, decay)
    batch_top1, raw_top1, raw_chance = _top1_and_chance(batch, raw, labels)
    _, served_top1, served_chance = _top1_and_chance(batch, served, labels)
    _, _, lowered_chance = _top1_and_chance(raw, served, labels)
    print(f"decay {decay} on {len(labels)} images: served {raw_top1:.3f} -> {served_top1:.3f}, "
          f"batch statistics {batch_top1:.3f}; chance of the gap before {raw_chance:.2g}, "
          f"after {served_chance:.2g}; of the drop {lowered_chance:.2g}")
    assert lowered_chance >= statistics_checks.GAP_CHANCE  # never lowered beyond chance
    if decay == 0.9999:
        assert batch_top1 - raw_top1 > 0.5 and raw_chance < 1e-9
        assert batch_top1 - served_top1 <= 0.03
        assert served_chance >= statistics_checks.GAP_CHANCE
    else:
        assert raw_top1 > 0.8  # healthy before


@pytest.mark.slow  # a conversion (parity check, SavedModel) and two recalibrations
def test_converted_keras_model_gets_the_checkpoints_statistics(tmp_path, digits_dir):
    """The same weights recalibrated as a slim checkpoint and as slimtune-convert's
    .keras, on the same seeded batches, get the same statistics up to the two
    frameworks' float32 round-off.  In batch-statistics mode that round-off grows with
    depth on random weights (block4 sees 16 values per channel at 32 px): the logits
    of this checkpoint and its .keras differ by 8.8e-5 relative with batch statistics
    (2.1e-6 in inference mode), the statistics by 1.3e-4; on the README's trained
    decay-0.9999 run, 4.8e-7."""
    from slimtune import convert

    run = tmp_path / "run"
    run.mkdir()
    make_checkpoint(str(run / "model.ckpt"), "resnet_v1_50", 10)
    metadata.write(str(run), {"model_name": "resnet_v1_50", "num_classes": 10,
                              "image_size": 32, "preprocessing": "lenet"})
    convert.convert(convert.ConvertConfig(checkpoint_path=str(run),
                                          output_dir=str(tmp_path / "keras")))
    common = dict(dataset_name="digits", dataset_dir=digits_dir, num_batches=3, batch_size=16)
    recalibrate.recalibrate(recalibrate.RecalibrateConfig(
        checkpoint_path=str(run), output_dir=str(tmp_path / "slim_out"), **common))
    recalibrate.recalibrate(recalibrate.RecalibrateConfig(
        checkpoint_path=str(tmp_path / "keras"), output_dir=str(tmp_path / "keras_out"),
        **common))
    slim = read(str(tmp_path / "slim_out" / "model.ckpt-1000"))
    model = keras.models.load_model(tmp_path / "keras_out" / "model.keras", safe_mode=True)
    layers = bn_layers.keras_layers(model)
    assert len(layers) == 53
    worst = max(_relative(np.asarray(getattr(layer, kind)),
                          slim[f"resnet_v1_50/{layer.name.replace('.', '/')}/{kind}"])
                for layer in layers for kind in ("moving_mean", "moving_variance"))
    print(f"Keras against slim statistics: worst relative {worst:.2g}")
    assert worst <= 1e-3
