"""NASNet's drop path in the Keras engine's training model, saved as Keras' own Identity.

research/slim drops whole examples of an operation's output in training: a mask of
shape ``[B, 1, 1, 1]``, 1 with probability ``keep``, the kept ones scaled by ``1 /
keep``; ``keep`` falls with the cell's depth and with the training progress (the step
over the run's length, :func:`slimtune.nets.nasnet.drop_path_keep`).  At inference it is
the identity, so :class:`DropPath` serialises as ``keras.layers.Identity``: the
``model.keras`` the engine saves loads in safe mode without slimtune and computes what
the converted mirror computes (its own config is Identity's; the clock is not saved).

Training progress: ``step / total`` with the run's --max_number_of_steps as ``total``
(both engines), where research/slim uses a fixed ``total_training_steps`` hparam (937,500
for CIFAR, 250,000 for ImageNet): a fine-tuning run of a few thousand steps would never
reach the drop rate the recipe intends.  Without --max_number_of_steps the hparam counts.
"""

import keras
import tensorflow as tf

from slimtune.nets import nasnet


class Clock:
    """The step drop path reads (the optimizer's iterations, set once the optimizer
    exists) and the run's length."""

    def __init__(self, total):
        self.total, self.step = total, None


class DropPath(keras.layers.Identity):
    """Drop path after one operation of cell ``cell_num`` of ``plan``."""

    def __init__(self, plan, cell_num, clock, **kwargs):
        super().__init__(**kwargs)
        self._keep_at = lambda progress: nasnet.drop_path_keep(plan, cell_num, progress)
        self._clock = clock
        self._default_total = float(plan.total_training_steps)

    def get_config(self):
        """An Identity's config: what a saved model holds (the clock is not saved)."""
        return keras.layers.Identity(name=self.name, dtype=self.dtype_policy.name,
                                     trainable=self.trainable).get_config()

    def call(self, inputs, training=None):
        if not training or self._clock.step is None:
            return inputs
        total = float(self._clock.total or self._default_total)
        progress = tf.minimum(1.0, tf.cast(self._clock.step, tf.float32) / total)
        keep = self._keep_at(progress)
        mask = tf.floor(keep + tf.random.uniform([tf.shape(inputs)[0], 1, 1, 1]))
        return inputs / keep * mask


def builder(clock):
    """The ``drop_path`` hook of :func:`slimtune.keras_nets.nasnet.nasnet`: a
    :class:`DropPath` layer on ``clock`` where the plan drops paths at all."""

    def drop_path(x, name, plan, cell_num):
        if plan.drop_path_keep >= 1.0:
            return x
        return DropPath(plan, cell_num, clock, name=name)(x)

    return drop_path


# Saved configs name this class as Keras' own (see the module docstring).
DropPath.__module__ = "keras.layers"
DropPath.__name__ = "Identity"
