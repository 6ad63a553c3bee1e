"""Reading, checking and restoring slim checkpoints, with errors that say the fix.

Turning what a user typed into a checkpoint prefix (an archive, a manifest name, a train
dir) is :func:`slimtune.sources.checkpoint_prefix`; this module only reads what is on
disk, so it sits near the bottom of the house.

research/slim's ``assign_from_checkpoint_fn`` fails deep inside a session with a
shape error and no hint; here every variable is checked against the checkpoint
*before* training starts, and the error names the variables and the flag to use.
"""

import os

from slimtune import files
from slimtune.errors import CheckpointError, UsageError
from slimtune.progress import log as _log


STATE_FILE = "checkpoint"  # the state file TF's savers keep in a train dir


def read_shapes(prefix):
    """``{variable name: shape}`` of a checkpoint; unreadable files are a CheckpointError."""
    import tensorflow as tf

    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as e:
        first = str(getattr(e, "message", e)).splitlines()[0]
        raise CheckpointError(f"checkpoint {prefix} cannot be read ({first}): it is truncated "
                              "or not a TensorFlow checkpoint; download or copy it again") from None
    return {name: tuple(shape) for name, shape in reader.get_variable_to_shape_map().items()}


def read_tensors(prefix, names=None):
    """``{name: array}`` of every tensor in checkpoint ``prefix`` (or of ``names``), dtypes
    kept; an unreadable index or a truncated data file is a CheckpointError."""
    return dict(iter_tensors(prefix, names))


def iter_tensors(prefix, names=None):
    """:func:`read_tensors` one ``(name, array)`` at a time: a caller that keeps none of
    them holds one tensor in memory, not the checkpoint."""
    import tensorflow as tf

    names = list(read_shapes(prefix) if names is None else names)  # unreadable: said here
    reader = tf.train.load_checkpoint(prefix)
    for name in names:
        try:
            value = reader.get_tensor(name)
        except Exception as e:  # TF raises several types for the same problem
            raise CheckpointError(f"cannot read {name} from checkpoint {prefix}: "
                                  f"{str(e).splitlines()[0]}; the data file is truncated or "
                                  "corrupt, copy or download it again") from None
        yield name, value


# Checkpoints judged whole and healthy, by their files' (name, size, mtime): a command
# that judges the tensors it read (the doctor's report) is not followed by a second read
# of the same files (its live checks open the checkpoint as verify does).
_HEALTHY = set()


def _stamp(prefix, averages):
    directory, base = os.path.split(prefix)
    stats = [(name, os.stat(os.path.join(directory, name)))
             for name in sorted(os.listdir(directory or "."))
             if name == base + ".index" or name.startswith(base + ".data-")]
    return (os.path.abspath(prefix), averages,
            tuple((name, st.st_size, st.st_mtime_ns) for name, st in stats))


def refuse_broken(prefix, names=None, averages=False, tensors=None):
    """Raise :class:`~slimtune.errors.BrokenCheckpoint` when a tensor of checkpoint
    ``prefix`` holds a value no working network holds
    (:func:`slimtune.checkpoint_values.refuse`); every command calls it before any graph
    runs and before anything is written.

    ``names``: only those (what a warm start restores).  ``tensors``: ``{name: array}``
    the caller already read (judged without reading again); otherwise the tensors are read
    one at a time (a command that restores with a Saver keeps none: measured 0.13 s
    for resnet_v1_50's 25.6M values, 0.06 s to judge them once read).  ``averages``: ExponentialMovingAverage shadows too.
    """
    from slimtune import checkpoint_values

    stamp = _stamp(prefix, averages)
    if stamp in _HEALTHY:
        return
    shapes = read_shapes(prefix)
    # Sorted: a tensor's scope before the scopes under it, units in order.
    wanted = sorted(checkpoint_values.checked_names(shapes if names is None else names,
                                                    averages))
    if tensors is not None:
        pairs = ((name, tensors[name]) for name in wanted if name in tensors)
    else:
        pairs = iter_tensors(prefix, wanted)
    checkpoint_values.refuse(pairs, prefix, averages)
    whole = set(checkpoint_values.checked_names(shapes, averages))
    if whole <= set(wanted) and (tensors is None or whole <= set(tensors)):
        _HEALTHY.add(stamp)


