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
import functools

from slimtune import checkpoint, compat, distribute, optim, precision
from slimtune.data import pipeline
from slimtune.nets import batch_norm as bn_lib
from slimtune.schedule import SUMMARY_TAGS

# Images the final checkpoint's inference outputs are checked on: a checkpoint whose
# weights are starting to overflow can give NaN for some images and not others.
FINAL_CHECK_IMAGES = 32


@dataclasses.dataclass
class TrainGraph:
    """The tensors the session loop runs."""

    global_step: object
    train_op: object  # runs one step; its value is the total loss (of the global batch)
    lr: object
    accuracy: object  # top-1 on the training batch (mean over replicas)
    summary: object
    images_per_sec: object  # fed: the throughput the summaries record
    check_images: object  # the final check's batch and the network's inference logits
    check_logits: object
    wish: object  # fed: [save, summary, stop] this worker wants after this step (0 or 1)
    agreed: object  # the wishes summed over every replica: all workers act on them
    settings_rows: object = None  # multi-worker runs: fed, see distribute.settings_rows
    settings: object = None  # the rows summed over the workers
    regularization: object = None  # the step's weight decay (regularization losses), once
    averages_start: object = None  # --moving_average_decay: shadows := their variables


def build_train_graph(cfg, run, split, create_aux_logits=True, strategy=None,
                      placement=None, start_step=0):
    """Build the training graph of ``run`` (a resolved :class:`metadata.RunInfo`) on
    ``split`` in the current default graph, with its replicas placed by ``strategy``
    (None: one device) as ``placement`` (a :class:`slimtune.distribute.Placement`) says.

    Each replica reads its own share of the shard files and runs its own train op
    (``create_train_op`` with its own BatchNorm updates, after which the replicas'
    copies of the moving statistics are set to their mean:
    :func:`_with_statistics_averaged`); the optimizer sums the replicas' gradients, so
    each replica's loss is its share of the global batch's (:func:`_replica_loss`): a
    step is one process's step on the global batch.  The input starts at batch
    ``start_step`` (a resumed run).
    ``create_aux_logits=False`` leaves out an auxiliary head (see
    :mod:`slimtune.start_plan`).
    """
    import tensorflow as tf

    v1 = tf.compat.v1
    compat.apply()
    placement = placement or distribute.Placement()
    if cfg.seed is not None:
        v1.set_random_seed(cfg.seed)
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        rows, settings = _settings_exchange(strategy, placement)  # the first collective
        global_step = v1.train.get_or_create_global_step()
        inputs = _replica_inputs(cfg, run, split, strategy, placement, start_step)
        wish = v1.placeholder_with_default(tf.zeros([3]), [3], name="wish")
        # The schedule counts epochs of the global batch (every replica's images).
        global_batch = dataclasses.replace(cfg, batch_size=cfg.batch_size
                                           * placement.num_replicas)
        step = functools.partial(_replica_step, global_batch, run, split, create_aux_logits,
                                 global_step, placement,
                                 functools.partial(_local_batch, strategy, inputs))
        loss, regularization, cross_entropy, accuracy, lr, agreed = strategy.run(
            step, args=(wish,))
        mean = functools.partial(strategy.reduce, tf.distribute.ReduceOp.MEAN, axis=None)
        total = functools.partial(strategy.reduce, tf.distribute.ReduceOp.SUM, axis=None)
        # Each replica's loss is its share: summed, the loss one process would have.
        train_op, regularization = total(loss), total(regularization)
        cross_entropy, accuracy = mean(cross_entropy), mean(accuracy)
        lr = strategy.experimental_local_results(lr)[0]
        # Every local replica's copy: a collective runs only if all its parts are fetched.
        agreed = tf.reduce_max(tf.stack(strategy.experimental_local_results(agreed)), 0)
        check_images, check_logits = _final_check_tensors(cfg, run, split, create_aux_logits)
        images_per_sec = v1.placeholder_with_default(0.0, [], name="images_per_sec")
        summary = _summaries(train_op, cross_entropy, regularization, lr, accuracy,
                             images_per_sec)
        start_averages = averages_start()
    return TrainGraph(global_step, train_op, lr, accuracy, summary, images_per_sec,
                      check_images, check_logits, wish, agreed, rows, settings,
                      regularization, start_averages)


