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

With ``sync_statistics`` set (--sync_batch_norm, under a strategy), a training step
normalises with the statistics of the global batch, every replica's together: one
all-reduce per layer and step of each channel's sum, sum of squares (both about the moving
mean, which is the same on every replica then) and count; the moving variance takes the
global batch's unbiased variance (``n/(n-1)``, ``n`` over all replicas), as slim's
fused kernel would on the global batch.  Gradients flow through the all-reduce.  These
are plain ops, not the fused kernel: the same arithmetic in another order (float32
rounding, ~1e-7 relative).

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

    sync_statistics = False  # set on the instance; not part of the saved config

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
        if self.sync_statistics:
            y, mean, unbiased_variance = self._global_batch_norm(x, gamma, beta)
        else:
            y, mean, unbiased_variance = tf.compat.v1.nn.fused_batch_norm(
                x, gamma, beta, epsilon=self.epsilon, data_format="NHWC", is_training=True)
        rate = ops.subtract(ops.cast(1.0, "float32"), ops.cast(self.momentum, "float32"))
        for moving, batch in ((self.moving_mean, mean), (self.moving_variance, unbiased_variance)):
            moving.assign_sub((moving - batch) * rate)
        return ops.cast(y, self.compute_dtype)


    def _global_batch_norm(self, x, gamma, beta):
        """``(output, mean, unbiased variance)`` with the global batch's statistics."""
        shift = tf.stop_gradient(tf.convert_to_tensor(self.moving_mean))
        centred = x - shift
        count = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), tf.float32)
        local = tf.concat([tf.reduce_sum(centred, [0, 1, 2]),
                           tf.reduce_sum(tf.square(centred), [0, 1, 2]), count[None]], 0)
        total = tf.distribute.get_replica_context().all_reduce(
            tf.distribute.ReduceOp.SUM, local)
        channels = x.shape[-1]
        n = total[-1]
        offset = total[:channels] / n
        variance = tf.maximum(total[channels:2 * channels] / n - tf.square(offset), 0.0)
        mean = shift + offset
        y = (x - mean) * (tf.math.rsqrt(variance + self.epsilon) * gamma) + beta
        return y, mean, variance * (n / tf.maximum(n - 1.0, 1.0))


# Saved configs name this class as Keras' own (see the module docstring); __qualname__
# keeps the real name visible in type() and tracebacks.
SlimBatchNormalization.__module__ = "keras.layers"
SlimBatchNormalization.__name__ = "BatchNormalization"