def file_hashes(prefix):
    """``{file name: sha256}`` of the files of checkpoint ``prefix``."""

    directory, base = os.path.split(prefix)
    return {name: files.sha256_of(os.path.join(directory, name))
            for name in sorted(os.listdir(directory or "."))
            if name == base + ".index" or name.startswith(base + ".data-") or name == base}


def write(prefix, tensors):
    """Save ``{name: array}`` as a TensorFlow checkpoint at ``prefix``; returns ``prefix``.

    Every tensor keeps its name, dtype and shape.  Values are fed, not embedded in the
    graph, so a large checkpoint does not meet the 2 GB graph limit.  No ``checkpoint``
    state file and no ``.meta`` are written: the caller decides what is latest.
    """
    import numpy as np
    import tensorflow as tf

    v1 = tf.compat.v1
    with tf.Graph().as_default():
        feeds, saved = {}, {}
        for index, (name, value) in enumerate(sorted(tensors.items())):
            value = np.asarray(value)
            fed = v1.placeholder(tf.as_dtype(value.dtype), value.shape)
            saved[name] = v1.Variable(fed, name=f"tensor_{index}", trainable=False)
            feeds[fed] = value
        saver = v1.train.Saver(saved, save_relative_paths=True)
        with v1.Session() as sess:
            sess.run([v.initializer for v in saved.values()], feeds)
            saver.save(sess, prefix, write_meta_graph=False, write_state=False)
    return prefix


def logits_classes(spec, shapes, where="checkpoint"):
    """Class count of the logits layer, from ``{name: shape}`` (or ``{name: array}``).

    The logits kernel is the one ``weights`` variable under the architecture's first
    logits scope: ``resnet_v1_50/logits/weights``, ``vgg_16/fc8/weights``, but
    ``InceptionV3/Logits/Conv2d_1c_1x1/weights``.
    """
    scope = spec.logits_scopes[0] + "/"
    kernels = [name for name in shapes if name.startswith(scope) and name.endswith("/weights")]
    if len(kernels) != 1:
        raise CheckpointError(
            f"{where} has {'no' if not kernels else len(kernels)} logits kernels under "
            f"{scope} ({', '.join(kernels) or 'is it a ' + spec.name + ' checkpoint?'}), so its "
            "class count is unknown: pass --num_classes")
    shape = shapes[kernels[0]]
    return int(shape[-1] if isinstance(shape, (list, tuple)) else shape.shape[-1])


def input_channels(shapes):
    """The channels of the images a checkpoint's network takes, from ``{name: shape}``
    (or ``{name: array}``): 1 when a convolution kernel (a 4-D ``.../weights``) has input
    depth 1, which only the first convolution of a network trained with research/slim's
    ``--use_grayscale`` has; else 3."""
    for name, shape in shapes.items():
        if not name.endswith("/weights"):
            continue
        shape = tuple(shape if isinstance(shape, (list, tuple)) else shape.shape)
        if len(shape) == 4 and shape[2] == 1:
            return 1
    return 3


def split_scopes(text):
    return [s.strip() for s in (text or "").split(",") if s.strip()]


def in_scopes(name, scopes):
    """Whether variable ``name`` starts with one of ``scopes``: research/slim's
    --checkpoint_exclude_scopes and --trainable_scopes are plain name prefixes, so
    ``InceptionV3/Mixed_7`` covers Mixed_7a, 7b and 7c (matching whole name parts only
    restored those layers without a word)."""
    return any(name.startswith(s) for s in scopes)


def trained(items, trainable_scopes, name_of):
    """The ``items`` (variables of either engine, named by ``name_of(item)`` as slim names
    them) that --trainable_scopes trains: all of them without scopes, else those under a
    scope, in scope order, each once; a scope matching none is a UsageError.  Both
    engines choose here, so they train the same variables from the same flag."""
    scopes = split_scopes(trainable_scopes)
    if not scopes:
        return list(items)
    chosen, seen = [], set()
    for scope in scopes:
        found = [item for item in items if in_scopes(name_of(item), [scope])]
        if not found:
            raise UsageError(f"--trainable_scopes: no trainable variable under {scope!r}; "
                             "scopes are variable-name prefixes such as resnet_v1_50/logits")
        # By identity: a Keras Weight compares by value (an array per element).
        chosen.extend(item for item in found if id(item) not in seen)
        seen.update(id(item) for item in found)
    return chosen


