"""--moving_average_decay on the Keras engine: research/slim's exponential moving averages
of the model variables, kept with the class research/slim keeps them with.

research/slim averages every model variable (weights, biases, BatchNorm gamma, beta and
moving statistics) with ``tf.train.ExponentialMovingAverage(decay, num_updates=
global_step)``: each step, ``shadow -= (shadow - value) * (1 - d)`` with ``d = min(decay,
(1 + step) / (10 + step))``.  The Keras engine runs that same class (TensorFlow's, not
Keras 3's optimizer ``use_ema``, which has no ``num_updates`` ramp and averages trainable
weights only) on the Keras variables, with ``num_updates`` the optimizer's step counter:

- the update runs in every replica's step after the optimizer's update and the
  BatchNorm updates (the step reads the variables after they are written), as the slim
  engine orders it after its train op, with the step counter already advanced;
- under a strategy the shadows are mirrored like the weights.  The class's update takes
  a mirrored variable's own copy in each replica as every replica's value, and Keras
  keeps a copy of the BatchNorm statistics per replica that drifts from the others: the
  trainer sets them to their mean over the replicas before each update (the slim
  engine's replicas share one mean-updated copy), so every shadow copy stays equal;
- the shadows start at the weights the run starts from (after a warm start), and the
  run's checkpoint holds them (``averages/...``), so a resumed run continues them.
"""


class MovingAverages:
    """The moving averages of ``weights`` (the run's :class:`~.model.Weight` list, every
    model variable), updated with ``decay`` and the step counter ``step`` (the
    optimizer's ``iterations``).  Create it under the run's strategy scope."""

    def __init__(self, weights, decay, step):
        import tensorflow as tf

        self.weights = list(weights)
        self._variables = [w.variable.value for w in self.weights]  # the tf.Variables
        self._ema = tf.train.ExponentialMovingAverage(decay, num_updates=step.value)
        # Creates the shadows at the variables' values; the update it also runs moves
        # nothing (shadow - value is 0).
        self._ema.apply(self._variables)
        self.shadows = [self._ema.average(v) for v in self._variables]

    def trackable(self):
        """What the run's ``tf.train.Checkpoint`` holds: ``{slim name: shadow}``."""
        return {w.slim_name: shadow for w, shadow in zip(self.weights, self.shadows)}

    def update(self):
        """One update of every shadow from its variable (in a replica's step)."""
        return self._ema.apply(self._variables)

    def restart(self):
        """Every shadow set to its variable's value (a run that starts, or a resumed
        checkpoint saved without averages)."""
        for shadow, variable in zip(self.shadows, self._variables):
            shadow.assign(variable.read_value())

    def swapped(self):
        """A context in which the model's variables hold the averages (saving the model
        that serves); their own values are back afterwards."""
        import contextlib

        @contextlib.contextmanager
        def swap():
            own = [v.read_value() for v in self._variables]
            for variable, shadow in zip(self._variables, self.shadows):
                variable.assign(shadow.read_value())
            try:
                yield
            finally:
                for variable, value in zip(self._variables, own):
                    variable.assign(value)

        return swap()
