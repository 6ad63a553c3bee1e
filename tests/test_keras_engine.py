"""slimtune-train --engine=keras as a user meets it: a run with the slim engine's flags
that leaves a plain ``model.keras``, resumes, and that every other command accepts.

One Keras-engine run of the tiny registered network (two conv+BN layers, 32 px) from a
random slim checkpoint (randomised BatchNorm statistics) is shared by the tests; the
numerical equivalence with the slim engine is tests/test_keras_engine_equivalence.py.
"""

import glob
import json
import os

import numpy as np
import pytest

from test_register_architecture import NAME, _register as register_tiny_net

from slimtune import compare, doctor, evaluate, export, metadata, recalibrate, train, verify
from slimtune.errors import UsageError
from slimtune.testing import make_checkpoint

STEPS = 3


def _config(train_dir, digits_dir, **overrides):
    settings = dict(train_dir=str(train_dir), dataset_name="digits", dataset_dir=digits_dir,
                    model_name=NAME, preprocessing_name="lenet", train_image_size=32,
                    batch_size=8, max_number_of_steps=STEPS, optimizer="momentum",
                    learning_rate=0.01, log_every_n_steps=1, save_summaries_secs=0, seed=0,
                    engine="keras")
    settings.update(overrides)
    return train.TrainConfig(**settings)


@pytest.fixture(scope="module")
def keras_run(tmp_path_factory, digits_dir):
    """``(train dir, TrainResult, log lines)`` of a 3-step Keras-engine run."""
    register_tiny_net()
    root = tmp_path_factory.mktemp("keras_engine")
    start = make_checkpoint(str(root / "start" / "model.ckpt"), NAME, 10, seed=1)
    lines = []
    result = train.train(_config(root / "run", digits_dir, checkpoint_path=start),
                         log=lines.append)
    return str(root / "run"), result, lines