def aux_head_wanted(spec, where, held, exclude_scopes, ignore_missing_vars, log):
    """Whether a run warm-started from ``where`` gets the network's auxiliary head, for
    either engine.  research/slim always builds it; a starting point without one
    (``held`` False: a checkpoint saved with ``create_aux_logits=False``, a .keras
    converted without it) cannot fill it, so the run goes without it unless a new head is
    asked for: --checkpoint_exclude_scopes covering it, or --ignore_missing_vars (it then
    starts from its initial values, as in research/slim)."""
    if held:
        return True
    if ignore_missing_vars or in_scopes(spec.aux_scope, split_scopes(exclude_scopes)):
        log(f"{where} has no auxiliary head: training a new {spec.aux_scope} from its "
            "initial values")
        return True
    log(f"{where} has no auxiliary head ({spec.aux_scope}): training without it (add "
        f"{spec.aux_scope} to --checkpoint_exclude_scopes to train a new one)")
    return False


def variable_name(variable):
    """A graph variable's name without ``:0``; for a distributed variable, the name of
    its copies (its ``op`` can be the op that reads it)."""
    return variable.name.rsplit(":", 1)[0]


def plan_restore(variables, prefix, exclude_scopes=(), ignore_missing_vars=False,
                 logits_scopes=()):
    """Match graph ``variables`` to checkpoint ``prefix``; returns ``({ckpt name: variable}, missing)``.

    ``variables`` is a list (checkpoint names = variable names) or a dict
    ``{checkpoint name: variable}`` (for instance ExponentialMovingAverage shadows).

    Variables under ``exclude_scopes`` are left to their initialisers.  A variable
    missing from the checkpoint is an error unless ``ignore_missing_vars``; a shape
    mismatch is always an error, naming the variables and the scopes to exclude.
    """
    shapes = read_shapes(prefix)
    restore, missing, mismatched = {}, [], []
    pairs = (variables.items() if isinstance(variables, dict)
             else ((variable_name(v), v) for v in variables))
    for name, var in pairs:
        if in_scopes(name, exclude_scopes):
            continue
        if name not in shapes:
            missing.append(name)
            continue
        graph_shape = tuple(var.shape.as_list())
        if graph_shape != shapes[name]:
            mismatched.append(f"{name} {list(graph_shape)} vs checkpoint {list(shapes[name])}")
            continue
        restore[name] = var
    if mismatched:
        bad_scopes = sorted({m.split(" ")[0].rsplit("/", 1)[0] for m in mismatched})
        hint = ",".join(logits_scopes) if logits_scopes else ",".join(bad_scopes)
        raise CheckpointError(
            f"{len(mismatched)} variable(s) of the graph do not fit checkpoint {prefix}: "
            f"{'; '.join(mismatched[:6])}{' ...' if len(mismatched) > 6 else ''}. "
            f"To fine-tune on a new label set, pass --checkpoint_exclude_scopes={hint}")
    if missing and not ignore_missing_vars:
        raise CheckpointError(
            f"{len(missing)} variable(s) are not in checkpoint {prefix}: "
            f"{', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''}. Is it a checkpoint "
            "of this --model_name? Pass --ignore_missing_vars to keep their initial values, "
            "or --checkpoint_exclude_scopes to skip them")
    if not restore:
        raise CheckpointError(f"no variable of the graph is in checkpoint {prefix}: it belongs to "
                              "another architecture; check --model_name and --checkpoint_path")
    return restore, missing


_SHADOW = "/ExponentialMovingAverage"


def average_map(names):
    """``{variable name: shadow name}`` of the ExponentialMovingAverage shadows among
    checkpoint ``names`` whose variable is there too: what a slim graph restores from
    to compute with the averages."""
    names = set(names)
    return {n[: -len(_SHADOW)]: n for n in names
            if n.endswith(_SHADOW) and n[: -len(_SHADOW)] in names}


def averages_to_read(spec, names, requested=None):
    """Whether the slim graph and the Keras model take checkpoint ``names``'
    ExponentialMovingAverage shadows instead of the variables: the one decision every
    command follows.  Returns ``(use, sentence to print or None)``.

    ``requested`` True/False is the user's ``--[no]use_moving_averages``; ``None`` is the
    architecture's default: research/slim's published MobileNet v3 and EdgeTPU
    checkpoints are evaluated with their averages (``spec.published_averages``), so
    those use the shadows when the checkpoint holds them; every other architecture
    reads its variables.
    """
    if requested is not None:
        return requested, None
    if not (spec.published_averages and average_map(names)):
        return False, None
    return True, (f"{spec.name}: reading the checkpoint's ExponentialMovingAverage shadows "
                  "(research/slim evaluates these published checkpoints with them)")


