"""Where a run starts: a checkpoint already in ``train_dir`` is resumed (global step and
all); otherwise ``checkpoint_path`` warm-starts the model variables outside
``checkpoint_exclude_scopes``; otherwise every variable starts from its initialiser.

An Inception's auxiliary head is built only if the checkpoint the run starts from holds
it, or if it is asked for (:func:`with_aux_head`).
"""

from slimtune import checkpoint, compat


def with_aux_head(cfg, spec, log):
    """Whether the training graph gets the network's auxiliary head, read from the
    checkpoint the run starts from.

    research/slim always builds it, and so does a fresh run.  A checkpoint saved without
    one (``create_aux_logits=False``) cannot restore it: resuming such a run, or
    warm-starting from such a checkpoint, builds the graph without it, unless the head is
    asked for by --checkpoint_exclude_scopes covering it or --ignore_missing_vars (a new
    head then starts from its initial values, as in research/slim).
    """
    import tensorflow as tf

    if not spec.aux_logits:
        return False
    latest = tf.train.latest_checkpoint(cfg.train_dir)
    if latest:
        held = spec.holds_aux_logits(checkpoint.read_shapes(latest))
        if not held:
            log(f"{latest} has no auxiliary head ({spec.aux_scope}): resuming without it")
        return held
    if not cfg.checkpoint_path:
        return True
    prefix = checkpoint.resolve(cfg.checkpoint_path)
    return checkpoint.aux_head_wanted(spec, prefix,
                                      spec.holds_aux_logits(checkpoint.read_shapes(prefix)),
                                      cfg.checkpoint_exclude_scopes, cfg.ignore_missing_vars,
                                      log)


def warm_start_plan(cfg, spec, log):
    """``(prefix, Saver)`` restoring the checkpoint_path variables, or None (resume or
    fresh start).

    Built (and checked against the checkpoint) before the graph is finalized, so a
    checkpoint that does not fit fails before any training step.
    """
    import tensorflow as tf

    slim = compat.apply()
    if not cfg.checkpoint_path:
        return None
    if tf.train.latest_checkpoint(cfg.train_dir):
        log(f"--checkpoint_path ignored: {cfg.train_dir} already holds a checkpoint to resume")
        return None
    prefix = checkpoint.resolve(cfg.checkpoint_path)
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
