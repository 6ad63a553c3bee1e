"""SlimBatchNormalization trains like slim.batch_norm and saves as Keras' own layer.

One training step of a tiny conv + BatchNorm (decay 0.9, 2 images of 3x3, so the batch
variance's Bessel factor n/(n-1) is 18/17) in a slim graph built with slimtune's BatchNorm
parameters, and the same step in Keras from the same randomised weights and statistics.
"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from slimtune import compare, compat
from slimtune.keras_engine.batch_norm import SlimBatchNormalization
from slimtune.nets import batch_norm as bn_lib

BATCH, SIZE, IN_CHANNELS, CHANNELS = 2, 3, 3, 4
DECAY, EPSILON, LEARNING_RATE = 0.9, 0.001, 0.1
NAMES = ("kernel", "gamma", "beta", "moving_mean", "moving_variance")


def _values():
    """Input, loss weights and initial variables; BN statistics randomised, never 0/1."""
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 2.0, size=(BATCH, SIZE, SIZE, IN_CHANNELS)).astype(np.float32)
    loss_weights = rng.normal(size=(BATCH, SIZE, SIZE, CHANNELS)).astype(np.float32)
    initial = {
        "kernel": rng.normal(scale=0.5, size=(3, 3, IN_CHANNELS, CHANNELS)),
        "gamma": rng.uniform(0.5, 1.5, CHANNELS),
        "beta": rng.normal(scale=0.3, size=CHANNELS),
        "moving_mean": rng.normal(scale=0.5, size=CHANNELS),
        "moving_variance": rng.uniform(0.5, 2.0, CHANNELS),
    }
    return x, loss_weights, {k: v.astype(np.float32) for k, v in initial.items()}


def _slim_step():
    """Output of the step and every variable after it: slim.conv2d + slim.batch_norm as
    slimtune's nets build them, trained by slim's create_train_op (UPDATE_OPS included)."""
    x, loss_weights, initial = _values()
    slim, tf1 = compat.apply(), compat.tf1()
    bn = bn_lib.BatchNormConfig(decay=DECAY, epsilon=EPSILON, scale=True)
    with tf.Graph().as_default() as graph:
        with slim.arg_scope([slim.batch_norm], is_training=True):
            y = slim.conv2d(tf.constant(x), CHANNELS, 3, activation_fn=None,
                            normalizer_fn=slim.batch_norm,
                            normalizer_params=bn_lib.slim_params(bn), scope="conv")
        train_op = slim.learning.create_train_op(
            tf.reduce_sum(y * loss_weights), tf1.train.GradientDescentOptimizer(LEARNING_RATE))
        assert "FusedBatchNormV3" in {op.type for op in graph.get_operations()}
        scopes = ("conv/weights", "conv/BatchNorm/gamma", "conv/BatchNorm/beta",
                  "conv/BatchNorm/moving_mean", "conv/BatchNorm/moving_variance")
        by_name = {v.op.name: v for v in tf1.global_variables()}
        variables = {name: by_name[scope] for name, scope in zip(NAMES, scopes)}
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            for name, variable in variables.items():
                variable.load(initial[name], sess)
            output, _ = sess.run([y, train_op])
            return output, sess.run(variables)


def _keras_step(batch_norm_class):
    x, loss_weights, initial = _values()
    conv = keras.layers.Conv2D(CHANNELS, 3, padding="same", use_bias=False)
    bn = batch_norm_class(momentum=DECAY, epsilon=EPSILON)
    inputs = keras.Input((SIZE, SIZE, IN_CHANNELS))
    model = keras.Model(inputs, bn(conv(inputs)))
    conv.set_weights([initial["kernel"]])
    bn.set_weights([initial[name] for name in NAMES[1:]])
    optimizer = keras.optimizers.SGD(LEARNING_RATE)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            y = model(x, training=True)
            loss = tf.reduce_sum(y * loss_weights)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return y

    output = step().numpy()
    return output, dict(zip(NAMES, [conv.kernel.numpy()] + [w.numpy() for w in bn.weights]))


def _rel(reference, candidate):
    diff = compare.difference(reference, candidate)
    return diff.max_abs / diff.reference_max


def test_one_training_step_equals_slim_fused_batch_norm():
    slim_output, slim_after = _slim_step()
    output, after = _keras_step(SlimBatchNormalization)
    _, _, initial = _values()
    figures = {name: _rel(slim_after[name], after[name]) for name in NAMES}
    print(f"SlimBatchNormalization vs slim, one step: output {_rel(slim_output, output):.2g}, "
          + ", ".join(f"{name} {rel:.2g}" for name, rel in figures.items()))
    for name in NAMES:
        assert _rel(initial[name], slim_after[name]) > 1e-3, f"the step left {name} in place"
    assert _rel(slim_output, output) <= 1e-5
    assert figures["moving_mean"] <= 1e-6 and figures["moving_variance"] <= 1e-6
    # The backward pass is the fused kernel's too: the trained weights agree.
    assert max(figures["kernel"], figures["gamma"], figures["beta"]) <= 1e-6


def test_keras_batch_norm_puts_the_biased_variance_into_the_moving_variance():
    """Why the class exists: Keras' own layer misses slim's moving variance by about the
    Bessel factor's share of the update ((18/17 - 1) * (1 - decay) here)."""
    _, slim_after = _slim_step()
    _, after = _keras_step(keras.layers.BatchNormalization)
    gap = _rel(slim_after["moving_variance"], after["moving_variance"])
    print(f"keras.layers.BatchNormalization vs slim, one step: moving_variance {gap:.2g}")
    assert gap > 1e-3


