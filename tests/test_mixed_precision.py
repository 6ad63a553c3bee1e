"""--mixed_precision on both engines (slimtune.precision).

What runs on any CPU: the refusals (the machine's bf16 and GPU detection monkeypatched
both ways), the session's rewrite options, the loss scale wrapping each engine's
optimizer and a scale step with a forced non-finite gradient (halves the scale, skips
the update), the Keras training model's dtypes.  What needs bf16 instructions (skipped,
with the reason, elsewhere): a bfloat16 run on each engine whose checkpoint is float32
and converts with the usual parity, and the loss curves of float32 and bfloat16 over 50
steps.  What needs a GPU (marked ``gpu``, skipped without one): a float16 run.
"""

import os

import numpy as np
import pytest
import tensorflow as tf

from slimtune import compat, metadata, precision, train
from slimtune.errors import UsageError

v1 = tf.compat.v1
MODEL, SIZE = "mobilenet_v1_025", 32  # BatchNorm throughout, a few seconds a run
HAS_BF16 = bool(precision.cpu_bf16_flags())
needs_bf16 = pytest.mark.skipif(
    not HAS_BF16, reason="this CPU has no AVX512_BF16/AMX: bfloat16 training is refused here")


def config(train_dir, digits_dir, **overrides):
    settings = dict(train_dir=str(train_dir), dataset_name="digits", dataset_dir=digits_dir,
                    model_name=MODEL, preprocessing_name="lenet", train_image_size=SIZE,
                    batch_size=8, max_number_of_steps=2, optimizer="momentum",
                    learning_rate=0.01, learning_rate_decay_type="fixed",
                    log_every_n_steps=1, seed=0)
    settings.update(overrides)
    return train.TrainConfig(**settings)


@pytest.fixture
def no_bf16_no_gpu(monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda cpuinfo=None: ())
    monkeypatch.setattr(precision, "gpu_count", lambda: 0)


@pytest.fixture
def bf16_and_gpu(monkeypatch):
    """A machine that has both, as far as slimtune's checks can tell."""
    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda cpuinfo=None: ("avx512_bf16",))
    monkeypatch.setattr(precision, "gpu_count", lambda: 1)


