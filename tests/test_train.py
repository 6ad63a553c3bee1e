"""Training: BatchNorm statistics really update, fine-tuning and resuming behave.

These tests build resnet_v1_50 at 32 px with tiny batches: a few seconds per graph.
"""

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from slim_checkpoints import make_checkpoint, read
from slimtune import compat, metadata, train
from slimtune.slim_engine.graph import build_train_graph
from slimtune.data import pipeline
from slimtune.errors import CheckpointError, TrainingDiverged, UsageError

v1 = tf.compat.v1
MODEL = "resnet_v1_50"


def digits_config(train_dir, **overrides):
    settings = dict(train_dir=str(train_dir), dataset_name="digits", model_name=MODEL,
                    preprocessing_name="lenet", train_image_size=32, batch_size=4,
                    max_number_of_steps=3, optimizer="momentum", learning_rate=0.01,
                    learning_rate_decay_type="fixed", log_every_n_steps=1, seed=0)
    settings.update(overrides)
    return train.TrainConfig(**settings)


def bn_stats(values):
    return {k: v for k, v in values.items() if k.endswith(("moving_mean", "moving_variance"))}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A 1001-class resnet_v1_50 checkpoint standing in for a published one."""
    prefix = str(tmp_path_factory.mktemp("pretrained") / "model.ckpt")
    return make_checkpoint(prefix, MODEL, num_classes=1001)


SHORT_RUN = dict(batch_norm_epsilon=2e-3, preprocessing_name="inception")


@pytest.fixture(scope="module")
def short_run(digits_dir, tmp_path_factory):
    """Three steps from scratch with the default settings of the train command, seed 0,
    and inception's random augmentations."""
    train_dir = tmp_path_factory.mktemp("short_run")
    result = train.train(digits_config(train_dir, **SHORT_RUN))
    return train_dir, result


def test_every_bn_layer_moves_off_its_initial_values(short_run):
    train_dir, result = short_run
    stats = bn_stats(read(result.checkpoint))
    assert len(stats) == 2 * 53  # resnet_v1_50 has 53 BatchNorm layers
    for name, value in stats.items():
        initial = 0.0 if name.endswith("moving_mean") else 1.0
        assert np.abs(value - initial).max() > 1e-6, f"{name} never updated"


def test_run_writes_metadata_events_and_checkpoint(short_run):
    train_dir, result = short_run
    assert result.global_step == 3 and result.checkpoint.endswith("model.ckpt-3")
    meta = metadata.read(str(train_dir))
    assert meta["model_name"] == MODEL and meta["num_classes"] == 10
    assert meta["batch_norm"] == {"decay": 0.997, "epsilon": 2e-3, "scale": True,
                                  "mode": "follow"}
    assert meta["labels"]["3"] == "3" and meta["image_size"] == 32
    events = [f for f in os.listdir(train_dir) if f.startswith("events.out")]
    tags = {value.tag for f in events
            for event in v1.train.summary_iterator(os.path.join(train_dir, f))
            for value in event.summary.value}
    for tag in ("losses/total_loss", "training/learning_rate", "training/train_batch_accuracy",
                "training/images_per_sec", f"batch_norm/{MODEL}/conv1/BatchNorm/moving_mean",
                f"batch_norm/{MODEL}/block4/unit_3/bottleneck_v1/conv3/BatchNorm/moving_variance"):
        assert tag in tags