def _settings_exchange(strategy, placement):
    """``(fed rows, summed rows)`` of a multi-worker run, built before any other
    collective so that it pairs up across workers even when their graphs differ."""
    import tensorflow as tf

    if placement.cluster is None:
        return None, None
    rows = tf.compat.v1.placeholder(tf.float32, [placement.num_workers, distribute.ROW_BYTES],
                                    name="worker_settings")
    summed = strategy.run(distribute.sum_over_replicas, args=(rows,))
    return rows, strategy.experimental_local_results(summed)[0]


def _replica_inputs(cfg, run, split, strategy, placement, start_step):
    """Each local replica's ``(images, labels)`` (a list): replica ``r`` of ``R`` reads the shard
    files ``r, r+R, ...`` (FILE sharding) from batch ``start_step`` on."""
    import tensorflow as tf

    v1 = tf.compat.v1
    count, first = placement.num_replicas, placement.task * placement.num_clones
    batches = []
    for replica in range(first, first + placement.num_clones):
        share = distribute.replica_split(split, replica, count)
        with tf.device("/cpu:0"):
            data = pipeline.batches(share, run.preprocessing,
                                    run.image_size, cfg.batch_size, True, run.num_classes,
                                    run.labels_offset, seed=cfg.seed,
                                    deterministic=cfg.deterministic, skip_batches=start_step,
                                    grayscale=run.grayscale)
            batches.append(v1.data.make_one_shot_iterator(data).get_next())
    return batches


def _local_batch(strategy, batches):
    """Inside a replica: this replica's ``(images, labels)`` of the local ``batches``."""
    import tensorflow as tf

    if len(batches) == 1:
        return batches[0]
    def canonical(device):
        return tf.DeviceSpec.from_string(device).to_string()

    device = canonical(tf.nest.flatten(tf.distribute.get_replica_context().devices)[0])
    return batches[[canonical(d) for d in strategy.extended.worker_devices].index(device)]


def _replica_step(cfg, run, split, create_aux_logits, global_step, placement, inputs, wish):
    """One replica's part of a step: its network on its batch (``inputs()``), its losses
    and its train op.  Returns ``(loss share, regularization share, cross entropy,
    accuracy, learning rate, wishes summed)``."""
    import tensorflow as tf

    v1 = tf.compat.v1
    images, labels = inputs()
    before = {key: len(v1.get_collection(key)) for key in _PER_REPLICA}
    logits, end_points = run.spec.build(images, run.num_classes, is_training=True,
                                        batch_norm=run.batch_norm,
                                        weight_decay=cfg.weight_decay,
                                        create_aux_logits=create_aux_logits,
                                        dropout_keep_prob=cfg.dropout_keep_prob,
                                        total_training_steps=cfg.max_number_of_steps)
    cross_entropy = _losses(cfg, run, logits, end_points, labels)
    new = {key: v1.get_collection(key)[count:] for key, count in before.items()}
    total_loss, regularization = _replica_loss(
        new[v1.GraphKeys.LOSSES], new[v1.GraphKeys.REGULARIZATION_LOSSES], placement)
    accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), labels), tf.float32))
    train_op, lr = _train_op(cfg, run, split, total_loss, global_step,
                             new[v1.GraphKeys.UPDATE_OPS], placement.num_replicas)
    agreed = distribute.sum_over_replicas(wish)
    return train_op, regularization, cross_entropy, accuracy, lr, agreed


# Collections a replica adds to while it builds; another local replica's entries are
# not its own.
_PER_REPLICA = ("losses", "regularization_losses", "update_ops")


def _replica_loss(losses, regularization, placement):
    """``(loss, regularization)``: the replica's shares of the step's total loss and of
    its weight decay.  The optimizer sums the replicas' gradients, so the shares sum to
    what one process has on the global batch: the mean of the replicas' losses plus the
    regularization losses once.

    Every worker creates its own variables, so each sees the regularization losses; of
    the replicas on one worker only the first does (the others reuse its variables).  It
    carries them for the worker's ``num_clones`` replicas: ``num_clones / num_replicas``
    of them per worker, once in all."""
    import tensorflow as tf

    share = tf.add_n(losses) / float(placement.num_replicas)
    if not regularization:
        return tf.identity(share, name="total_loss"), tf.zeros([])
    weight_decay = tf.add_n(regularization) * (placement.num_clones / placement.num_replicas)
    return tf.add(share, weight_decay, name="total_loss"), weight_decay


def _losses(cfg, run, logits, end_points, labels):
    """The cross entropy of the logits; adds it and 0.4 of the auxiliary head's (when
    there is one) to the LOSSES collection."""
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
    return v1.losses.softmax_cross_entropy(one_hot, logits, label_smoothing=cfg.label_smoothing)


