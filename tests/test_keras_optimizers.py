"""The Keras engine's optimizers and schedules make the slim engine's TF1 updates.

Each case runs research/slim's optimizer twice from one TrainConfig: TF1's
(``slimtune.optim``, in its own tf.Graph, as the slim engine builds it) and the Keras one
(``slimtune.keras_engine``, eagerly), feeding both the same seeded gradients for 8 steps
under a rate that changes (exponential staircase every 2 steps; polynomial over 6 steps,
then held).  The weights must agree after every step.  Relative differences are
``max |keras - tf1| / max |tf1|`` per variable.
"""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from slimtune import compare, compat, optim
from slimtune.errors import UsageError
from slimtune.keras_engine import optimizers, schedules
from slimtune.train import TrainConfig

STEPS = 8
SAMPLES = 10  # per epoch; with batch 5: 2 steps per epoch
# 16 values run Eigen's vectorised loop in the TF1 kernels, 3 its scalar tail.
SHAPES = [(4, 4), (3,)]
SCHEDULES = {
    "exponential": dict(num_epochs_per_decay=1.0, learning_rate_decay_factor=0.5),
    "polynomial": dict(num_epochs_per_decay=3.0, end_learning_rate=0.01),
}
BASE = TrainConfig(batch_size=5, learning_rate=0.1, ftrl_l1=0.01, ftrl_l2=0.01)
# (optimizer, opt_epsilon): research/slim's epsilon 1.0, and a small one where it matters.
CASES = [("sgd", 1.0), ("momentum", 1.0), ("rmsprop", 1.0), ("rmsprop", 1e-8), ("adam", 1.0),
         ("adam", 1e-8), ("adagrad", 1.0), ("adadelta", 1.0), ("ftrl", 1.0)]


def _config(name, epsilon, decay_type):
    return dataclasses.replace(BASE, optimizer=name, opt_epsilon=epsilon,
                               learning_rate_decay_type=decay_type, **SCHEDULES[decay_type])


def _problem():
    rng = np.random.default_rng(0)
    initial = [rng.normal(scale=0.5, size=shape).astype(np.float32) for shape in SHAPES]
    grads = [[rng.normal(scale=0.2, size=shape).astype(np.float32) for shape in SHAPES]
             for _ in range(STEPS)]
    return initial, grads


def _tf1_run(cfg):
    """Weights after each step, and the rate each step used, from slimtune.optim."""
    initial, grads = _problem()
    tf1 = compat.tf1()
    with tf.Graph().as_default():
        global_step = tf1.train.get_or_create_global_step()
        variables = [tf1.get_variable(f"v{i}", initializer=value)
                     for i, value in enumerate(initial)]
        fed = [tf1.placeholder(tf.float32, shape) for shape in SHAPES]
        lr = optim.learning_rate(cfg, global_step, SAMPLES)
        train_op = optim.optimizer(cfg, lr).apply_gradients(zip(fed, variables),
                                                            global_step=global_step)
        weights, rates = [], []
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            for step_grads in grads:
                rates.append(sess.run(lr))
                sess.run(train_op, dict(zip(fed, step_grads)))
                weights.append(sess.run(variables))
    return weights, rates


def _keras_run(optimizer):
    """Weights after each step, the step a tf.function as in the engine's train step."""
    initial, grads = _problem()
    variables = [keras.Variable(value) for value in initial]
    optimizer.build(variables)
    step = tf.function(lambda step_grads: optimizer.apply_gradients(zip(step_grads, variables)))
    weights = []
    for step_grads in grads:
        step([tf.constant(g) for g in step_grads])
        weights.append([v.numpy() for v in variables])
    return weights


def _max_rel(reference, candidate):
    """The largest, over steps and variables, of max |difference| / max |reference|."""
    worst = 0.0
    for ref_step, cand_step in zip(reference, candidate):
        for ref, cand in zip(ref_step, cand_step):
            diff = compare.difference(ref, cand)
            worst = max(worst, diff.max_abs / diff.reference_max)
    return worst


@pytest.mark.parametrize("name,epsilon", CASES)
def test_keras_optimizer_follows_tf1_step_by_step(name, epsilon):
    for decay_type in sorted(SCHEDULES):
        cfg = _config(name, epsilon, decay_type)
        reference, rates = _tf1_run(cfg)
        assert len(set(np.round(rates, 7))) >= 3, f"the rate must change: {rates}"
        initial, _ = _problem()
        moved = _max_rel([initial], [reference[-1]])
        assert moved > 1e-3, f"{name} barely moved the weights ({moved:.2g}): nothing to compare"
        optimizer = optimizers.optimizer(cfg, schedules.schedule(cfg, SAMPLES))
        worst = _max_rel(reference, _keras_run(optimizer))
        print(f"{name} epsilon {epsilon:g} {decay_type}: {type(optimizer).__name__} vs TF1 max "
              f"rel {worst:.2g} over {STEPS} steps (weights moved {moved:.2g})")
        assert worst <= 1e-6