def with_moving_averages(tensors):
    """Each variable replaced by its ExponentialMovingAverage shadow where it has one.

    Returns the new tensors and ``{variable name: shadow name}`` for the slim side.
    """
    shadows = average_map(tensors)
    if not shadows:
        raise CheckpointError("--use_moving_averages: the checkpoint holds no "
                              "ExponentialMovingAverage variables (train with "
                              "--moving_average_decay, or drop the flag)")
    swapped = dict(tensors)
    for name, shadow in shadows.items():
        swapped[name] = tensors[shadow]
    return swapped, shadows


def _exists(prefix):
    """Whether a checkpoint is at ``prefix``: V2 (``.index``) or V1 (the one file)."""
    return os.path.exists(prefix + ".index") or os.path.isfile(prefix)


def _state(train_dir):
    """``(latest, [every kept])`` paths of ``train_dir``'s state file as written (relative
    ones joined to the dir), or ``(None, [])`` without one."""
    import tensorflow as tf

    state = tf.train.get_checkpoint_state(train_dir)
    if state is None or not state.model_checkpoint_path:
        return None, []
    return state.model_checkpoint_path, list(state.all_model_checkpoint_paths)


def _here(train_dir, path):
    """``path`` as it is in ``train_dir``: itself where it exists, else the same file name
    in ``train_dir`` (a train dir copied from another machine keeps the absolute paths TF1's
    Saver wrote), else None."""
    if _exists(path):
        return path
    local = os.path.join(train_dir, os.path.basename(path))
    return local if _exists(local) else None


def latest_in(train_dir, log=_log):
    """The latest checkpoint of ``train_dir`` (None without one).  When its state file names
    paths that do not exist but the same file names are in ``train_dir``, those are taken,
    with one line saying so."""
    latest, _ = _state(train_dir)
    if latest is None:
        return None
    found = _here(train_dir, latest)
    if found is not None and found != latest:
        log(f"{os.path.join(train_dir, STATE_FILE)} names {latest}, which does not exist; "
            f"using {found}, the same file name in this directory (the train dir was moved)")
    return found


def relocate(train_dir, log=_log):
    """A train dir about to be trained on: if its state file names paths elsewhere (a
    moved dir), rewrite it with the paths relative to the dir, as slimtune's saves write
    them, so that TF's savers resume from it.  Returns the latest checkpoint (None: none)."""
    latest, kept = _state(train_dir)
    if latest is None or _exists(latest):
        return latest
    found = latest_in(train_dir, log)
    if found is not None:
        kept = [p for p in (_here(train_dir, k) for k in kept) if p is not None]
        write_state(train_dir, found, kept or [found])
    return found


def write_state(train_dir, latest, kept):
    """Write ``train_dir``'s state file naming ``latest`` and ``kept`` (paths in the dir)
    relative to it, atomically: a dir with relative paths can be moved or copied."""
    names = [os.path.basename(p) for p in kept]
    if os.path.basename(latest) not in names:
        names.append(os.path.basename(latest))
    text = f"model_checkpoint_path: \"{os.path.basename(latest)}\"\n" + "".join(
        f"all_model_checkpoint_paths: \"{name}\"\n" for name in names)
    files.write_text(os.path.join(train_dir, STATE_FILE), text)


def checkpoint_steps(train_dir):
    """The global steps of the checkpoints ``train_dir`` keeps (its ``checkpoint`` file),
    found where the state file says or, in a moved dir, by file name in the dir."""
    _, kept = _state(train_dir)
    return sorted(_step_of(path) for path in kept if _here(train_dir, path))


def _step_of(path):
    return int(path.rsplit("-", 1)[1])


def roll_back(train_dir, step):
    """Make ``train_dir`` resume from its checkpoint of ``step``: its ``checkpoint`` file
    lists no later one (their files stay until a later save replaces them)."""
    _, kept = _state(train_dir)
    kept = [path for path in kept if _step_of(path) <= step]
    write_state(train_dir, kept[-1], kept)
