"""The training graph: inputs, losses, the train op with BatchNorm updates, summaries.

The train op comes from ``slim.learning.create_train_op`` with every op of the
``UPDATE_OPS`` collection as a dependency, so the BatchNorm moving mean and variance
are updated on every step (the bug behind most "eval accuracy collapses" reports is a
hand-written ``optimizer.minimize(loss)`` that never runs them).

The ops are created in one fixed order: with a graph seed, TensorFlow derives each
random op's seed from it and the op's place in that order, so a seeded run repeats
bit for bit only while the order stays as it is.
"""

import dataclasses

from slimtune import checkpoint, compat, optim
from slimtune.data import pipeline
from slimtune.errors import UsageError
from slimtune.nets import batch_norm as bn_lib

# Images the final checkpoint's inference outputs are checked on: a checkpoint whose
# weights are starting to overflow can give NaN for some images and not others.
FINAL_CHECK_IMAGES = 32


@dataclasses.dataclass
class TrainGraph:
    """The tensors the session loop runs."""

    global_step: object
    train_op: object  # runs one step; its value is the total loss
    lr: object
    accuracy: object  # top-1 on the training batch
    summary: object
    images_per_sec: object  # fed: the throughput the summaries record
    check_images: object  # the final check's batch and the network's inference logits
    check_logits: object


def build_train_graph(cfg, run, split, create_aux_logits=True):
    """Build the training graph of ``run`` (a resolved :class:`metadata.RunInfo`) on
    ``split`` in the current default graph.

    ``create_aux_logits=False`` leaves out an auxiliary head (see
    :func:`slimtune.slim_engine.start.with_aux_head`).
    """
    import tensorflow as tf

    v1 = tf.compat.v1
    compat.apply()
    if cfg.seed is not None:
        v1.set_random_seed(cfg.seed)
    global_step = v1.train.get_or_create_global_step()
    with tf.device("/cpu:0"):
        data = pipeline.batches(split, run.preprocessing, run.image_size, cfg.batch_size, True,
                                run.num_classes, run.labels_offset, seed=cfg.seed,
                                deterministic=cfg.deterministic)
        images, labels = v1.data.make_one_shot_iterator(data).get_next()
    logits, end_points = run.spec.build(images, run.num_classes, is_training=True,
                                        batch_norm=run.batch_norm,
                                        weight_decay=cfg.weight_decay,
                                        create_aux_logits=create_aux_logits)
    total_loss, cross_entropy = _losses(cfg, run, logits, end_points, labels)
    accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), labels), tf.float32))
    train_op, lr = _train_op(cfg, run, split, total_loss, global_step)
    check_images, check_logits = _final_check_tensors(cfg, run, split, create_aux_logits)
    images_per_sec = v1.placeholder_with_default(0.0, [], name="images_per_sec")
    summary = _summaries(total_loss, cross_entropy, lr, accuracy, images_per_sec)
    return TrainGraph(global_step, train_op, lr, accuracy, summary, images_per_sec,
                      check_images, check_logits)


def _losses(cfg, run, logits, end_points, labels):
    """``(total loss, cross entropy)``: softmax cross entropy of the logits, 0.4 of the
    auxiliary head's when there is one, and the regularisation losses."""
    import tensorflow as tf

    v1 = tf.compat.v1
    aux_key = run.spec.aux_logits
    one_hot = tf.one_hot(labels, run.num_classes)
    if aux_key and aux_key in end_points:
        aux = end_points[aux_key]
        if aux.shape.rank == 4:
            aux = tf.squeeze(aux, axis=[1, 2])
        v1.losses.softmax_cross_entropy(one_hot, aux, label_smoothing=cfg.label_smoothing,
                                        weights=0.4, scope="aux_loss")
    cross_entropy = v1.losses.softmax_cross_entropy(
        one_hot, logits, label_smoothing=cfg.label_smoothing)
    return v1.losses.get_total_loss(name="total_loss"), cross_entropy