@pytest.mark.parametrize("decay", [0.9, pytest.param(0.5, marks=pytest.mark.slow)])
def test_one_step_follows_the_decay_rule(digits_dir, tmp_path, decay):
    """moving = moving * decay + batch * (1 - decay), with fused BN's unbiased variance."""
    cfg = digits_config(tmp_path, batch_norm_decay=decay)
    split = pipeline.open_split("digits", None, "train")
    graph = tf.Graph()
    with graph.as_default():
        t = build_train_graph(cfg, train.run_info(cfg, split), split)
        # The decay each BN update op was built with, read back out of the graph.
        decays = [op.inputs[1].op.get_attr("value").float_val[0]
                  for op in graph.get_operations()
                  if op.type == "Sub" and op.name.endswith(("AssignMovingAvg/sub",
                                                            "AssignMovingAvg_1/sub"))]
        conv_out = graph.get_tensor_by_name(f"{MODEL}/conv1/Conv2D:0")
        stats = {v.op.name: v for v in v1.global_variables()}
        moving = [stats[f"{MODEL}/conv1/BatchNorm/moving_mean"],
                  stats[f"{MODEL}/conv1/BatchNorm/moving_variance"]]
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            mean0, var0 = sess.run([v.read_value() for v in moving])
            _, x = sess.run([t.train_op, conv_out])  # the batch the update saw
            mean1, var1 = sess.run([v.read_value() for v in moving])
    assert len(decays) == 2 * 53, "one update per moving mean and variance"
    assert decays == pytest.approx([decay] * len(decays)), "every BN layer uses the flag's decay"
    n = x.shape[0] * x.shape[1] * x.shape[2]
    batch_mean = x.mean(axis=(0, 1, 2))
    batch_var = x.var(axis=(0, 1, 2)) * n / (n - 1)
    np.testing.assert_allclose(mean1, mean0 * decay + batch_mean * (1 - decay),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(var1, var0 * decay + batch_var * (1 - decay), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("engine", metadata.ENGINES)
def test_mismatched_logits_fail_before_training_and_name_the_flag(engine, pretrained,
                                                                   digits_dir, tmp_path):
    """Both engines: the same first line, shapes in the checkpoint's layout (the Keras
    engine's Dense kernel is a 1x1 conv there), and nothing written."""
    with pytest.raises(CheckpointError) as error:
        train.train(digits_config(tmp_path, checkpoint_path=pretrained, engine=engine),
                    log=lambda line: None)
    first = str(error.value).splitlines()[0]
    assert first.startswith(f"2 variable(s) of the graph do not fit checkpoint {pretrained}: "
                            f"{MODEL}/logits/weights [1, 1, 2048, 10] vs checkpoint "
                            "[1, 1, 2048, 1001]; ")
    assert first.endswith(f"pass --checkpoint_exclude_scopes={MODEL}/logits")
    assert os.listdir(tmp_path) == []


def test_finetune_new_head_with_trainable_scopes(pretrained, digits_dir, tmp_path):
    """Only the new logits train; every other trainable variable stays bit-identical."""
    result = train.train(digits_config(
        tmp_path, checkpoint_path=os.path.dirname(pretrained),
        checkpoint_exclude_scopes=f"{MODEL}/logits", trainable_scopes=f"{MODEL}/logits"))
    before, after = read(pretrained), read(result.checkpoint)
    assert after[f"{MODEL}/logits/weights"].shape == (1, 1, 2048, 10)
    frozen = [n for n in before if n.startswith(MODEL) and "logits" not in n
              and not n.endswith(("moving_mean", "moving_variance"))]
    assert len(frozen) > 100
    for name in frozen:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)
    # BatchNorm still runs in training mode, so its statistics keep adapting.
    assert any(not np.array_equal(after[n], before[n]) for n in bn_stats(before))


def test_freeze_batch_norm_keeps_statistics_and_affine_bit_identical(pretrained, digits_dir,
                                                                      tmp_path):
    result = train.train(digits_config(
        tmp_path, checkpoint_path=pretrained, checkpoint_exclude_scopes=f"{MODEL}/logits",
        freeze_batch_norm=True, optimizer="sgd", learning_rate=1e-6))
    before, after = read(pretrained), read(result.checkpoint)
    bn_names = [n for n in before if "BatchNorm/" in n]
    assert len(bn_names) == 4 * 53
    for name in bn_names:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)
    assert not np.array_equal(after[f"{MODEL}/conv1/weights"], before[f"{MODEL}/conv1/weights"])
    assert metadata.read(str(tmp_path))["batch_norm"]["mode"] == "frozen"