def test_cpuinfo_flags_are_read(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 amx_tile\n")
    assert precision.cpu_bf16_flags(str(info)) == ("avx512_bf16",)
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f\n")
    assert precision.cpu_bf16_flags(str(info)) == ()
    assert precision.cpu_bf16_flags(str(tmp_path / "missing")) == ()


@pytest.mark.parametrize("mode, named", [("bfloat16", "AVX512_BF16"), ("float16", "GPU")])
def test_a_format_the_machine_lacks_is_refused_before_anything_is_written(
        tmp_path, digits_dir, no_bf16_no_gpu, mode, named):
    train_dir = tmp_path / "run"
    with pytest.raises(UsageError) as error:
        train.train(config(train_dir, digits_dir, mixed_precision=mode))
    line = str(error.value)
    print(line)
    assert line.startswith(f"--mixed_precision={mode} needs") and named in line
    assert "\n" not in line and not train_dir.exists()
    with pytest.raises(UsageError, match="choose one of float32, bfloat16, float16"):
        precision.check_available("half")


@pytest.mark.skipif(bool(precision.gpu_count()), reason="this machine has a GPU")
def test_the_train_command_refuses_float16_without_a_gpu_in_one_line(tmp_path):
    from test_tools import tool

    result = tool("train_image_classifier", f"--train_dir={tmp_path / 'run'}",
                  "--dataset_name=digits", "--model_name=lenet", "--mixed_precision=float16")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    first = result.stderr.strip().splitlines()[0]
    print(first)
    assert first.startswith("error: --mixed_precision=float16 needs a GPU")
    assert os.listdir(tmp_path) == []


def test_float32_is_always_available(no_bf16_no_gpu):
    precision.check_available("float32")


def test_the_slim_session_gets_the_rewrite_and_float32_none(bf16_and_gpu, tmp_path,
                                                            digits_dir):
    on = 1  # RewriterConfig.ON
    plain = compat.session_config()
    assert compat.with_mixed_precision(compat.session_config(), "float32") == plain
    options = {}
    for mode in precision.MODES:
        trainer = train.open_trainer(config(tmp_path / mode, digits_dir, mixed_precision=mode),
                                     log=lambda line: None)
        rewrite = trainer.session_config().graph_options.rewrite_options
        options[mode] = (rewrite.auto_mixed_precision_onednn_bfloat16,
                         rewrite.auto_mixed_precision)
        scales = [v.name for v in trainer.graph.get_collection(v1.GraphKeys.GLOBAL_VARIABLES)
                  if "loss_scale" in v.name]
        assert bool(scales) == (mode == "float16"), (mode, scales)
        summaries = [op.name for op in trainer.graph.get_operations()
                     if op.type == "ScalarSummary" and "loss_scale" in op.name]
        assert bool(summaries) == (mode == "float16"), (mode, summaries)  # for the doctor
    assert options == {"float32": (0, 0), "bfloat16": (on, 0), "float16": (0, on)}


def test_tf1_loss_scale_skips_a_non_finite_step_and_halves_the_scale():
    """The slim engine's float16 optimizer, in the train op slim builds with it."""
    slim = compat.apply()
    with tf.Graph().as_default():
        w = v1.get_variable("w", initializer=[1.0, 2.0])
        x = v1.placeholder(tf.float32, [2])
        loss = tf.reduce_sum(w * x)
        opt = compat.loss_scale_optimizer(v1.train.GradientDescentOptimizer(0.5))
        train_op = slim.learning.create_train_op(loss, opt, check_numerics=False)
        scale = [v for v in v1.global_variables() if "current_loss_scale" in v.name][0]
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            assert sess.run(scale) == 2.0 ** 15
            sess.run(train_op, {x: [np.inf, 1.0]})
            assert sess.run(scale) == 2.0 ** 14
            np.testing.assert_array_equal(sess.run(w), [1.0, 2.0])  # skipped
            sess.run(train_op, {x: [1.0, 1.0]})
            np.testing.assert_array_equal(sess.run(w), [0.5, 1.5])  # unscaled gradient
            assert sess.run(scale) == 2.0 ** 14


def test_keras_float16_scales_the_loss_and_a_non_finite_step_halves_it(
        bf16_and_gpu, tmp_path, digits_dir):
    """The Keras engine's float16 step on a CPU: the optimizer is wrapped, a batch whose
    gradient is not finite leaves every weight and the step as they were and halves the
    scale; a finite batch trains."""
    import keras

    cfg = config(tmp_path / "run", digits_dir, engine="keras", mixed_precision="float16",
                 model_name="lenet", preprocessing_name=None, train_image_size=None)
    trainer = train.open_trainer(cfg, log=lambda line: None)
    assert isinstance(trainer.step_optimizer, keras.optimizers.LossScaleOptimizer)
    assert trainer.step_optimizer.inner_optimizer is trainer.optimizer
    assert {w.variable.dtype for w in trainer.weights} == {"float32"}
    images, labels = next(iter(trainer.batches()))
    before = [w.variable.numpy() for w in trainer.weights]
    poisoned = images.numpy()
    poisoned[0, 0, 0, 0] = np.inf
    trainer.step_fn(tf.constant(poisoned), labels)
    assert float(trainer.step_optimizer.dynamic_scale.numpy()) == 2.0 ** 14
    assert trainer.step == 0
    for w, old in zip(trainer.weights, before):
        np.testing.assert_array_equal(w.variable.numpy(), old)
    out = trainer.step_fn(images, labels)
    assert trainer.step == 1 and np.isfinite(float(out["total_loss"]))
    assert any(not np.array_equal(w.variable.numpy(), old)
               for w, old in zip(trainer.weights, before))


def test_keras_mixed_model_keeps_float32_variables_and_statistics(bf16_and_gpu, tmp_path,
                                                                  digits_dir):
    """Under mixed_bfloat16 every layer computes in bfloat16 but holds float32 weights,
    BatchNorm statistics included; the inference model it saves is float32."""
    from slimtune import bn_layers

    cfg = config(tmp_path / "run", digits_dir, engine="keras", mixed_precision="bfloat16")
    trainer = train.open_trainer(cfg, log=lambda line: None)
    model = trainer.model
    assert {layer.compute_dtype for layer in model.layers[1:]} == {"bfloat16"}
    assert {w.dtype for w in model.weights} == {"float32"}
    norms = bn_layers.keras_layers(model)
    assert norms and all(layer.moving_variance.dtype == "float32" for layer in norms)
    served = trainer.inference_model()
    assert {layer.compute_dtype for layer in served.layers} == {"float32"}
    for a, b in zip(served.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


@needs_bf16
@pytest.mark.parametrize("engine", ["slim", "keras"])
def test_a_bfloat16_run_saves_float32_and_converts_with_the_usual_parity(
        tmp_path, digits_dir, engine):
    from slimtune import convert

    result = train.train(config(tmp_path / "run", digits_dir, engine=engine,
                                mixed_precision="bfloat16"), log=lambda line: None)
    assert result.global_step == 2 and np.isfinite(result.loss)
    assert metadata.read(str(tmp_path / "run"))["mixed_precision"] == "bfloat16"
    if engine == "keras":  # a float32 model.keras that loads without slimtune
        import keras

        from conversion import reload_without_slimtune
        from slimtune import compare, probe

        model = keras.models.load_model(result.checkpoint, safe_mode=True)
        assert {layer.compute_dtype for layer in model.layers} == {"float32"}
        images = probe.random_images(3, SIZE, seed=1)
        expected = np.asarray(model(images, training=False))
        reloaded = reload_without_slimtune(result.checkpoint, images, tmp_path)
        print(f"bfloat16 run's model.keras reloaded without slimtune: "
              f"{compare.difference(expected, reloaded).line()}")
        assert compare.difference(expected, reloaded).max_rel <= 1e-5
        return
    dtypes = set(tf.train.load_checkpoint(result.checkpoint).get_variable_to_dtype_map()
                 .values())
    assert dtypes == {tf.float32, tf.int64}  # int64: the global step
    meta = convert.convert(convert.ConvertConfig(checkpoint_path=str(tmp_path / "run"),
                                                 output_dir=str(tmp_path / "keras")),
                           log=lambda line: None)
    print(f"bfloat16 run converted: {meta['parity']['random']}")
    assert meta["parity"]["random"]["max_rel"] <= 1e-5


@pytest.mark.gpu
@pytest.mark.skipif(not precision.gpu_count(), reason="no GPU: run on a machine with one "
                    "(python -m pytest -n 0 -m gpu tests/test_mixed_precision.py)")
@pytest.mark.parametrize("engine", ["slim", "keras"])
def test_a_float16_run_on_a_gpu(tmp_path, digits_dir, engine):
    result = train.train(config(tmp_path / "run", digits_dir, engine=engine,
                                mixed_precision="float16", max_number_of_steps=5),
                         log=print)
    assert result.global_step == 5 and np.isfinite(result.loss)


def test_doctor_names_batch_norm_statistics_kept_in_half_precision():
    import keras

    from slimtune.checks import keras_checks, precision_checks

    def model(bn_dtype):
        inputs = keras.Input((8, 8, 3))
        x = keras.layers.Conv2D(4, 3, dtype="mixed_bfloat16")(inputs)
        x = keras.layers.BatchNormalization(dtype=bn_dtype, name="bn")(x)
        return keras.Model(inputs, x)

    found = [f for f in keras_checks.check(model("bfloat16"))
             if f.code == "bn-half-statistics"]
    assert len(found) == 1
    print("\n".join(found[0].lines()))
    assert "bn (bfloat16)" in found[0].evidence
    assert precision_checks.keras_findings(model("mixed_bfloat16")) == []


def test_doctor_names_half_batch_norm_statistics_and_float16_gradients_without_a_scale():
    from slimtune.checks import graph_checks, precision_checks

    with tf.Graph().as_default() as graph:
        x = v1.placeholder(tf.float16, [2, 4, 4, 3])
        # A hand-written BatchNorm whose statistics take the input's dtype (slim's and
        # Keras' own keep float32 statistics for a half input).
        mean = v1.get_variable("bn/moving_mean", initializer=tf.zeros([3], tf.float16))
        variance = v1.get_variable("bn/moving_variance", initializer=tf.ones([3], tf.float16))
        out = (x - mean) * tf.math.rsqrt(variance + 1e-3)
        tf.identity(out, name="out")
    found = [f for f in graph_checks.check_serving_graph(graph.as_graph_def(), ["out"])
             if f.code == "bn-half-statistics"]
    assert len(found) == 1 and "bn/moving_mean (float16)" in found[0].evidence, found

    def training_graph(scaled):
        with tf.Graph().as_default() as graph:
            w = tf.cast(v1.get_variable("w", initializer=tf.ones([3])), tf.float16)
            loss = tf.cast(tf.reduce_sum(w * w), tf.float32)  # float16 arithmetic
            opt = v1.train.GradientDescentOptimizer(0.1)
            if scaled:
                opt = compat.loss_scale_optimizer(opt)
            opt.minimize(loss)
        return graph.as_graph_def()

    codes = [f.code for f in precision_checks.graph_findings(training_graph(False))]
    assert codes == ["float16-without-loss-scale"]
    assert precision_checks.graph_findings(training_graph(True)) == []


@pytest.mark.parametrize("last, expected", [(1.0, ["loss-scale-at-floor"]), (512.0, [])])
def test_doctor_names_a_loss_scale_stuck_at_its_floor(tmp_path, last, expected):
    from slimtune.checks import precision_checks
    from slimtune.schedule import SUMMARY_TAGS

    with tf.Graph().as_default():
        writer = v1.summary.FileWriter(str(tmp_path))
        for step, value in enumerate([2.0 ** 15, 2.0 ** 7, 1.0, 0.5, last], 1):
            writer.add_summary(v1.Summary(value=[v1.Summary.Value(
                tag=SUMMARY_TAGS["loss_scale"], simple_value=value)]), step)
        writer.close()
    found = precision_checks.loss_scale_findings(str(tmp_path))
    assert [f.code for f in found] == expected
    if found:
        print("\n".join(found[0].lines()))
        assert "at step 5" in found[0].evidence and "3 of 5" in found[0].evidence


# Loss curves, float32 against bfloat16, from the same seed: the same start, batches and
# dropout masks; only the arithmetic differs.  At step 1 the weights are the same, so the
# loss differs only by bfloat16's rounding (8 significant bits, 0.4% a rounding, through
# 28 layers with BatchNorm on a batch of 16: measured 4.7% slim, 2.6% Keras); after that
# the two runs separate as any two runs through training-mode BatchNorm do (a different
# last bit grows step by step), so single steps are compared no further, but the mean of
# each 10 steps must stay close: measured at most 13.5% apart (steps 41-50) on an AMD
# EPYC with AVX512_BF16.  The bounds leave twice that room for another CPU's kernels.
FIRST_STEP_RTOL = 0.10
WINDOW_RTOL = 0.30
CURVE_STEPS, WINDOW = 50, 10


@needs_bf16
@pytest.mark.parametrize("engine", ["slim", pytest.param("keras", marks=pytest.mark.slow)])
def test_bfloat16_loss_curve_stays_near_float32s(tmp_path, digits_dir, engine):
    from slimtune import training_parity

    curves = {}
    for mode in ("float32", "bfloat16"):
        cfg = config(tmp_path / mode, digits_dir, engine=engine, mixed_precision=mode,
                     batch_size=16, max_number_of_steps=CURVE_STEPS, log_every_n_steps=10,
                     save_summaries_secs=0)
        train.train(cfg, log=lambda line: None)
        curves[mode] = np.array(training_parity.event_losses(cfg.train_dir))
    full, half = curves["float32"], curves["bfloat16"]
    assert len(full) == len(half) == CURVE_STEPS
    first = abs(half[0] - full[0]) / full[0]
    windows = [(full[i:i + WINDOW].mean(), half[i:i + WINDOW].mean())
               for i in range(0, CURVE_STEPS, WINDOW)]
    apart = [abs(h - f) / f for f, h in windows]
    print(f"\n{engine}: step 1 loss {full[0]:.4f} float32, {half[0]:.4f} bfloat16 "
          f"({first:.2%} apart, bound {FIRST_STEP_RTOL:.0%}); means of {WINDOW} steps "
          + ", ".join(f"{f:.3f}/{h:.3f} ({a:.1%})" for (f, h), a in zip(windows, apart))
          + f", bound {WINDOW_RTOL:.0%}")
    assert first <= FIRST_STEP_RTOL
    assert max(apart) <= WINDOW_RTOL


def test_workers_given_another_format_refuse_to_start(tmp_path, digits_dir):
    """--mixed_precision is a run flag: the multi-worker settings check compares it."""
    import dataclasses

    from slimtune import distribute
    from slimtune.data import pipeline

    cluster = distribute.Placement(distribute.Cluster(("a:1", "b:2"), 0, "--worker_hosts"))
    cfg = config(tmp_path / "run", digits_dir)
    run = train.run_info(cfg, pipeline.open_split("digits", digits_dir, "train"))
    mine = distribute.run_settings(cfg, run, cluster)
    theirs = dict(distribute.run_settings(
        dataclasses.replace(cfg, mixed_precision="bfloat16"), run, cluster), dir="/elsewhere")
    with pytest.raises(UsageError, match=r"^mixed_precision differs between workers: worker 0 "
                                         r"\(this one\) has 'float32', worker 1 has 'bfloat16'"):
        distribute.check_same_settings([mine, theirs], 0)


def test_a_float16_slim_checkpoint_converts_its_loss_scale_left_out(bf16_and_gpu, tmp_path,
                                                                   digits_dir):
    """A float16 run's checkpoint adds the loss scale's two variables beside the
    optimizer's slots; convert ignores them as it ignores the slots, and the doctor finds
    nothing wrong.  (Without a GPU the float16 rewrite changes nothing: the run computes
    in float32 with the loss scale.)"""
    from slimtune import convert, doctor

    result = train.train(config(tmp_path / "run", digits_dir, mixed_precision="float16"),
                         log=lambda line: None)
    names = tf.train.load_checkpoint(result.checkpoint).get_variable_to_dtype_map()
    assert {"current_loss_scale", "good_steps"} <= set(names), sorted(names)[:5]
    meta = convert.convert(convert.ConvertConfig(checkpoint_path=str(tmp_path / "run"),
                                                 output_dir=str(tmp_path / "keras")),
                           log=lambda line: None)
    print(f"float16 run converted: {meta['parity']['random']}")
    assert meta["parity"]["random"]["max_rel"] <= 1e-5
    found = doctor.diagnose(doctor.DoctorConfig(train_dir=str(tmp_path / "run")))
    assert not found.errors, found.lines()


def test_a_float16_keras_run_resumes_with_its_loss_scale(bf16_and_gpu, tmp_path, digits_dir):
    """The Keras engine's float16 checkpoint holds the loss scale beside the optimizer
    (under the float32 run's names): a resumed run restores it; model.keras is float32."""
    import keras

    def run(steps):
        return train.train(config(tmp_path / "run", digits_dir, engine="keras",
                                  mixed_precision="float16", model_name="lenet",
                                  preprocessing_name=None, train_image_size=None,
                                  max_number_of_steps=steps), log=lambda line: None)

    run(2)
    names = [name for name, _ in tf.train.list_variables(str(tmp_path / "run" / "keras_ckpt-2"))]
    assert any(name.startswith("loss_scale/") for name in names), names
    result = run(3)
    assert result.global_step == 3 and np.isfinite(result.loss)
    model = keras.models.load_model(result.checkpoint, safe_mode=True)
    assert {layer.compute_dtype for layer in model.layers} == {"float32"}
