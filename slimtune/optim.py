"""Learning-rate schedules and optimizers with research/slim's flag semantics.

``decay_steps = num_samples_per_epoch / batch_size * num_epochs_per_decay``, as in
research/slim's ``train_image_classifier.py``, so existing flag files give the same
schedule.  Note research/slim's ``opt_epsilon`` default of 1.0, which makes Adam and
RMSProp much more conservative than their usual 1e-8; slimtune keeps it for
compatibility, so set ``--opt_epsilon`` explicitly when you want the usual value.
"""

from slimtune.errors import UsageError

DECAY_TYPES = ("fixed", "exponential", "polynomial")
OPTIMIZERS = ("adadelta", "adagrad", "adam", "ftrl", "momentum", "rmsprop", "sgd")


def decay_steps(cfg, num_samples_per_epoch):
    """Steps between decays (exponential) or to the end rate (polynomial): research/slim's
    ``int(num_samples_per_epoch / batch_size * num_epochs_per_decay)``, at least 1.

    Both training engines' schedules use this one definition.
    """
    return max(1, int(num_samples_per_epoch / cfg.batch_size * cfg.num_epochs_per_decay))


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
