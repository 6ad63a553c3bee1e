"""Shared plumbing for the absl entry scripts in ``tools/``.

``run(main)`` starts an absl app whose errors a person can read: a
:class:`SlimtuneError` prints its message (first line = what and how to fix) on
stderr and exits non-zero, without a traceback.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported anywhere

from slimtune.errors import SlimtuneError, UsageError  # noqa: E402

# research/slim flags about deployment and queue-based input.  slimtune accepts them so
# existing --flagfile files parse.  The training tool supports the data-parallel ones
# (TRAINING_DEPLOYMENT_HELP, see slimtune.distribute); any other value than these
# defaults asks for a setup slimtune does not provide, and is refused.
RESEARCH_SLIM_DEPLOYMENT_FLAGS = {
    "master": "", "num_clones": 1, "clone_on_cpu": False, "worker_replicas": 1,
    "num_ps_tasks": 0, "task": 0, "sync_replicas": False, "replicas_to_aggregate": 1,
}
# research/slim's input parallelism: tf.data's here (slimtune.data.pipeline.parallelism).
RESEARCH_SLIM_INPUT_FLAGS = {
    "num_readers": "Shard files read at once: the tf.data interleave's cycle length and "
                   "parallel reads (it sets the order of the files' records, so a seeded "
                   "run repeats only with the same value). Default: 4 files, tf.data's "
                   "AUTOTUNE parallel reads.",
    "num_preprocessing_threads": "Images decoded and preprocessed at once: the tf.data "
                                 "map's parallel calls (the order never depends on it). "
                                 "Default: tf.data's AUTOTUNE.",
}
TRAINING_DEPLOYMENT_HELP = {
    "num_clones": "Replicas on this machine's devices (GPUs, or CPUs with --clone_on_cpu): "
                  "each takes --batch_size images per step and the gradients are summed.",
    "clone_on_cpu": "Place the --num_clones replicas on CPU devices.",
    "worker_replicas": "Number of workers; optional, must match --worker_hosts.",
    "task": "This worker's index in --worker_hosts (0 is the chief).",
    "sync_replicas": "research/slim's synchronous workers: slimtune's workers always are; "
                     "the flag divides the decay steps by --replicas_to_aggregate as there.",
    "replicas_to_aggregate": "With --sync_replicas: the number of workers (slimtune sums "
                             "every worker's gradients at each step).",
    "num_ps_tasks": "Parameter servers are not supported (only 0): train on several "
                    "workers with --worker_hosts and --task (or TF_CONFIG) instead.",
}


def define_research_slim_compat_flags(supported=()):
    """Define the research/slim deployment and input flags; the ``supported`` ones get
    their help text from :data:`TRAINING_DEPLOYMENT_HELP`."""
    from absl import flags

    for name, default in RESEARCH_SLIM_DEPLOYMENT_FLAGS.items():
        help_text = TRAINING_DEPLOYMENT_HELP[name] if name in supported else (
            f"Accepted for research/slim flag files; only {default!r} is supported "
            "(slimtune trains on one machine, one device).")
        if isinstance(default, bool):
            flags.DEFINE_boolean(name, default, help_text)
        elif isinstance(default, int):
            flags.DEFINE_integer(name, default, help_text)
        else:
            flags.DEFINE_string(name, default, help_text)
    for name, help_text in RESEARCH_SLIM_INPUT_FLAGS.items():
        flags.DEFINE_integer(name, None, help_text)


def define_refused_flag(name, default, help_text):
    """A research/slim flag slimtune cannot honour: accepted at ``default`` (flag files
    parse), refused otherwise by :func:`refuse_set_flags`."""
    from absl import flags

    define = (flags.DEFINE_boolean if isinstance(default, bool) else flags.DEFINE_integer
              if isinstance(default, int) else flags.DEFINE_string)
    define(name, default, help_text)
    _REFUSED[name] = default


_REFUSED = {}
# Why each refused flag is, and what to do instead: one line.
REFUSED_WHY = {
    "quantize": "TF 2 has no quantize rewrite for TF1 graphs (tf.contrib.quantize is gone): "
                "evaluate the float model, and quantize with the TFLite converter",
    "quantize_delay": "TF 2 has no rewrite of a TF1 graph for quantization-aware training "
                      "(tf.contrib.quantize is gone): train the float model and quantize "
                      "after training with the TFLite converter",
    "master": "slimtune runs its own session (several workers: --worker_hosts and --task)",
}


def refuse_set_flags():
    """Refuse every :func:`define_refused_flag` flag set to another value than its
    default, with one line naming it and what to do."""
    from absl import flags

    for name, default in _REFUSED.items():
        value = flags.FLAGS[name].value
        if value != default:
            raise UsageError(f"--{name}={value} is not supported: {REFUSED_WHY[name]} "
                             f"(remove the flag or set it to {default!r})")


def check_compat_flags(supported=()):
    """Refuse research/slim deployment flags outside ``supported`` at other values than
    their defaults."""
    from absl import flags

    values = flags.FLAGS
    for name, default in RESEARCH_SLIM_DEPLOYMENT_FLAGS.items():
        if name not in supported and values[name].value != default:
            hint = (" (train on several workers with --worker_hosts and --task instead)"
                    if supported else "")
            raise UsageError(f"--{name}={values[name].value} is not supported{hint}: remove "
                             f"the flag or set it to {default!r}")


def config_from_flags(config_class, **overrides):
    """Fill a config dataclass from the absl flags of the same names."""
    import dataclasses

    from absl import flags

    values = flags.FLAGS
    kwargs = {f.name: values[f.name].value for f in dataclasses.fields(config_class)
              if f.name in values}
    kwargs.update(overrides)
    return config_class(**kwargs)


def _adopt_help_of(tool_module):
    """Make ``--help`` describe the tool when it runs as a console script.

    absl's ``--help`` prints the ``__main__`` docstring and the flags of the module named
    by ``sys.argv[0]``.  Run as ``python tools/x.py`` that is the tool; run as
    ``slimtune-x``, ``__main__`` is pip's wrapper, which has neither, so the help would
    be an empty usage line.  The tool's docstring and flags are lent to the wrapper.
    """
    from absl import flags

    main = sys.modules["__main__"]
    if tool_module is main:
        return
    if not main.__doc__:
        main.__doc__ = tool_module.__doc__
    for flag in flags.FLAGS.get_key_flags_for_module(tool_module.__name__):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)


def run(main, pass_through=False):
    """``absl.app.run`` with SlimtuneError turned into a one-line message and exit code.

    ``pass_through``: the arguments after ``--`` reach ``main`` (for a launcher of other
    tools, which needs no TensorFlow itself)."""
    from absl import app

    def wrapped(argv):
        from absl import logging as absl_logging

        # TensorFlow logs INFO chatter ("Fingerprint not found") through absl; slimtune
        # prints its own progress, so only warnings and errors get through.
        absl_logging.set_verbosity(absl_logging.WARNING)
        if len(argv) > 1 and not pass_through:
            raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
        try:
            return main(argv)
        except SlimtuneError as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr, flush=True)
            sys.exit(130)

    asked_for_help = any(a in ("-h", "--help", "-?", "--helpshort", "--helpfull")
                         for a in sys.argv[1:])
    _adopt_help_of(sys.modules[main.__module__])
    if not asked_for_help and not pass_through:
        from slimtune import compat

        compat.import_tensorflow_quietly()
    try:
        app.run(wrapped)
    except SystemExit as e:
        # absl exits with 1 after printing help; asking for help is not a failure.
        if asked_for_help and e.code == 1:
            sys.exit(0)
        raise