def _train_op(cfg, run, split, total_loss, global_step):
    """``(train op, learning rate)``: one optimizer step that also runs the BatchNorm
    updates (and the weights' moving averages with --moving_average_decay)."""
    import tensorflow as tf

    slim = compat.apply()
    v1 = tf.compat.v1
    lr = optim.learning_rate(cfg, global_step, split.num_samples)
    opt = optim.optimizer(cfg, lr)
    update_ops = list(v1.get_collection(v1.GraphKeys.UPDATE_OPS))
    if run.batch_norm is not None and run.batch_norm.mode == bn_lib.FROZEN and update_ops:
        raise RuntimeError("internal: frozen BatchNorm still created update ops: "
                           + ", ".join(op.name for op in update_ops[:3]))
    if cfg.moving_average_decay:
        ema = tf.train.ExponentialMovingAverage(cfg.moving_average_decay, global_step)
        update_ops.append(ema.apply(slim.get_model_variables()))
    train_op = slim.learning.create_train_op(
        total_loss, opt, global_step=global_step, update_ops=update_ops,
        variables_to_train=_variables_to_train(cfg),
        clip_gradient_norm=cfg.clip_gradient_norm or 0)
    return train_op, lr


def _variables_to_train(cfg):
    import tensorflow as tf

    v1 = tf.compat.v1
    scopes = checkpoint.split_scopes(cfg.trainable_scopes)
    if not scopes:
        return v1.trainable_variables()
    chosen = []
    for scope in scopes:
        found = v1.get_collection(v1.GraphKeys.TRAINABLE_VARIABLES, scope)
        if not found:
            raise UsageError(f"--trainable_scopes: no trainable variable under {scope!r}; "
                             "scopes are variable-name prefixes such as resnet_v1_50/logits")
        chosen.extend(v for v in found if v not in chosen)
    return chosen


def _final_check_tensors(cfg, run, split, create_aux_logits):
    """``(images, logits)``: the network in inference mode, sharing the training
    variables, on one batch of the training split with evaluation preprocessing (at
    least :data:`FINAL_CHECK_IMAGES` images).  Run once after the final save, in the
    training session, so the check costs no second graph, session or restore."""
    import tensorflow as tf

    v1 = tf.compat.v1
    with tf.device("/cpu:0"), tf.name_scope("final_check"):
        data = pipeline.batches(split, run.preprocessing, run.image_size,
                                max(cfg.batch_size, FINAL_CHECK_IMAGES), False,
                                run.num_classes, run.labels_offset)
        images, _ = v1.data.make_one_shot_iterator(data).get_next()
    with v1.variable_scope(v1.get_variable_scope(), reuse=True):
        logits, _ = run.spec.build(images, run.num_classes, is_training=False,
                                   batch_norm=run.batch_norm,
                                   create_aux_logits=create_aux_logits)
    return images, logits


def _summaries(total_loss, cross_entropy, lr, accuracy, images_per_sec):
    """The merged TensorBoard summary: losses, rate, batch accuracy, throughput and a
    histogram of every BatchNorm moving mean and variance."""
    import tensorflow as tf

    v1 = tf.compat.v1
    summaries = [
        v1.summary.scalar("losses/total_loss", total_loss),
        v1.summary.scalar("losses/cross_entropy", cross_entropy),
        v1.summary.scalar("training/learning_rate", lr),
        v1.summary.scalar("training/train_batch_accuracy", accuracy),
        v1.summary.scalar("training/images_per_sec", images_per_sec),
    ]
    for var in _bn_moving_variables(v1.get_default_graph()):
        summaries.append(v1.summary.histogram("batch_norm/" + var.op.name, var))
    return v1.summary.merge(summaries)


def _bn_moving_variables(graph):
    import tensorflow as tf

    return [v for v in graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES)
            if v.op.name.endswith(("/moving_mean", "/moving_variance"))
            and "ExponentialMovingAverage" not in v.op.name]