def _train_op(cfg, run, split, total_loss, global_step, update_ops, num_replicas):
    """``(train op, learning rate)``: one optimizer step that also runs the BatchNorm
    updates (with several replicas, then sets their copies to their mean:
    :func:`_with_statistics_averaged`), and the weights' moving averages with
    --moving_average_decay.  --mixed_precision=float16 wraps the optimizer in a dynamic
    loss scale (the session's rewrite does the rest: :mod:`slimtune.precision`)."""
    import tensorflow as tf

    slim = compat.apply()
    lr = optim.learning_rate(cfg, global_step, split.num_samples)
    opt = optim.optimizer(cfg, lr)
    if precision.loss_scaled(cfg.mixed_precision):
        opt = compat.loss_scale_optimizer(opt)
    update_ops = list(update_ops)
    if run.batch_norm is not None and run.batch_norm.mode == bn_lib.FROZEN and update_ops:
        raise RuntimeError("internal: frozen BatchNorm still created update ops: "
                           + ", ".join(op.name for op in update_ops[:3]))
    clip = None
    if cfg.clip_gradient_norm:
        clip = functools.partial(_clip_summed_gradients if num_replicas > 1
                                 else slim.learning.clip_gradient_norms,
                                 max_norm=cfg.clip_gradient_norm)
    # slim.learning.create_train_op's own clipping would clip each replica's share.
    train_op = slim.training.create_train_op(
        total_loss, opt, global_step=global_step, update_ops=update_ops,
        variables_to_train=variables_to_train(cfg), transform_grads_fn=clip)
    if num_replicas > 1 and update_ops:
        train_op = _with_statistics_averaged(train_op)
    if cfg.moving_average_decay:
        train_op = _with_moving_averages(cfg.moving_average_decay, train_op, global_step)
    return train_op, lr


def _with_statistics_averaged(train_op):
    """``train_op`` followed, in this replica, by setting its copy of every BatchNorm
    moving statistic to the mean of all replicas' copies (one all-reduce per step, of
    the statistics only: two numbers per channel of each BatchNorm).

    Each replica keeps its own copy of a moving mean and variance (tf.keras' legacy
    BatchNorm under ``slim.batch_norm`` makes them SyncOnRead, MEAN aggregation) and
    updates it with its own batch, so without this the copies drift apart; a read or a
    save gives their mean, and a restore sets every copy to that mean.  A resumed run
    then starts from other copies than the uninterrupted run holds at that step:
    measured on 2 workers (tiny net, decay 0.5), worker 0's copy of conv1's moving mean
    summed to 0.2306 and worker 1's to 0.1314 at step 2, the checkpoint held their mean
    0.1810, and a run resumed there differed at step 4 from the uninterrupted run in all
    4 statistics (their mean is the same in exact arithmetic, not in float32).
    Averaged every step, the copies are always equal, every save writes exactly what
    each replica holds and a restore changes nothing: a resumed run is the
    uninterrupted run to the bit, wherever it stopped.  Averaging only before saves
    would not do: the uninterrupted run need not save where the other one stopped.

    What a read or a save sees (the copies' mean) moves as before, up to float32
    rounding; one device runs no such op.  The Keras engine averages its copies after
    every step too (``keras_engine.trainer._statistics_averager``); this averages before
    the moving averages' update, so they read the same statistics on every replica."""
    import tensorflow as tf

    statistics = [v for v in tf.compat.v1.global_variables()
                  if getattr(v, "synchronization", None) == tf.VariableSynchronization.ON_READ
                  and v.aggregation == tf.VariableAggregation.MEAN]
    if not statistics:
        return train_op
    with tf.control_dependencies([train_op]):  # after the step's BatchNorm updates
        # In a replica, a SyncOnRead variable reads as this replica's own copy.
        local = [tf.reshape(v.read_value(), [-1]) for v in statistics]
        sizes = [int(x.shape[0]) for x in local]
        # One collective for all of them: the mean is taken element by element.
        mean = tf.distribute.get_replica_context().all_reduce(
            tf.distribute.ReduceOp.MEAN, tf.concat(local, 0))
        assigns = [v.assign(tf.reshape(part, v.shape))
                   for v, part in zip(statistics, tf.split(mean, sizes))]
    with tf.control_dependencies(assigns):
        return tf.identity(train_op)