def test_the_run_ends_with_a_plain_keras_model_and_its_metadata(keras_run):
    import keras

    train_dir, result, lines = keras_run
    assert result.global_step == STEPS and np.isfinite(result.loss)
    assert result.checkpoint == os.path.join(train_dir, "model.keras")
    text = "\n".join(lines)
    assert f"step {STEPS}/{STEPS}" in text and "img/s" in text
    assert "Training 8 variables" in text  # 2 x (kernel, gamma, beta) + logits kernel, bias
    meta = json.loads(open(os.path.join(train_dir, "slimtune.json")).read())
    assert meta["engine"] == "keras" and meta["model_name"] == NAME
    assert meta["files"] == {"keras": "model.keras"} and meta["include_aux_logits"] is False
    # Plain Keras layers only: it loads in safe mode, and its BatchNorms are Keras' own
    # (the engine trains with slim's arithmetic in a subclass that saves as Keras' class).
    model = keras.models.load_model(result.checkpoint, safe_mode=True)
    norms = [layer for layer in model.layers if "BatchNorm" in type(layer).__name__]
    assert len(norms) == 2
    assert all(type(layer) is keras.layers.BatchNormalization for layer in norms)
    tags = set()
    import tensorflow as tf

    for path in glob.glob(os.path.join(train_dir, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags |= {value.tag for value in event.summary.value}
    assert {"losses/total_loss", "training/learning_rate"} <= tags


def test_the_same_command_resumes_it(keras_run, digits_dir, tmp_path):
    train_dir, _, _ = keras_run
    lines = []
    result = train.train(_config(train_dir, digits_dir, max_number_of_steps=STEPS + 2),
                         log=lines.append)
    assert result.global_step == STEPS + 2
    assert any(line.startswith("Resuming from") for line in lines)


def test_another_engine_on_its_train_dir_is_refused(keras_run, digits_dir):
    train_dir, _, _ = keras_run
    with pytest.raises(UsageError) as error:
        train.train(_config(train_dir, digits_dir, engine="slim"), log=lambda line: None)
    assert "engine='keras'" in str(error.value) and "--train_dir" in str(error.value)


def test_eval_export_verify_doctor_and_recalibrate_take_the_train_dir(keras_run, digits_dir,
                                                                      tmp_path):
    import keras

    train_dir, result, _ = keras_run
    scores = evaluate.evaluate(evaluate.EvalConfig(
        checkpoint_path=train_dir, dataset_name="digits",
        dataset_split_name="validation", dataset_dir=digits_dir,
        batch_size=50), log=lambda line: None)
    assert scores.count > 100 and scores.global_step >= STEPS
    # The same top-1 as the model itself on the evaluation pipeline's images.
    from slimtune.data import pipeline

    split = pipeline.open_split("digits", digits_dir, "validation")
    images, labels = pipeline.load_eval_arrays("digits", digits_dir, "validation", "lenet",
                                               32, scores.count)
    model = keras.models.load_model(result.checkpoint, safe_mode=True)
    logits = np.asarray(model(images, training=False))
    own = np.argmax(logits, axis=1) == labels
    # Another batch size, maybe other kernels: a class may differ only on a near tie.
    ties = compare.near_ties(logits, 1e-5 * max(1.0, float(np.abs(logits).max())))
    assert split.num_samples == scores.count
    assert int(np.sum(own != scores.correct)) <= ties

    frozen = str(tmp_path / "model.pb")
    export.export(export.ExportConfig(checkpoint_path=train_dir, output_file=frozen),
                  log=lambda line: None)
    report = verify.verify(verify.VerifyConfig(reference=train_dir, candidate=frozen,
                                               random=4), log=lambda line: None)
    assert report["passed"]

    found = doctor.diagnose(doctor.DoctorConfig(train_dir=train_dir))
    assert any(line.startswith("Keras model") for line in found.checked)

    out = str(tmp_path / "recalibrated")
    recalibrate.recalibrate(recalibrate.RecalibrateConfig(
        checkpoint_path=train_dir, dataset_name="digits", dataset_dir=digits_dir,
        num_batches=2, batch_size=16, output_dir=out), log=lambda line: None)
    assert os.path.isfile(os.path.join(out, "model.keras"))


def test_sync_batch_norm_is_refused_on_the_slim_engine(digits_dir, tmp_path):
    with pytest.raises(UsageError) as error:
        train.train(_config(tmp_path / "x", digits_dir, engine="slim", sync_batch_norm=True),
                    log=lambda line: None)
    assert "--sync_batch_norm is for --engine=keras" in str(error.value)


def _keras_weights(path):
    import keras

    return {v.path: v.numpy() for v in keras.models.load_model(path, safe_mode=True).weights}


def test_precise_bn_batches_gives_what_recalibrate_gives(digits_dir, tmp_path):
    """--precise_bn_batches=2 (with --moving_average_decay): the run's model.keras has
    exactly the statistics slimtune-recalibrate (2 batches of 8, seed 0) measures on the
    same run's model.keras without the flag, which are not its own, every other weight
    unchanged; slimtune.json records it as the slim engine does."""
    register_tiny_net()
    start = make_checkpoint(str(tmp_path / "start" / "model.ckpt"), NAME, 10, seed=1)
    runs = {}
    for name, flags in (("precise", dict(precise_bn_batches=2)), ("plain", {})):
        train.train(_config(tmp_path / name, digits_dir, checkpoint_path=start,
                            moving_average_decay=0.99, **flags), log=lambda line: None)
        runs[name] = _keras_weights(str(tmp_path / name / "model.keras"))
    recalibrate.recalibrate(recalibrate.RecalibrateConfig(
        checkpoint_path=str(tmp_path / "plain"), output_dir=str(tmp_path / "recalibrated"),
        num_batches=2, batch_size=8, seed=0), log=lambda line: None)
    expected = _keras_weights(str(tmp_path / "recalibrated" / "model.keras"))
    statistics = [k for k in expected if k.endswith(("moving_mean", "moving_variance"))]
    assert len(statistics) == 4 and sorted(expected) == sorted(runs["precise"])
    for key, value in expected.items():
        assert np.array_equal(runs["precise"][key], value), key
        assert np.array_equal(runs["plain"][key], value) == (key not in statistics), key
    meta = json.loads(open(tmp_path / "precise" / "slimtune.json").read())
    record, = meta[metadata.RECALIBRATIONS]
    assert record["checkpoint"] == "model.keras" and record["layers"] == 2
    assert record["source"].endswith(f"keras_ckpt-{STEPS}") and record["images"] == 16
    assert "averaged weights" in record["note"]


def test_a_resumed_run_continues_the_moving_averages(digits_dir, tmp_path):
    """--moving_average_decay: 2 steps then the same command to 4 (a run killed after its
    step-2 checkpoint) end with the averages of a 4-step run, bit for bit."""
    import tensorflow as tf

    register_tiny_net()
    start = make_checkpoint(str(tmp_path / "start" / "model.ckpt"), NAME, 10, seed=1)
    for name, stops in (("resumed", (2, 4)), ("straight", (4,))):
        for steps in stops:
            train.train(_config(tmp_path / name, digits_dir, checkpoint_path=start,
                                moving_average_decay=0.99, max_number_of_steps=steps),
                        log=lambda line: None)
    readers = {name: tf.train.load_checkpoint(str(tmp_path / name))
               for name in ("resumed", "straight")}
    keys = [k for k in readers["straight"].get_variable_to_shape_map()
            if k.startswith("averages/")]
    assert len(keys) == 12
    for key in keys:
        value = readers["straight"].get_tensor(key)
        assert np.array_equal(readers["resumed"].get_tensor(key), value), key


# The seeds' Keras traps (issue 14 section 3): the engine's own step and run, judged by
# the doctor's checks that name them in users' code (tests/test_doctor.py).

def test_the_engine_step_trains_what_its_model_trains_and_updates_batch_norm(digits_dir,
                                                                            tmp_path):
    """One step of the engine, as ``doctor.check_train_step`` sees a user's: the model is
    called with training=True (every trainable BN's statistics move: no seed-002 loop),
    the step is built after trainable is set (what moves is exactly
    model.trainable_weights: no stale compile), and --freeze_batch_norm freezes through
    trainable (frozen statistics and gamma/beta stay; no nested base model).  With
    --trainable_scopes the variables outside them are marked untrainable, their layers
    not: BatchNorm there still updates its statistics, as slim's did."""
    from slimtune.checks import keras_checks

    register_tiny_net()
    for flags, expected in ((dict(), ["keras-step-updates-bn"]),
                            (dict(freeze_batch_norm=True), ["keras-step-no-trainable-bn"]),
                            (dict(trainable_scopes="TinyConvNet/logits"),
                             ["keras-step-updates-bn"])):
        trainer = train.open_trainer(_config(tmp_path / ("run-" + "-".join(flags)), digits_dir,
                                             **flags), log=lambda line: None)
        images, labels = next(iter(trainer.batches()))
        findings = doctor.check_train_step(trainer.model, trainer.step_fn, images, labels)
        assert [f.code for f in findings] == expected, [f.lines() for f in findings]
        assert not keras_checks.nested_batch_norm_in_training(trainer.model)


def _reset_statistics(path):
    """Set every BatchNorm of the ``.keras`` at ``path`` to mean 0 / variance 1, in place:
    a model trained by a loop that never updated them."""
    import keras

    model = keras.models.load_model(path, safe_mode=True)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(np.zeros(layer.moving_mean.shape, np.float32))
            layer.moving_variance.assign(np.ones(layer.moving_variance.shape, np.float32))
    model.save(path)


def test_a_keras_run_from_scratch_leaves_no_statistics_at_0_1(digits_dir, tmp_path):
    """BatchNorm starts at 0/1; two engine steps move every layer off it, and the doctor
    on the train dir says nothing about them.  The same dir with its statistics put back
    at 0/1 is an error there (a Keras-engine run's trainable BN cannot have kept them)."""
    import shutil

    register_tiny_net()
    run_dir = str(tmp_path / "scratch")
    train.train(_config(run_dir, digits_dir, max_number_of_steps=2), log=lambda line: None)
    report = doctor.diagnose(doctor.DoctorConfig(train_dir=run_dir))
    assert "keras-bn-stats-initial" not in {f.code for f in report.findings}, report.lines()
    broken = str(tmp_path / "broken")
    shutil.copytree(run_dir, broken)
    _reset_statistics(os.path.join(broken, "model.keras"))
    report = doctor.diagnose(doctor.DoctorConfig(train_dir=broken))
    print("\n".join(report.lines()))
    finding = next(f for f in report.findings if f.code == "keras-bn-stats-initial")
    assert finding.severity == "error" and "2 of 2" in finding.evidence
    assert "slimtune-recalibrate" in finding.fix