def test_resume_continues_the_global_step(short_run, tmp_path, pretrained):
    train_dir, _ = short_run
    resumed = tmp_path / "resumed"
    shutil.copytree(train_dir, resumed)
    lines = []
    result = train.train(digits_config(resumed, max_number_of_steps=5, checkpoint_path=pretrained),
                         log=lines.append)
    assert result.global_step == 5
    assert any(line.startswith("Resuming from") for line in lines)
    assert any("--checkpoint_path ignored" in line for line in lines)


@pytest.fixture(scope="module")
def keras_short_run(digits_dir, tmp_path_factory):
    """Three steps of the Keras engine from scratch, on the tiny registered network
    (resnet_v1_50 costs the Keras engine half a minute here)."""
    from test_register_architecture import NAME, _register

    _register()
    train_dir = tmp_path_factory.mktemp("keras_short_run")
    train.train(digits_config(train_dir, model_name=NAME, engine=metadata.KERAS_ENGINE),
                log=lambda line: None)
    return train_dir, NAME


@pytest.mark.parametrize("engine", metadata.ENGINES)
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(engine, request, tmp_path):
    """Either engine resumes a 3-step run at a learning rate of 1e30: it stops at the
    first non-finite loss, names its last good checkpoint and the flags to change, and
    leaves the train dir as it was but for the new event file and slimtune.json (the
    run's record, rewritten whole at every start)."""
    if engine == metadata.KERAS_ENGINE:
        train_dir, model_name = request.getfixturevalue("keras_short_run")
    else:
        train_dir, model_name = request.getfixturevalue("short_run")[0], MODEL
    run_dir = tmp_path / "diverging"
    shutil.copytree(train_dir, run_dir)
    good = tf.train.latest_checkpoint(str(run_dir))
    assert good.endswith("-3")
    before = {name: os.path.getmtime(run_dir / name) for name in os.listdir(run_dir)
              if name != metadata.FILENAME}
    with pytest.raises(TrainingDiverged) as error:
        train.train(digits_config(run_dir, model_name=model_name, engine=engine,
                                  max_number_of_steps=50, optimizer="sgd", learning_rate=1e30,
                                  save_interval_steps=100), log=lambda line: None)
    first = str(error.value).splitlines()[0]
    print(first)
    assert first.startswith("loss became ")
    assert first.endswith(f"stopped without saving, the last good checkpoint is {good}: "
                          "lower --learning_rate or set --clip_gradient_norm")
    assert tf.train.latest_checkpoint(str(run_dir)) == good
    after = {name: os.path.getmtime(run_dir / name) for name in os.listdir(run_dir)}
    assert {name: after[name] for name in before} == before
    assert all(name.startswith("events.out.tfevents.")
               for name in set(after) - set(before) - {metadata.FILENAME})
    assert metadata.read(str(run_dir))["model_name"] == model_name
    floats = [v for v in map(np.asarray, read(good).values()) if v.dtype.kind == "f"]
    assert len(floats) > 10 and all(np.isfinite(v).all() for v in floats)


@pytest.mark.parametrize("engine", metadata.ENGINES)
def test_unknown_model_lists_the_choices(engine, tmp_path):
    with pytest.raises(UsageError, match="^unknown model name 'resnet_v3_50'.*resnet_v2_50"
                                         ".*--model_name"):
        train.train(digits_config(tmp_path / "run", model_name="resnet_v3_50", engine=engine))
    assert os.listdir(tmp_path) == []


def test_resume_with_another_architecture_is_refused(short_run, tmp_path):
    train_dir, _ = short_run
    other = tmp_path / "other"
    shutil.copytree(train_dir, other)
    with pytest.raises(UsageError, match="new --train_dir"):
        train.train(digits_config(other, model_name="resnet_v2_50"))