def test_frozen_and_inference_calls_are_keras_batch_norm():
    """trainable=False (frozen) or training=False: Keras' layer, statistics untouched."""
    _, features, initial = _values()
    x = 2.0 * features + 1.0  # CHANNELS channels, as the BatchNorm's weights
    weights = [initial[name] for name in NAMES[1:]]
    plain = keras.layers.BatchNormalization(momentum=DECAY, epsilon=EPSILON)
    slim_like = SlimBatchNormalization(momentum=DECAY, epsilon=EPSILON)
    for layer in (plain, slim_like):
        layer.build(x.shape)
        layer.set_weights(weights)
    expected = np.asarray(plain(x, training=False))
    np.testing.assert_array_equal(np.asarray(slim_like(x, training=False)), expected)
    slim_like.trainable = False
    np.testing.assert_array_equal(np.asarray(slim_like(x, training=True)), expected)
    for value, weight in zip(weights, slim_like.weights):
        np.testing.assert_array_equal(weight.numpy(), value)


def test_rejects_inputs_slim_does_not_fuse():
    with pytest.raises(ValueError, match="rank-4"):
        SlimBatchNormalization(name="dense_bn").build((None, 8))


_RELOAD = """
import sys, numpy as np, keras
model = keras.models.load_model(sys.argv[1], safe_mode=True)
assert not [m for m in sys.modules if m.split(".")[0] == "slimtune"], "slimtune was imported"
kinds = {type(layer) for layer in model.layers if "batch" in type(layer).__name__.lower()}
assert kinds == {keras.layers.BatchNormalization}, kinds
np.save(sys.argv[3], np.asarray(model(np.load(sys.argv[2]), training=False)))
"""


def test_saved_model_loads_as_plain_keras_in_a_fresh_process(tmp_path):
    """A trained model holding SlimBatchNormalization saves a .keras that loads in safe
    mode without slimtune, with keras.layers.BatchNormalization, computing the same."""
    x, _, initial = _values()
    inputs = keras.Input((SIZE, SIZE, IN_CHANNELS))
    bn = SlimBatchNormalization(momentum=DECAY, epsilon=EPSILON, name="conv.BatchNorm")
    y = keras.layers.ReLU()(bn(keras.layers.Conv2D(CHANNELS, 3, padding="same")(inputs)))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(y)))
    bn.set_weights([initial[name] for name in NAMES[1:]])
    model(x, training=True)  # one update of the moving statistics, slim's way
    path = str(tmp_path / "model.keras")
    model.save(path)
    np.save(tmp_path / "x.npy", x)
    subprocess.run([sys.executable, "-c", _RELOAD, path, str(tmp_path / "x.npy"),
                    str(tmp_path / "y.npy")], check=True,
                   env={**os.environ, "PYTHONPATH": ""}, cwd=str(tmp_path))
    expected = np.asarray(model(x, training=False))
    reloaded = np.load(tmp_path / "y.npy")
    print("SlimBatchNormalization model reloaded as plain Keras:",
          compare.difference(expected, reloaded).line())
    assert compare.difference(expected, reloaded).max_rel <= 1e-5
    in_process = keras.models.load_model(path, safe_mode=True)
    assert type(in_process.get_layer("conv.BatchNorm")) is keras.layers.BatchNormalization
