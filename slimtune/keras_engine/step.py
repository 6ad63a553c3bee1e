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
"""

AUX_LOSS_WEIGHT = 0.4


def cross_entropy(one_hot, logits, label_smoothing):
    """``tf.compat.v1.losses.softmax_cross_entropy``: smoothed one-hot labels, mean over
    the batch."""
    import tensorflow as tf

    if label_smoothing:
        classes = tf.cast(tf.shape(one_hot)[-1], logits.dtype)
        one_hot = one_hot * (1.0 - label_smoothing) + label_smoothing / classes
    losses = tf.nn.softmax_cross_entropy_with_logits(labels=one_hot, logits=logits)
    return tf.reduce_mean(losses)


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


def make_train_step(model, optimizer, variables, num_classes, label_smoothing,
                    clip_gradient_norm):
    """A ``tf.function(images, labels) -> dict`` running one update of ``variables``;
    the dict holds the total loss, cross-entropy, learning rate used and batch accuracy."""
    import tensorflow as tf

    @tf.function
    def step(images, labels):
        rate = optimizer.learning_rate  # the schedule at the step about to run
        one_hot = tf.one_hot(labels, num_classes)
        with tf.GradientTape() as tape:
            outputs = model(images, training=True)
            logits, aux = (outputs[0], outputs[1]) if isinstance(outputs, (list, tuple)) \
                else (outputs, None)
            logits = tf.cast(logits, tf.float32)
            main = cross_entropy(one_hot, logits, label_smoothing)
            total = main + regularization_loss(model)
            if aux is not None:
                total += AUX_LOSS_WEIGHT * cross_entropy(one_hot, tf.cast(aux, tf.float32),
                                                         label_smoothing)
        grads = tape.gradient(total, variables)
        if clip_gradient_norm > 0:
            grads = [None if g is None else tf.clip_by_norm(g, clip_gradient_norm)
                     for g in grads]
        optimizer.apply(grads, variables)
        accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), labels), tf.float32))
        return {"total_loss": total, "cross_entropy": main, "learning_rate": rate,
                "accuracy": accuracy}

    return step
