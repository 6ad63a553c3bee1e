"""One training step with research/slim's loss and update, as a ``tf.function``.

The loss is slim's ``get_total_loss``: softmax cross-entropy of the logits with
--label_smoothing, plus 0.4 times the same loss of an Inception's auxiliary logits, plus
the L2 penalties (``L2(wd / 2)`` on the kernels slim regularises).  The penalties are
summed over every regularised weight, trained or not, as slim's REGULARIZATION_LOSSES
collection is (Keras' ``model.losses`` counts trainable weights only): the reported loss
is slim's, and the frozen weights get no gradient either way.

The model is called with ``training=True``: BatchNorm layers that are trainable normalise
with batch statistics and update their moving statistics (slim's arithmetic, in
:class:`~.batch_norm.SlimBatchNormalization`); frozen ones (``trainable=False``) use and
keep their moving statistics; Dropout drops.

--clip_gradient_norm clips each gradient tensor to that norm on its own, as
``tf_slim.learning.create_train_op`` does (its ``clip_gradient_norms`` calls
``clip_by_norm`` per gradient; it is not a global-norm clip).

--mixed_precision (:mod:`slimtune.precision`): the model computes in the policy's half
precision and its logits are cast to float32 before the loss, so the loss and the
gradients reaching the float32 variables are float32; with float16 the optimizer is a
``keras.optimizers.LossScaleOptimizer`` and the step differentiates the loss times its
scale (the clip norm, compared with scaled gradients, is scaled likewise).

Under a strategy (several workers, or --num_clones) the step runs in every replica, each
on its own batch, and is the step one process takes on the global batch:

- the loss is scaled to the global batch: ``tf.nn.compute_average_loss`` over the global
  batch size, the L2 penalties by ``tf.nn.scale_regularization_loss`` (1/replicas), so the
  replicas' shares sum to one process's loss.  The Keras 3 optimizer all-reduces (sums)
  the gradients itself inside ``apply`` in replica context;
- --clip_gradient_norm clips the summed gradient, not each replica's share (which Keras'
  ``clipnorm`` does, before its all-reduce): the step all-reduces the gradients first,
  and every replica scales its own share by the factor that clips the sum (``norm /
  max(||sum||, norm)`` per tensor); the optimizer's sum is then the clipped sum.  (Keras'
  ``apply`` cannot be told not to all-reduce again; the extra all-reduce runs only when
  clipping);
- the reported losses and accuracy are the global batch's (one all-reduce of 5 numbers,
  which also carries the workers' wishes to save and to stop: see :mod:`.trainer`).
"""

AUX_LOSS_WEIGHT = 0.4


def cross_entropy(one_hot, logits, label_smoothing, global_batch_size=None):
    """``tf.compat.v1.losses.softmax_cross_entropy``: smoothed one-hot labels, mean over
    the batch; with ``global_batch_size``, this replica's share of the mean over the
    global batch (``tf.nn.compute_average_loss``; one replica: the mean, to the bit)."""
    import tensorflow as tf

    if label_smoothing:
        classes = tf.cast(tf.shape(one_hot)[-1], logits.dtype)
        one_hot = one_hot * (1.0 - label_smoothing) + label_smoothing / classes
    losses = tf.nn.softmax_cross_entropy_with_logits(labels=one_hot, logits=logits)
    if global_batch_size is None:
        return tf.reduce_mean(losses)
    return tf.nn.compute_average_loss(losses, global_batch_size=global_batch_size)


def regularization_loss(model):
    """Sum of the penalties of every regularised weight of ``model`` (slim's
    REGULARIZATION_LOSSES, frozen weights included).

    A Keras ``L2(wd / 2)`` is computed as slim's ``l2_regularizer(wd)`` computes it,
    ``wd * tf.nn.l2_loss(w)``: the same value (``l2_loss`` is ``sum(w**2) / 2``, and the
    factors of 2 are exact in float), with slim's kernel, whose gradient ``wd * w`` is one
    op where ``sum(square(w))`` takes several passes over the weights.
    """
    import keras
    import tensorflow as tf

    penalties = []
    for w in model.weights:
        regularizer = getattr(w, "regularizer", None)
        if type(regularizer) is keras.regularizers.L2:
            penalties.append(tf.cast(2.0 * regularizer.l2, w.dtype) * tf.nn.l2_loss(w))
        elif regularizer is not None:
            penalties.append(regularizer(w))
    return tf.add_n(penalties) if penalties else tf.constant(0.0)