@pytest.mark.parametrize("decay_type", ["fixed", "exponential", "polynomial"])
def test_schedule_gives_tf1_rate_at_every_step(decay_type):
    """Steps 0-7 use the rate TF1 computes from the global step before its increment;
    polynomial reaches the end rate at step 6 and holds it.  Evaluated in a tf.function,
    as the engine does: graph optimisation folds polynomial's ``pow(x, 1)`` to ``x`` there
    and in TF1's graph, not in eager mode (1 ulp apart).  Held to 1e-6 relative, not to
    the bit: the two graphs may meet other kernels on another CPU."""
    cfg = dataclasses.replace(_config("sgd", 1.0, "polynomial"),
                              learning_rate_decay_type=decay_type, learning_rate_decay_factor=0.5)
    _, rates = _tf1_run(cfg)
    schedule = schedules.schedule(cfg, SAMPLES)
    rate_at = tf.function(schedule)
    keras_rates = [float(rate_at(tf.constant(step, tf.int64))) for step in range(STEPS)]
    # Two computations (TF1's graph, a Keras tf.function): within float32 rounding.
    gap = float(np.max(np.abs(np.float64(keras_rates) - rates) / np.abs(rates)))
    print(f"{decay_type}: rates within {gap:.3g} relative")
    assert gap <= 1e-6
    restored = type(schedule).from_config(schedule.get_config())
    assert float(restored(np.int64(STEPS - 1))) == keras_rates[-1]


def test_decay_steps_follow_research_slim():
    """int(num_samples / batch_size * num_epochs_per_decay), never 0."""
    cfg = dataclasses.replace(BASE, batch_size=32, num_epochs_per_decay=2.0)
    assert optim.decay_steps(cfg, 1000) == 62
    assert optim.decay_steps(cfg, 10) == 1


@pytest.mark.parametrize("name,keras_builtin,min_rel", [
    # Keras SGD applies each step's rate to the accumulated history: wrong once it decays.
    ("momentum", lambda c, s: keras.optimizers.SGD(s, momentum=c.momentum), 0.1),
    # Keras RMSprop starts its mean square at 0, not 1: larger first steps.
    ("rmsprop", lambda c, s: keras.optimizers.RMSprop(
        s, rho=c.rmsprop_decay, momentum=c.rmsprop_momentum, epsilon=c.opt_epsilon), 0.1),
    # Keras Adam: float64 1 - beta and beta**t powers, magnified by 1 / (1 - beta2**t).
    ("adam", lambda c, s: keras.optimizers.Adam(
        s, beta_1=c.adam_beta1, beta_2=c.adam_beta2, epsilon=c.opt_epsilon), 1e-6),
])
def test_keras_builtin_differs_from_tf1(name, keras_builtin, min_rel):
    """Why slimtune has its own momentum, RMSProp and Adam: Keras' own fail the test above."""
    cfg = _config(name, 1e-8 if name == "adam" else 1.0, "exponential")
    reference, _ = _tf1_run(cfg)
    worst = _max_rel(reference, _keras_run(keras_builtin(cfg, schedules.schedule(cfg, SAMPLES))))
    print(f"keras.optimizers built-in for {name} vs TF1: max rel {worst:.2g}")
    assert worst > min_rel


def test_custom_optimizers_save_and_load_in_a_keras_file(tmp_path):
    """A model compiled with a TF1 optimizer and a slim schedule saves in a .keras and
    loads back with the same optimizer, schedule and slot values."""
    rng = np.random.default_rng(1)
    for name in ("momentum", "rmsprop", "adam"):
        cfg = _config(name, 1e-8, "exponential")
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        model.compile(optimizers.optimizer(cfg, schedules.schedule(cfg, SAMPLES)), "mse")
        grads = [rng.normal(size=v.shape).astype(np.float32) for v in model.trainable_variables]
        model.optimizer.apply_gradients(zip(grads, model.trainable_variables))
        path = tmp_path / f"{name}.keras"
        model.save(path)
        loaded = keras.models.load_model(path)
        assert type(loaded.optimizer) is type(model.optimizer)
        assert loaded.optimizer.get_config() == model.optimizer.get_config()
        assert len(loaded.optimizer.variables) == len(model.optimizer.variables)
        for a, b in zip(loaded.optimizer.variables, model.optimizer.variables):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
        assert int(loaded.optimizer.iterations) == 1


def test_unknown_names_are_usage_errors():
    with pytest.raises(UsageError, match="--optimizer 'lamb'"):
        optimizers.optimizer(dataclasses.replace(BASE, optimizer="lamb"), 0.1)
    with pytest.raises(UsageError, match="--learning_rate_decay_type 'cosine'"):
        schedules.schedule(dataclasses.replace(BASE, learning_rate_decay_type="cosine"), 10)
