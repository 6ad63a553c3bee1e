"""Where a run starts: a checkpoint already in ``train_dir`` is resumed (global step and
all); otherwise ``checkpoint_path`` warm-starts the model variables outside
``checkpoint_exclude_scopes``; otherwise every variable starts from its initialiser.

Which of these applies, and whether an Inception gets its auxiliary head, is decided for
both engines by :mod:`slimtune.start_plan`; this module carries it out in a TF1 graph.
"""

from slimtune import checkpoint, compat, sources
from slimtune.errors import UsageError


def warm_start_plan(cfg, spec, prefix, log):
    """``(prefix, Saver)`` restoring the model variables from the warm-start checkpoint
    ``prefix`` (the start plan's; None: resume or fresh start, then None).

    Built (and checked against the checkpoint) before the graph is finalized, so a
    checkpoint that does not fit fails before any training step.
    """
    import tensorflow as tf

    slim = compat.apply()
    if not prefix:
        return None
    if sources.kind_of(prefix) == sources.KERAS:
        raise UsageError(f"--checkpoint_path={cfg.checkpoint_path} is a Keras model: the slim "
                         "engine warm-starts from slim checkpoints; train it with "
                         "--engine=keras, or give the slim checkpoint it was converted from")
    restore, missing = checkpoint.plan_restore(
        slim.get_model_variables(), prefix,
        checkpoint.split_scopes(cfg.checkpoint_exclude_scopes),
        cfg.ignore_missing_vars, spec.logits_scopes)
    checkpoint.refuse_broken(prefix, names=list(restore))  # the tensors restored, only
    log(f"Fine-tuning from {prefix}: {len(restore)} variables"
        + (f", {len(missing)} missing kept at their initial values" if missing else ""))
    # A list where names match: a Saver given {name: variable} reads a distributed run's
    # BatchNorm statistics (SyncOnRead) as tensors instead of restoring them.
    if all(checkpoint.variable_name(v) == name for name, v in restore.items()):
        restore = list(restore.values())
    return prefix, tf.compat.v1.train.Saver(var_list=restore)


def resume_step(train_dir):
    """The global step of the checkpoint ``train_dir`` resumes from (0: none)."""
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(train_dir)
    return int(tf.train.load_variable(latest, "global_step")) if latest else 0


def restore_or_initialize(sess, train_dir, saver, init_op, warm_start, log,
                          averages_start=None):
    """Resume the latest checkpoint of ``train_dir``, else initialise every variable,
    apply the warm start (if any) and start the moving averages (``averages_start``, an
    op or None) at the weights."""
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(train_dir)
    if latest:
        saver.restore(sess, latest)
        log(f"Resuming from {latest}")
    else:
        sess.run(init_op)
        if warm_start:
            warm_start[1].restore(sess, warm_start[0])
        if averages_start is not None:
            sess.run(averages_start)
