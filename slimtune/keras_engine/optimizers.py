"""research/slim's optimizers as Keras 3 optimizers with TF1's update formulas.

The slim engine trains with ``tf.compat.v1.train.*Optimizer`` (see
:func:`slimtune.optim.optimizer`), whose updates are TensorFlow's ``ApplyXxx`` kernels.
:func:`optimizer` returns, for the same flags, a Keras optimizer that makes the same
update.  tests/test_keras_optimizers.py feeds both the same gradients for 8 steps under a
decaying rate, the Keras step in a tf.function as the engine runs it, and compares the
weights after every step.

Keras 3's own optimizer is used where its formula is TF1's (measured: equal to the bit,
adadelta within 3e-8 relative on the weights; eagerly, without graph optimisation, up to
1.6e-7):

- ``sgd``: ``var -= lr * g``.
- ``adagrad``: ``accum += g**2; var -= lr * g / sqrt(accum)``, ``accum`` starting at
  ``--adagrad_initial_accumulator_value``.  TF1 has no epsilon, so Keras' ``Adagrad`` (which
  adds one inside the root) gets ``epsilon=0``.
- ``adadelta``: the same formula, epsilon inside both roots.
- ``ftrl``: the same formula; TF1 takes ``sqrt`` where Keras takes ``pow(x, 0.5)``.

The others are the classes below: ``momentum`` runs TF1's kernel itself
(``ResourceApplyMomentum``, one pass over each weight, 2x faster than the same formula in
ops); the others compute their TF1 kernel's arithmetic term by term in float32
(measured: equal to the bit, RMSProp within 1.2e-7 because graph optimisation rewrites
its ``x / sqrt(y)`` as ``x * rsqrt(y)``):

- ``momentum`` (:class:`TF1Momentum`): TF1 accumulates raw gradients and applies today's
  rate (``accum = m * accum + g; var -= lr * accum``).  Keras' SGD accumulates rate-scaled
  steps (``v = m * v - lr * g; var += v``): the same while the rate is constant; once it
  decays, Keras keeps moving at the old rate (measured 36% apart after 8 steps).
- ``rmsprop`` (:class:`TF1RMSProp`): TF1's mean square starts at ONES, Keras' at zeros,
  which makes Keras' first steps up to ``1/sqrt(1 - decay)`` times larger when epsilon is
  small (measured 16% apart with research/slim's epsilon 1.0, ten times the weights' size with
  1e-8).
- ``adam`` (:class:`TF1Adam`): Keras has TF1's formula but computes ``1 - beta`` in float64
  and ``beta**t`` as a power, where TF1 has float32 ``1 - beta`` and running products; the
  last-bit differences are magnified by ``1 / (1 - beta2**t)`` (measured 3e-6 with
  ``--opt_epsilon=1e-8``).

None of them clips: the engine clips the global norm itself, as slim's
``--clip_gradient_norm`` did before the update.  The classes are registered serializable
(package ``slimtune``), so a model compiled with one saves and loads with slimtune imported.
"""

import keras
import tensorflow as tf
from keras import ops

from slimtune import optim


def optimizer(cfg, schedule):
    """The Keras optimizer for ``cfg.optimizer`` with ``cfg``'s hyper-parameters (a
    TrainConfig, research/slim's flags), driven by the learning-rate ``schedule``."""
    name = cfg.optimizer
    if name == "sgd":
        return keras.optimizers.SGD(schedule)
    if name == "momentum":
        return TF1Momentum(schedule, momentum=cfg.momentum)
    if name == "rmsprop":
        return TF1RMSProp(schedule, decay=cfg.rmsprop_decay, momentum=cfg.rmsprop_momentum,
                          epsilon=cfg.opt_epsilon)
    if name == "adam":
        return TF1Adam(schedule, beta1=cfg.adam_beta1, beta2=cfg.adam_beta2,
                       epsilon=cfg.opt_epsilon)
    if name == "adagrad":
        return keras.optimizers.Adagrad(
            schedule, initial_accumulator_value=cfg.adagrad_initial_accumulator_value,
            epsilon=0.0)
    if name == "adadelta":
        return keras.optimizers.Adadelta(schedule, rho=cfg.adadelta_rho, epsilon=cfg.opt_epsilon)
    if name == "ftrl":
        return keras.optimizers.Ftrl(
            schedule, learning_rate_power=cfg.ftrl_learning_rate_power,
            initial_accumulator_value=cfg.ftrl_initial_accumulator_value,
            l1_regularization_strength=cfg.ftrl_l1, l2_regularization_strength=cfg.ftrl_l2)
    raise optim.unknown_optimizer(cfg)


