"""The Keras model a run trains, and where its weights start.

:func:`training_model` builds the architecture's Keras mirror (``spec.build_keras``) and
swaps every ``BatchNormalization`` for :class:`~.batch_norm.SlimBatchNormalization`
(slim's fused training step, saved as Keras' own layer).  Freezing BatchNorm sets
``trainable = False`` on each BN layer (inference mode, no updates): never
``training=False`` inside the functional graph, which Keras 3 overrides from outside.

:func:`slim_names` names each Keras weight by its slim variable, read from the
architecture's port table, so research/slim's scope flags (--trainable_scopes,
--checkpoint_exclude_scopes) select Keras weights by the names users know.

:func:`warm_start` fills the model from a slim checkpoint or a ``.keras`` file, outside
--checkpoint_exclude_scopes; the checks and errors are the slim engine's
(:func:`slimtune.checkpoint.plan_restore`), so a checkpoint that does not fit fails
before any step with the same message.
"""

import dataclasses
import os

import numpy as np

from slimtune import bn_layers, checkpoint, sources
from slimtune.errors import CheckpointError
from slimtune.ports.porter import Porter


@dataclasses.dataclass
class Weight:
    """A Keras weight, the slim variable it stands for, and how a checkpoint tensor of
    that variable becomes the Keras value (``None``: as it is)."""

    variable: object
    slim_name: str
    transform: object = None

    def from_slim(self, value):
        value = np.asarray(value)
        return value if self.transform is None else self.transform(value)


class _Recorder(Porter):
    """A porter that only writes down which checkpoint name fills which Keras weight."""

    def __init__(self, model, root):
        super().__init__(model, {}, root)
        self.weights = []

    def port_weight(self, keras_var, source_key, transform=None):
        self.weights.append(Weight(keras_var, source_key, transform))


def slim_names(spec, model, include_aux_logits):
    """``[Weight]`` for every weight of ``model`` (a mirror of ``spec``), in table order."""
    recorder = _Recorder(model, spec.scope)
    aux = {"include_aux_logits": include_aux_logits} if spec.aux_logits else {}
    spec.port_fn(recorder, drop_background=False, **aux)
    named = {id(w.variable) for w in recorder.weights}
    unnamed = [w.path for w in model.weights if id(w) not in named]
    if unnamed:
        raise RuntimeError(f"internal: the {spec.name} port table names no slim variable for "
                           + ", ".join(unnamed[:5]))
    return recorder.weights


def training_model(spec, num_classes, bn, include_aux_logits, image_size, weight_decay,
                   freeze_batch_norm, sync_batch_norm=False, dropout_keep_prob=None,
                   channels=3, policy=None, drop_path_clock=None):
    """The mirror with slim's training BatchNorm, weight decay, dropout (the
    architecture's keep probability, or ``dropout_keep_prob``), frozen BN if asked;
    ``sync_batch_norm``: the trainable BatchNorm layers normalise with the statistics of
    the global batch (see :class:`~.batch_norm.SlimBatchNormalization`); ``channels``:
    the input's (1 for a grayscale run); ``policy``: a Keras dtype policy name for every
    layer (--mixed_precision, e.g. ``mixed_bfloat16``: float32 variables, half-precision
    arithmetic; None keeps the mirror's float32); ``drop_path_clock``: where the
    architecture drops paths (NASNet), the :class:`~.drop_path.Clock` its drop path layers
    read."""
    import keras

    from slimtune.keras_engine import drop_path
    from slimtune.keras_engine.batch_norm import SlimBatchNormalization

    hook = (drop_path.builder(drop_path_clock)
            if spec.drop_path_keep is not None and drop_path_clock is not None else None)
    mirror = spec.build_keras(num_classes, bn, include_aux_logits, image_size, weight_decay,
                              dropout_keep_prob, channels, drop_path=hook)

    def clone(layer):
        if isinstance(layer, drop_path.DropPath):
            return layer  # no weights; its clock is not in its config
        config = layer.get_config()
        if policy is not None:
            config["dtype"] = policy
        if type(layer) is keras.layers.BatchNormalization:
            return SlimBatchNormalization.from_config(config)
        return layer.__class__.from_config(config)

    model = keras.models.clone_model(mirror, clone_function=clone)
    model.trainable = True
    for layer in bn_layers.keras_layers(model):
        if freeze_batch_norm:
            layer.trainable = False
        elif sync_batch_norm:
            layer.sync_statistics = True
    return model


def trainable(weights, trainable_scopes):
    """The Weights training updates: trainable Keras variables, within --trainable_scopes
    (slim variable-name prefixes) when given, each scope matching at least one."""
    return checkpoint.trained([w for w in weights if w.variable.trainable], trainable_scopes,
                              lambda w: w.slim_name)


def mark_trained(weights, trained):
    """Set ``trainable = False`` on the Keras variables of ``weights`` outside
    ``trained`` (--trainable_scopes), so ``model.trainable_weights`` is exactly what the
    step updates, as users' Keras code and the doctor's ``check_train_step`` expect.

    Only the variables: their layers stay trainable, so a BatchNorm outside the scopes
    still normalises with batch statistics and updates its moving statistics in
    training, as slim's did (research/slim builds the whole network with
    ``is_training=True`` whatever --trainable_scopes says).
    """
    kept = {id(w.variable) for w in trained}
    for weight in weights:
        if weight.variable.trainable and id(weight.variable) not in kept:
            weight.variable.trainable = False


