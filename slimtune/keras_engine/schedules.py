"""research/slim's learning-rate schedules as Keras 3 ``LearningRateSchedule`` objects.

Given to a Keras optimizer, a schedule is evaluated at ``optimizer.iterations`` before each
update, which is the slim engine's ``global_step`` before its increment; so step ``k`` of
either engine uses the same rate.  Keras 3's ``ExponentialDecay(staircase=True)`` and
``PolynomialDecay(power=1, cycle=False)`` compute research/slim's two decays with the same
float32 operations as ``tf.compat.v1.train.exponential_decay`` / ``polynomial_decay``
(``rate * decay_factor ** floor(step / decay_steps)``; a straight line to
``end_learning_rate`` reached at ``decay_steps`` and held), so they are used as they are.
``decay_steps`` comes from :func:`slimtune.optim.decay_steps`, the slim engine's definition.
Keras has no constant schedule; :class:`Fixed` is one, so every run hands the optimizer a
schedule and can read its rate the same way.
"""

import keras

from slimtune import optim


@keras.saving.register_keras_serializable(package="slimtune")
class Fixed(keras.optimizers.schedules.LearningRateSchedule):
    """``--learning_rate_decay_type=fixed``: the same rate at every step."""

    def __init__(self, learning_rate):
        self.learning_rate = learning_rate

    def __call__(self, step):
        return keras.ops.convert_to_tensor(self.learning_rate, dtype=keras.backend.floatx())

    def get_config(self):
        return {"learning_rate": self.learning_rate}


def schedule(cfg, num_samples_per_epoch):
    """The learning-rate schedule of ``cfg`` (a TrainConfig) for a dataset of
    ``num_samples_per_epoch`` images: the one ``slimtune.optim.learning_rate`` builds."""
    kind = cfg.learning_rate_decay_type
    if kind == "fixed":
        return Fixed(cfg.learning_rate)
    steps = optim.decay_steps(cfg, num_samples_per_epoch)
    if kind == "exponential":
        return keras.optimizers.schedules.ExponentialDecay(
            cfg.learning_rate, steps, cfg.learning_rate_decay_factor, staircase=True)
    if kind == "polynomial":
        return keras.optimizers.schedules.PolynomialDecay(
            cfg.learning_rate, steps, cfg.end_learning_rate, power=1.0, cycle=False)
    raise optim.unknown_decay_type(cfg)