class _TF1Optimizer(keras.optimizers.Optimizer):
    """Shared plumbing: the hyper-parameters named in ``_HYPER`` are plain floats,
    saved by ``get_config``."""

    _HYPER = ()

    def __init__(self, learning_rate, name, hyper, **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        for key in self._HYPER:
            setattr(self, key, float(hyper[key]))

    def _cast(self, value, variable):
        """``value`` (rate, gradient, hyper-parameter) as a tensor of the variable's dtype:
        TF1 casts each to it before the kernel runs, so constants like ``1 - decay`` are
        computed in float32 as there."""
        return ops.cast(value, variable.dtype)

    def get_config(self):
        config = super().get_config()
        config.update({key: getattr(self, key) for key in self._HYPER})
        return config


@keras.saving.register_keras_serializable(package="slimtune")
class TF1Momentum(_TF1Optimizer):
    """``tf.compat.v1.train.MomentumOptimizer``: ``accum = momentum * accum + g;
    var -= lr * accum`` (raw gradients accumulated, today's rate applied)."""

    _HYPER = ("momentum",)

    def __init__(self, learning_rate=0.01, momentum=0.9, name="TF1Momentum", **kwargs):
        super().__init__(learning_rate, name, dict(momentum=momentum), **kwargs)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._accumulators = self.add_optimizer_variables(variables, "momentum")

    def update_step(self, gradient, variable, learning_rate):
        lr, g = self._cast(learning_rate, variable), self._cast(gradient, variable)
        accum = self._accumulators[self._get_variable_index(variable)]
        # TF1's own kernel (what MomentumOptimizer runs): one pass over the variable where
        # the same formula in ops takes five (measured on resnet_v1_50's 23.5M weights:
        # 0.05 s a step instead of 0.10 s, 5% of a 64 px step with batch 8).
        tf.raw_ops.ResourceApplyMomentum(
            var=variable.handle, accum=accum.handle, lr=lr, grad=g,
            momentum=self._cast(self.momentum, variable), use_locking=False,
            use_nesterov=False)


@keras.saving.register_keras_serializable(package="slimtune")
class TF1RMSProp(_TF1Optimizer):
    """``tf.compat.v1.train.RMSPropOptimizer`` (not centered): mean square ``ms`` starts
    at ones; ``ms += (g**2 - ms) * (1 - decay); mom = momentum * mom + lr * g /
    sqrt(ms + epsilon); var -= mom``."""

    _HYPER = ("decay", "momentum", "epsilon")

    def __init__(self, learning_rate=0.01, decay=0.9, momentum=0.0, epsilon=1e-10,
                 name="TF1RMSProp", **kwargs):
        hyper = dict(decay=decay, momentum=momentum, epsilon=epsilon)
        super().__init__(learning_rate, name, hyper, **kwargs)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._mean_squares, self._momentums = self.add_optimizer_variables(
            variables, ["rms", "momentum"], initializer=["ones", "zeros"])

    def update_step(self, gradient, variable, learning_rate):
        lr, g = self._cast(learning_rate, variable), self._cast(gradient, variable)
        index = self._get_variable_index(variable)
        ms, mom = self._mean_squares[index], self._momentums[index]
        one, decay = self._cast(1.0, variable), self._cast(self.decay, variable)
        new_ms = ms + (ops.square(g) - ms) * (one - decay)
        new_mom = (mom * self._cast(self.momentum, variable)
                   + g * lr / ops.sqrt(new_ms + self._cast(self.epsilon, variable)))
        self.assign(ms, new_ms)
        self.assign(mom, new_mom)
        self.assign_sub(variable, new_mom)


@keras.saving.register_keras_serializable(package="slimtune")
class TF1Adam(_TF1Optimizer):
    """``tf.compat.v1.train.AdamOptimizer``: ``alpha = lr * sqrt(1 - beta2**t) /
    (1 - beta1**t); m += (g - m) * (1 - beta1); v += (g**2 - v) * (1 - beta2);
    var -= m * alpha / (sqrt(v) + epsilon)``, every term in float32 as the kernel has it.

    ``beta**t`` are running float32 products, as TF1 keeps them (its ``beta1_power`` and
    ``beta2_power`` variables, multiplied after each step): a float32 power can differ from
    them in the last bit, and ``1 - beta2**t`` magnifies that by ``beta2**t / (1 - beta2**t)``,
    about 300 at step 3 (measured 2.6e-6 relative on the weights by then with
    ``epsilon=1e-8``).
    """

    _HYPER = ("beta1", "beta2", "epsilon")

    def __init__(self, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8,
                 name="TF1Adam", **kwargs):
        hyper = dict(beta1=beta1, beta2=beta2, epsilon=epsilon)
        super().__init__(learning_rate, name, hyper, **kwargs)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._ms, self._vs = self.add_optimizer_variables(variables, ["m", "v"])
        self._powers = [
            self.add_variable((), initializer=keras.initializers.Constant(beta),
                              aggregation="only_first_replica", name=name)
            for beta, name in ((self.beta1, "beta1_power"), (self.beta2, "beta2_power"))]

    def update_step(self, gradient, variable, learning_rate):
        lr, g = self._cast(learning_rate, variable), self._cast(gradient, variable)
        index = self._get_variable_index(variable)
        m, v = self._ms[index], self._vs[index]
        one = self._cast(1.0, variable)
        beta1, beta2 = self._cast(self.beta1, variable), self._cast(self.beta2, variable)
        beta1_power, beta2_power = (self._cast(power, variable) for power in self._powers)
        alpha = lr * ops.sqrt(one - beta2_power) / (one - beta1_power)
        new_m = m + (g - m) * (one - beta1)
        new_v = v + (ops.square(g) - v) * (one - beta2)
        self.assign(m, new_m)
        self.assign(v, new_v)
        self.assign_sub(variable,
                        new_m * alpha / (ops.sqrt(new_v) + self._cast(self.epsilon, variable)))

    def apply(self, grads, trainable_variables=None):
        super().apply(grads, trainable_variables)
        if len(grads):  # Keras' apply counts no iteration for an empty list either
            for power, beta in zip(self._powers, (self.beta1, self.beta2)):
                power.assign(power * ops.cast(beta, power.dtype))
