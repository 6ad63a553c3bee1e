"""Learning-rate schedules and optimizers with research/slim's flag semantics.

``decay_steps = num_samples_per_epoch / batch_size * num_epochs_per_decay``, as in
research/slim's ``train_image_classifier.py``, so existing flag files give the same
schedule: ``batch_size`` is one clone's batch (with ``--num_clones=K`` the rate decays K
times faster per epoch than one clone's, as there), and ``--sync_replicas`` divides the
steps by ``--replicas_to_aggregate``, as there.  ``--decay_per_global_batch`` counts the
epochs in global batches instead (every clone's and worker's images per step).  Note research/slim's ``opt_epsilon`` default of 1.0, which makes Adam and
RMSProp much more conservative than their usual 1e-8; slimtune keeps it for
compatibility, so set ``--opt_epsilon`` explicitly when you want the usual value.
"""

from slimtune.errors import UsageError

DECAY_TYPES = ("fixed", "exponential", "polynomial")
OPTIMIZERS = ("adadelta", "adagrad", "adam", "ftrl", "momentum", "rmsprop", "sgd")


def decay_steps(cfg, num_samples_per_epoch):
    """Steps between decays (exponential) or to the end rate (polynomial): research/slim's
    ``int(num_samples_per_epoch / batch_size * num_epochs_per_decay)``, at least 1, then
    divided by ``replicas_to_aggregate`` under ``sync_replicas`` (a float when it does not
    divide, as research/slim's ``/=`` gives under Python 3).

    ``batch_size`` is ``cfg.decay_batch_size`` when set (see :func:`decay_batch_size`: an
    engine may hand its schedule a cfg whose ``batch_size`` is the global batch), else
    ``cfg.batch_size``.  Both training engines' schedules use this one definition.
    """
    batch = getattr(cfg, "decay_batch_size", None) or cfg.batch_size
    steps = max(1, int(num_samples_per_epoch / batch * cfg.num_epochs_per_decay))
    if getattr(cfg, "sync_replicas", False):
        steps /= cfg.replicas_to_aggregate
        steps = int(steps) if steps == int(steps) else steps
    return steps


def decay_batch_size(cfg, placement):
    """The batch the schedule counts epochs in: one clone's ``batch_size`` (research/slim's),
    or the global batch (``batch_size`` x clones x workers) with ``decay_per_global_batch``.
    Refuses the replica flags whose meaning slimtune cannot give."""
    workers = placement.num_workers
    if cfg.sync_replicas and cfg.decay_per_global_batch:
        raise UsageError("--sync_replicas divides research/slim's per-clone decay steps by "
                         "--replicas_to_aggregate; --decay_per_global_batch already counts "
                         "every replica's images: drop one of the two flags")
    if cfg.sync_replicas and cfg.replicas_to_aggregate != workers:
        raise UsageError(f"--replicas_to_aggregate={cfg.replicas_to_aggregate} with "
                         f"--sync_replicas: slimtune sums every worker's gradients at each "
                         f"step, so set it to the number of workers ({workers})")
    if not cfg.sync_replicas and cfg.replicas_to_aggregate != 1:
        raise UsageError(f"--replicas_to_aggregate={cfg.replicas_to_aggregate} without "
                         "--sync_replicas does nothing (research/slim ignores it too): drop "
                         "it, or add --sync_replicas to divide the decay steps by it")
    return cfg.batch_size * (placement.num_replicas if cfg.decay_per_global_batch else 1)


def describe_decay(cfg, num_samples_per_epoch):
    """One line: the schedule and its effective decay steps, and what they count."""
    kind = cfg.learning_rate_decay_type
    if kind == "fixed":
        return f"learning rate {cfg.learning_rate} fixed"
    steps = decay_steps(cfg, num_samples_per_epoch)
    batch = getattr(cfg, "decay_batch_size", None) or cfg.batch_size
    what = ("the global batch" if cfg.decay_per_global_batch
            else "one clone's batch, as research/slim")
    how = (f"x{cfg.learning_rate_decay_factor} every {steps} steps" if kind == "exponential"
           else f"to {cfg.end_learning_rate} over {steps} steps")
    sync = (f", / --replicas_to_aggregate={cfg.replicas_to_aggregate} (--sync_replicas)"
            if cfg.sync_replicas else "")
    return (f"learning rate {cfg.learning_rate}, {kind} decay {how}: decay steps = "
            f"{num_samples_per_epoch} images / batch {batch} ({what}) x "
            f"{cfg.num_epochs_per_decay} epochs{sync}")


def unknown_decay_type(cfg):
    return UsageError(f"unknown --learning_rate_decay_type {cfg.learning_rate_decay_type!r}: "
                      f"choose one of {', '.join(DECAY_TYPES)}")


def unknown_optimizer(cfg):
    return UsageError(f"unknown --optimizer {cfg.optimizer!r}: choose one of "
                      f"{', '.join(OPTIMIZERS)}")


def learning_rate(cfg, global_step, num_samples_per_epoch):
    import tensorflow as tf

    v1 = tf.compat.v1
    if cfg.learning_rate_decay_type == "fixed":
        return tf.constant(cfg.learning_rate, name="fixed_learning_rate")
    steps = decay_steps(cfg, num_samples_per_epoch)
    if cfg.learning_rate_decay_type == "exponential":
        return v1.train.exponential_decay(cfg.learning_rate, global_step, steps,
                                          cfg.learning_rate_decay_factor, staircase=True,
                                          name="exponential_decay_learning_rate")
    if cfg.learning_rate_decay_type == "polynomial":
        return v1.train.polynomial_decay(cfg.learning_rate, global_step, steps,
                                         cfg.end_learning_rate, power=1.0, cycle=False,
                                         name="polynomial_decay_learning_rate")
    raise unknown_decay_type(cfg)


def optimizer(cfg, lr):
    import tensorflow as tf

    train = tf.compat.v1.train
    name = cfg.optimizer
    if name == "adadelta":
        return train.AdadeltaOptimizer(lr, rho=cfg.adadelta_rho, epsilon=cfg.opt_epsilon)
    if name == "adagrad":
        return train.AdagradOptimizer(
            lr, initial_accumulator_value=cfg.adagrad_initial_accumulator_value)
    if name == "adam":
        return train.AdamOptimizer(lr, beta1=cfg.adam_beta1, beta2=cfg.adam_beta2,
                                   epsilon=cfg.opt_epsilon)
    if name == "ftrl":
        return train.FtrlOptimizer(
            lr, learning_rate_power=cfg.ftrl_learning_rate_power,
            initial_accumulator_value=cfg.ftrl_initial_accumulator_value,
            l1_regularization_strength=cfg.ftrl_l1, l2_regularization_strength=cfg.ftrl_l2)
    if name == "momentum":
        return train.MomentumOptimizer(lr, momentum=cfg.momentum, name="Momentum")
    if name == "rmsprop":
        return train.RMSPropOptimizer(lr, decay=cfg.rmsprop_decay, momentum=cfg.rmsprop_momentum,
                                      epsilon=cfg.opt_epsilon)
    if name == "sgd":
        return train.GradientDescentOptimizer(lr)
    raise unknown_optimizer(cfg)
