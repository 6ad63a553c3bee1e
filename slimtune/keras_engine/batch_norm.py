"""BatchNormalization that trains like slim's and saves as Keras' own.

In training, slim's ``batch_norm`` (as slimtune builds it: rank-4 input, the default
``UPDATE_OPS`` collection) runs TensorFlow's fused kernel ``FusedBatchNormV3``: it
normalises with the biased batch variance, returns the Bessel-corrected (unbiased,
``n/(n-1)``, ``n = batch * height * width``) variance, and that is what enters the moving
variance, as ``moving -= (moving - batch) * (1 - decay)`` with ``1 - decay`` taken in
float32 (tf_keras' legacy BatchNormalization in graph mode, under ``slim.batch_norm``).

Keras 3's ``BatchNormalization`` computes the biased variance with ``tf.nn.moments`` and
puts that into the moving variance, as ``moving * momentum + batch * (1 - momentum)``: at
n = 18 (batch 2 at 3x3) the variance it feeds in is 5.6% below slim's.

:class:`SlimBatchNormalization` runs the same fused kernel in training, so output, batch
statistics and gradients are the kernel's, and updates the moving statistics with slim's
arithmetic: one training step in tests/test_keras_batch_norm.py equals slim's to the bit
(output, moving statistics, trained weights), where Keras' own layer misses slim's moving
variance by 3.6%.  Outside training (``training`` false, or ``trainable=False``, i.e.
frozen) it is Keras' BatchNormalization unchanged: the function a saved model computes,
equal to slim's fused inference kernel within float32 rounding.

It serialises as ``keras.layers.BatchNormalization``: a model holding it saves a ``.keras``
that loads in safe mode without slimtune, with plain Keras BatchNormalization layers and
the same weights (Keras names a layer in a saved config by its class's ``__module__`` and
``__name__``, which the class declares as Keras' own; it adds no config of its own).
"""

import keras
import tensorflow as tf
from keras import ops


class SlimBatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` whose training step is slim's fused one.

    Channels-last rank-4 input only (all slim BatchNorms slimtune builds); ``momentum`` is
    slim's ``decay``.
    """

    def build(self, input_shape):
        if len(input_shape) != 4 or self.axis not in (-1, 3) or self.renorm \
                or self.synchronized:
            raise ValueError(
                f"{self.name}: SlimBatchNormalization reproduces slim's fused BatchNorm, which "
                f"takes channels-last rank-4 input without renorm or synchronisation; got "
                f"input shape {tuple(input_shape)}, axis {self.axis}, renorm {self.renorm}, "
                f"synchronized {self.synchronized}")
        super().build(input_shape)

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable):
            return super().call(inputs, training=training, mask=mask)
        if mask is not None:
            raise ValueError(f"{self.name}: slim's fused BatchNorm takes no mask")
        x = ops.cast(inputs, "float32")  # as Keras' BN: statistics in float32
        channels = (x.shape[-1],)
        gamma = self.gamma if self.scale else ops.ones(channels, "float32")
        beta = self.beta if self.center else ops.zeros(channels, "float32")
        y, mean, unbiased_variance = tf.compat.v1.nn.fused_batch_norm(
            x, gamma, beta, epsilon=self.epsilon, data_format="NHWC", is_training=True)
        rate = ops.subtract(ops.cast(1.0, "float32"), ops.cast(self.momentum, "float32"))
        for moving, batch in ((self.moving_mean, mean), (self.moving_variance, unbiased_variance)):
            moving.assign_sub((moving - batch) * rate)
        return ops.cast(y, self.compute_dtype)


# Saved configs name this class as Keras' own (see the module docstring); __qualname__
# keeps the real name visible in type() and tracebacks.
SlimBatchNormalization.__module__ = "keras.layers"
SlimBatchNormalization.__name__ = "BatchNormalization"