# Nightly: test_moving_averages_follow_each_step_and_repeat_bit_for_bit repeats a seeded
# run bit for bit by default, on the tiny network.
@pytest.mark.slow
def test_seeded_runs_are_bit_identical_and_another_seed_is_not(short_run, tmp_path):
    """Every tensor, BN statistics and momentum slots included, with inception's random
    crops, flips and colour jitter drawn in the parallel input map (the case that needs
    op determinism; lenet's fixed preprocessing needs only the pipeline kept in order)."""
    def run(name, seed):
        result = train.train(digits_config(tmp_path / name, seed=seed, **SHORT_RUN),
                             log=lambda _: None)
        return read(result.checkpoint)

    first, again, other = read(short_run[1].checkpoint), run("again", 0), run("other", 1)
    assert sorted(first) == sorted(again) and len(first) == 429
    differ = [name for name in first if not np.array_equal(first[name], again[name])]
    assert differ == []
    moved = [name for name in first if not np.array_equal(first[name], other[name])]
    assert len(moved) > 400, "another seed must give another run"
    meta = metadata.read(str(tmp_path / "again"))
    assert meta["seed"] == 0 and meta["deterministic"] is True
    # Op determinism is process-wide: it must be off again, or every unseeded random op
    # of later eager code (Keras conversion, parity images) would raise.
    assert not compat.op_determinism_enabled()
    tf.random.uniform([2])


def test_moving_averages_follow_each_step_and_repeat_bit_for_bit(digits_dir, tmp_path):
    """--moving_average_decay=0.99 on the slim engine (the tiny network, inception's random
    augmentations, seed 0): after step k every shadow is TF1's update of the shadow
    before it with the variable's value after step k (its optimizer and BatchNorm
    updates done) and decay min(0.99, (1 + k) / (10 + k)); the shadows start at the
    warm-started weights.  Two seeded runs give bit-identical checkpoints (the update
    was unordered against the BatchNorm updates and made them differ)."""
    from slimtune.testing import make_checkpoint as make_any_checkpoint
    from test_register_architecture import NAME, _register

    _register()
    start = make_any_checkpoint(str(tmp_path / "start" / "model.ckpt"), NAME, 10, seed=1)

    def run(name):
        cfg = digits_config(tmp_path / name, model_name=NAME, checkpoint_path=start,
                            moving_average_decay=0.99, max_number_of_steps=2,
                            save_interval_steps=1, batch_size=8,
                            preprocessing_name="inception")
        train.train(cfg, log=lambda _: None)
        return [read(str(tmp_path / name / f"model.ckpt-{k}")) for k in (1, 2)]

    first, again = run("first"), run("again")
    assert all(np.array_equal(first[1][n], again[1][n]) for n in first[1])
    suffix = "/ExponentialMovingAverage"
    shadows = [n for n in first[1] if n.endswith(suffix)]
    assert len(shadows) == 12  # every model variable: 2 x (weights, 4 BN) + logits' 2
    before = read(start)
    previous = {n: before[n[: -len(suffix)]] for n in shadows}
    for k, tensors in enumerate(first, start=1):
        k = np.float32(k)
        keep = np.minimum(np.float32(0.99), (np.float32(1) + k) / (np.float32(10) + k))
        rate = np.float32(1) - keep
        for n in shadows:
            value = tensors[n[: -len(suffix)]]
            assert not np.array_equal(value, previous[n]), f"{n} did not move"
            np.testing.assert_allclose(tensors[n], previous[n] - (previous[n] - value) * rate,
                                       rtol=1e-6, atol=1e-7, err_msg=f"{n} at step {k}")
        previous = {n: tensors[n] for n in shadows}


def test_deterministic_without_a_seed_is_refused(tmp_path):
    with pytest.raises(UsageError, match="^--deterministic needs a --seed"):
        train.train(digits_config(tmp_path, seed=None, deterministic=True))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("keep", [0.0, 1.5])
def test_a_dropout_keep_probability_outside_0_1_is_refused(tmp_path, keep):
    with pytest.raises(UsageError, match=rf"^--dropout_keep_prob={keep} must be in \(0, 1\]"):
        train.train(digits_config(tmp_path, dropout_keep_prob=keep))
    assert os.listdir(tmp_path) == []