def _with_moving_averages(decay, train_op, global_step):
    """``train_op`` followed by research/slim's --moving_average_decay update of every
    model variable (``tf.train.ExponentialMovingAverage(decay, global_step)``).

    research/slim groups the update with the optimizer's and the BatchNorm updates,
    unordered: it reads some variables before their update and some after, by chance,
    so two seeded runs differed in a shadow of a BatchNorm statistic.  Here it reads
    every variable after the step, BatchNorm updates included, with the global step
    already advanced (as the Keras engine does, :mod:`slimtune.keras_engine.averages`).
    The shadows are created outside the dependency (``apply`` creates them in an init
    scope)."""
    import tensorflow as tf

    slim = compat.apply()
    ema = tf.train.ExponentialMovingAverage(decay, global_step)
    with tf.control_dependencies([train_op]):
        update = ema.apply(slim.get_model_variables())
    with tf.control_dependencies([update]):
        return tf.identity(train_op)


def averages_start():
    """An op setting every ExponentialMovingAverage shadow to its variable's value (run
    after the warm start: the averages start at the weights the run starts from, not at
    the variables' initializers as in research/slim, whose ramp of the decay washes
    those out only after some ten steps), or None without averages."""
    import tensorflow as tf

    v1 = tf.compat.v1
    averaged = v1.get_collection(v1.GraphKeys.MOVING_AVERAGE_VARIABLES)
    if not averaged:
        return None
    by_name = {checkpoint.variable_name(v): v for v in v1.global_variables()}
    # Each replica's apply adds its variables to the collection: once per name.
    averaged = {checkpoint.variable_name(v): v for v in averaged}
    return tf.group(*[by_name[name + "/ExponentialMovingAverage"].assign(v.read_value())
                      for name, v in averaged.items()], name="averages_start")


def _clip_summed_gradients(grads_and_vars, max_norm):
    """--clip_gradient_norm as one process on the global batch has it: each variable's
    gradient summed over the replicas (an all-reduce) clipped to ``max_norm``.  Each
    replica scales its share by the factor the sum needs, so the optimizer's own sum of
    the shares is the clipped sum.  Costs one more all-reduce of the gradients."""
    import tensorflow as tf

    pairs = [(tf.convert_to_tensor(g), v) for g, v in grads_and_vars if g is not None]
    summed = tf.distribute.get_replica_context().all_reduce(
        tf.distribute.ReduceOp.SUM, [g for g, _ in pairs])
    clipped = [(g * (max_norm / tf.maximum(tf.norm(total), max_norm)), v)
               for (g, v), total in zip(pairs, summed)]
    return clipped + [(g, v) for g, v in grads_and_vars if g is None]


def variables_to_train(cfg):
    import tensorflow as tf

    return checkpoint.trained(tf.compat.v1.trainable_variables(), cfg.trainable_scopes,
                              checkpoint.variable_name)


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
                                run.num_classes, run.labels_offset, grayscale=run.grayscale)
        images, _ = v1.data.make_one_shot_iterator(data).get_next()
    with v1.variable_scope(v1.get_variable_scope(), reuse=True):
        logits, _ = run.spec.build(images, run.num_classes, is_training=False,
                                   batch_norm=run.batch_norm,
                                   create_aux_logits=create_aux_logits)
    return images, logits


def _summaries(total_loss, cross_entropy, regularization, lr, accuracy, images_per_sec):
    """The merged TensorBoard summary: losses, rate, batch accuracy, throughput, the loss
    scale (--mixed_precision=float16) and a histogram of every BatchNorm moving mean and
    variance."""
    import tensorflow as tf

    v1 = tf.compat.v1
    values = {"total_loss": total_loss, "cross_entropy": cross_entropy,
              "regularization": regularization, "learning_rate": lr, "accuracy": accuracy,
              "images_per_sec": images_per_sec}
    scales = [v for v in v1.global_variables() if v.op.name.endswith("current_loss_scale")]
    if scales:  # --mixed_precision=float16: the doctor reads it back
        values["loss_scale"] = scales[0]
    summaries = [v1.summary.scalar(SUMMARY_TAGS[key], value) for key, value in values.items()]
    for var in _bn_moving_variables(v1.get_default_graph()):
        summaries.append(v1.summary.histogram("batch_norm/" + checkpoint.variable_name(var),
                                              var))
    return v1.summary.merge(summaries)


def _bn_moving_variables(graph):
    import tensorflow as tf

    return [v for v in graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES)
            if checkpoint.variable_name(v).endswith(("/moving_mean", "/moving_variance"))
            and "ExponentialMovingAverage" not in v.name]