def clip_share(share, total, clip_norm):
    """``share`` scaled by the factor ``tf.clip_by_norm(total, clip_norm)`` applies to
    ``total`` (the summed gradient), in its order of operations: with one replica
    (``share`` is ``total``) it is ``clip_by_norm`` itself."""
    import tensorflow as tf

    squares = tf.reduce_sum(total * total, keepdims=True)
    positive = squares > 0
    norm = tf.where(positive, tf.sqrt(tf.where(positive, squares, tf.ones_like(squares))),
                    squares)
    return share * clip_norm / tf.maximum(norm, clip_norm)


def loss_scale(optimizer):
    """The current loss scale of a ``keras.optimizers.LossScaleOptimizer`` (a float32
    tensor), or None for any other optimizer."""
    import keras

    if not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return None
    return optimizer.dynamic_scale.value


def make_train_step(model, optimizer, variables, num_classes, label_smoothing,
                    clip_gradient_norm, strategy=None, global_batch_size=None,
                    after_update=None):
    """A ``tf.function(images, labels, wish) -> dict`` running one update of
    ``variables`` in every replica of ``strategy`` (None: this process's one device),
    ``images`` and ``labels`` each replica's own (distributed values, see
    :func:`.trainer.Trainer.distribute_batch`) of the ``global_batch_size``; the dict
    holds the total loss, cross-entropy, learning rate used and batch accuracy of the
    global batch, and ``wish`` (floats: ``[save, stop]``, or one) summed over the
    replicas.  ``after_update``
    (None, or a function of no arguments) runs in each replica after the optimizer's
    update, e.g. the moving averages' (:mod:`.averages`)."""
    import tensorflow as tf

    strategy = strategy or tf.distribute.get_strategy()
    sum_ = tf.distribute.ReduceOp.SUM

    def replica_step(images, labels, wish):
        context = tf.distribute.get_replica_context()
        one_hot = tf.one_hot(labels, num_classes)
        scale = loss_scale(optimizer)
        with tf.GradientTape() as tape:
            outputs = model(images, training=True)
            logits, aux = (outputs[0], outputs[1]) if isinstance(outputs, (list, tuple)) \
                else (outputs, None)
            logits = tf.cast(logits, tf.float32)
            main = cross_entropy(one_hot, logits, label_smoothing, global_batch_size)
            total = main + tf.nn.scale_regularization_loss(regularization_loss(model))
            if aux is not None:
                total += AUX_LOSS_WEIGHT * cross_entropy(
                    one_hot, tf.cast(aux, tf.float32), label_smoothing, global_batch_size)
            # float16: the gradients of the scaled loss; the optimizer divides them by
            # the scale again (or skips the step and halves it when one is not finite).
            target = total if scale is None else total * scale
        grads = tape.gradient(target, variables)
        if clip_gradient_norm > 0:
            present = [i for i, g in enumerate(grads) if g is not None]
            summed = context.all_reduce(sum_, [grads[i] for i in present])
            limit = clip_gradient_norm if scale is None else clip_gradient_norm * scale
            for i, full in zip(present, summed):
                grads[i] = clip_share(grads[i], full, limit)
        optimizer.apply(grads, variables)  # all-reduces (sums) the replicas' shares
        if after_update is not None:
            after_update()
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, 1), labels), tf.float32))
        accuracy = correct / tf.cast(global_batch_size or tf.shape(labels)[0], tf.float32)
        return context.all_reduce(sum_, tf.concat(
            [tf.stack([total, main, accuracy]), tf.reshape(tf.cast(wish, tf.float32), [-1])], 0))

    @tf.function
    def step(images, labels, wish=(0.0, 0.0)):
        rate = optimizer.learning_rate  # the schedule at the step about to run
        out = strategy.run(replica_step, args=(images, labels, wish))
        out = strategy.experimental_local_results(out)[0]
        return {"total_loss": out[0], "cross_entropy": out[1], "learning_rate": rate,
                "accuracy": out[2], "wish": out[3:]}

    return step