class _AsInCheckpoint:
    """A Keras weight seen by :func:`checkpoint.plan_restore`: its shape in the
    checkpoint's layout (a logits Dense kernel is a 1x1 conv there), so a weight that
    does not fit is reported as the slim engine reports its variable."""

    def __init__(self, weight, checkpoint_shape):
        import tensorflow as tf

        self.shape = tf.TensorShape(_slim_layout(weight, checkpoint_shape))


def _slim_layout(weight, checkpoint_shape):
    """The shape of ``weight`` in the layout of its checkpoint tensor (of
    ``checkpoint_shape``): that shape, with the dimensions where the ported tensor differs
    from the Keras weight set to the weight's (a 10-class Dense kernel [2048, 10] against a
    1x1-conv tensor [1, 1, 2048, 1001]: [1, 1, 2048, 10]); the Keras shape when that
    does not port to it."""
    shape = tuple(weight.variable.shape)
    if checkpoint_shape is None or weight.transform is None:
        return shape

    def ported(slim_shape):
        return tuple(weight.from_slim(np.zeros(slim_shape, np.float32)).shape)

    given = ported(checkpoint_shape)
    if len(given) != len(shape):
        return shape
    wanted = {have: want for have, want in zip(given, shape) if have != want}
    candidate = tuple(wanted.get(d, d) for d in checkpoint_shape)
    return candidate if ported(candidate) == shape else shape


def warm_start(cfg, spec, source, weights, log):
    """Fill ``weights`` from ``source`` (the start plan's warm start: a slim checkpoint
    prefix, or a converted ``.keras``); returns it."""
    if sources.kind_of(source) == sources.KERAS:
        return _from_keras_file(cfg, spec, source, weights, log)
    prefix = source
    shapes = checkpoint.read_shapes(prefix)
    by_name = {w.slim_name: w for w in weights}
    views = {name: _AsInCheckpoint(w, shapes.get(name)) for name, w in by_name.items()}
    restore, missing = checkpoint.plan_restore(
        views, prefix, checkpoint.split_scopes(cfg.checkpoint_exclude_scopes),
        cfg.ignore_missing_vars, spec.logits_scopes)
    tensors = checkpoint.read_tensors(prefix, list(restore))
    checkpoint.refuse_broken(prefix, names=list(restore), tensors=tensors)
    for name in restore:
        weight = by_name[name]
        weight.variable.assign(weight.from_slim(tensors[name]).astype(weight.variable.dtype))
    log(f"Fine-tuning from {prefix}: {len(restore)} variables"
        + (f", {len(missing)} missing kept at their initial values" if missing else ""))
    return prefix


def _from_keras_file(cfg, spec, path, weights, log):
    """A converted model's weights (``path``: the ``.keras`` file --checkpoint_path stands
    for) by Keras path (the mirror's layer names are the converter's), outside
    --checkpoint_exclude_scopes."""
    if not os.path.exists(path):
        raise CheckpointError(f"{path} does not exist: check --checkpoint_path")
    source = sources.load_keras(path, compile=False)
    values = {v.path.split("/", 1)[-1] if v.path.startswith(source.name + "/") else v.path: v
              for v in source.weights}
    excluded = checkpoint.split_scopes(cfg.checkpoint_exclude_scopes)
    restored, missing, mismatched = 0, [], []
    for weight in weights:
        if checkpoint.in_scopes(weight.slim_name, excluded):
            continue
        value = values.get(weight.variable.path)
        if value is None:
            missing.append(weight.variable.path)
        elif tuple(value.shape) != tuple(weight.variable.shape):
            mismatched.append(f"{weight.variable.path} {list(weight.variable.shape)} vs "
                              f"{list(value.shape)}")
        else:
            weight.variable.assign(value)
            restored += 1
    if mismatched:
        raise CheckpointError(
            f"{len(mismatched)} weight(s) do not fit {path}: "
            f"{'; '.join(mismatched[:6])}. To fine-tune on a new label set, pass "
            f"--checkpoint_exclude_scopes={','.join(spec.logits_scopes)}")
    if missing and not cfg.ignore_missing_vars:
        raise CheckpointError(
            f"{len(missing)} weight(s) are not in {path}: "
            f"{', '.join(missing[:6])}. Pass --ignore_missing_vars to keep their initial "
            "values, or --checkpoint_exclude_scopes to skip them")
    log(f"Fine-tuning from {path}: {restored} weights"
        + (f", {len(missing)} missing kept at their initial values" if missing else ""))
    return path


def with_dtype(model, policy="float32"):
    """A copy of ``model`` whose layers compute in ``policy`` (by default float32: what a
    mixed-precision run saves, so its ``model.keras`` serves and converts as a float32
    run's), holding the same weights."""
    import keras

    def clone(layer):
        return layer.__class__.from_config({**layer.get_config(), "dtype": policy})

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy
