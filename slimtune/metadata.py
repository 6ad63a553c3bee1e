"""What a run is (:class:`RunInfo`), and the JSON file slimtune writes beside checkpoints.

Later tools read ``slimtune.json`` so a user need not repeat what training already knew:
the architecture, class count and labels, the BatchNorm parameters actually used (a
fine-tune with a non-default epsilon must be converted with that epsilon), the
preprocessing and image size.

Every command answers "what run is this?" with :func:`resolve`: a flag given explicitly
wins over what ``slimtune.json`` recorded, which wins over the architecture's defaults
in the registry.  This module is the only one that knows the file's keys: commands
read a :class:`RunInfo` (:func:`recorded`) and write the documents built below
(:func:`training_document` and its siblings).
"""

import dataclasses
import datetime
import json
import os
from typing import Mapping, Optional

from slimtune import files, registry
from slimtune.data.preprocessing import canonical as canonical_preprocessing
from slimtune.errors import UsageError
from slimtune.nets.batch_norm import BatchNormConfig

FILENAME = "slimtune.json"
TRAIN_FORMAT = "slimtune.train/1"
KERAS_FORMAT = "slimtune.keras/1"
EXPORT_FORMAT = "slimtune.export/1"
KERAS_FILE = "model.keras"  # the Keras model in a directory slimtune writes
RECALIBRATIONS = "batch_norm_recalibrations"  # the records of re-estimated statistics
SLIM_ENGINE = "slim"  # tf.compat.v1 graph training (slim_engine)
KERAS_ENGINE = "keras"  # the Keras 3 mirror trained with slim's semantics (keras_engine)
ENGINES = (SLIM_ENGINE, KERAS_ENGINE)


def path_for(directory):
    return os.path.join(directory, FILENAME)


def write(directory, data):
    """Write ``slimtune.json`` in ``directory`` atomically."""
    return files.write_json(path_for(directory), data, indent=2, sort_keys=True, end="\n")


def locate(directory):
    """The ``slimtune.json`` path of ``directory`` (a checkpoint dir or prefix)."""
    if directory and not os.path.isdir(directory):
        directory = os.path.dirname(directory)
    return path_for(directory or ".")


def read(directory):
    """The metadata dict of ``directory`` (a checkpoint dir or prefix), or ``{}``."""
    path = locate(directory)
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


@dataclasses.dataclass(frozen=True)
class Dataset:
    """The data a training run read."""

    name: Optional[str] = None
    dir: Optional[str] = None
    split: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class Serving:
    """The named nodes of an exported graph (``slimtune-export``'s sidecar)."""

    input_node: Optional[str] = None
    output_nodes: Optional[tuple] = None
    input_shape: Optional[tuple] = None  # (batch, height, width, 3); None: dynamic


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """What a run is.  ``None`` means "not said": a RunInfo of flags holds what was asked
    for explicitly, one from :func:`recorded` what a file says (a BatchNorm field a
    hand-written file leaves out is None too), one from :func:`resolve` the answer.

    ``labels`` maps a class index (after ``labels_offset``) to its name.  A resolved
    ``batch_norm`` is None for a network without BatchNorm.  ``document`` is the file
    as read, kept so that writing a derived file loses nothing (:func:`completed`).
    """

    model_name: Optional[str] = None
    num_classes: Optional[int] = None
    labels: Optional[Mapping[int, str]] = None
    labels_offset: Optional[int] = None
    batch_norm: Optional[BatchNormConfig] = None
    image_size: Optional[int] = None
    preprocessing: Optional[str] = None
    # research/slim's --use_grayscale: images converted to one channel (the network's
    # input has 1 channel).  Resolved: a bool.
    grayscale: Optional[bool] = None
    engine: Optional[str] = None
    dataset: Optional[Dataset] = None  # the data a training run read
    warm_start: Optional[str] = None  # the checkpoint a training run started from
    serving: Optional[Serving] = None  # the nodes of an exported graph
    # The files of a converted model or a Keras-engine run: {role ("keras", ...): name}.
    files: Optional[Mapping[str, str]] = None
    # Whether the model (a converted .keras, a Keras-engine run) has the auxiliary head.
    include_aux_logits: Optional[bool] = None
    # Records of re-estimated BatchNorm statistics (:func:`recalibration_record`).
    recalibrations: tuple = ()
    document: Mapping = dataclasses.field(default_factory=dict, compare=False, repr=False)

    @property
    def spec(self):
        """The registry entry of ``model_name``."""
        return registry.get(self.model_name)

    @property
    def channels(self):
        """The network input's channels: 1 for a grayscale run, else 3."""
        return 1 if self.grayscale else 3

    def as_dict(self):
        """The run's own fields as ``slimtune.json`` spells them."""
        out = {
            "model_name": self.model_name,
            "num_classes": self.num_classes,
            "labels": (None if self.labels is None else
                       {str(k): v for k, v in sorted(self.labels.items())}),
            "labels_offset": self.labels_offset,
            "batch_norm": self.batch_norm.as_dict() if self.batch_norm else None,
            "image_size": self.image_size,
            "preprocessing": self.preprocessing,
        }
        if self.grayscale:  # RGB runs' files stay as they were before the field
            out["grayscale"] = True
        if self.engine not in (None, SLIM_ENGINE):
            # Files of slim runs stay as they were before there was a second engine.
            out["engine"] = self.engine
        return out


def batch_norm_flags(decay=None, epsilon=None, scale=None, mode=None):
    """What BatchNorm flags ask for, as the ``batch_norm`` of a RunInfo of flags (None
    when no flag says anything)."""
    if decay is None and epsilon is None and scale is None and mode is None:
        return None
    return BatchNormConfig(decay, epsilon, scale, mode)


def from_dict(document):
    """The RunInfo a ``slimtune.json`` dict records (``{}``: an empty RunInfo)."""
    get = document.get
    bn, dataset, labels = get("batch_norm"), get("dataset"), get("labels")
    exported = {"input_node", "output_nodes", "input_shape"} & document.keys()
    return RunInfo(
        model_name=get("model_name"),
        num_classes=get("num_classes"),
        labels=None if labels is None else {int(k): v for k, v in labels.items()},
        labels_offset=get("labels_offset"),
        batch_norm=(BatchNormConfig(bn.get("decay"), bn.get("epsilon"), bn.get("scale"),
                                    bn.get("mode")) if bn else None),
        image_size=get("image_size"),
        preprocessing=get("preprocessing"),
        grayscale=get("grayscale"),
        engine=get("engine"),
        dataset=(Dataset(dataset.get("name"), dataset.get("dir"), dataset.get("split"))
                 if dataset else None),
        warm_start=get("checkpoint_path"),
        serving=(Serving(get("input_node"), _tuple(get("output_nodes")),
                         _tuple(get("input_shape"))) if exported else None),
        files=get("files"),
        include_aux_logits=get("include_aux_logits"),
        recalibrations=tuple(get(RECALIBRATIONS) or ()),
        document=document)


def _tuple(value):
    return None if value is None else tuple(value)


def recorded(directory):
    """What the ``slimtune.json`` of ``directory`` (a checkpoint dir or prefix) records;
    an empty RunInfo when there is none.  A file that cannot be read is a UsageError."""
    try:
        return from_dict(read(directory))
    except (ValueError, TypeError, AttributeError) as e:
        raise UsageError(f"{locate(directory)} is not a valid {FILENAME} ({e}): fix it or "
                         "delete it") from None


def recorded_beside(path):
    """What the JSON slimtune wrote beside a model form records: a frozen graph's
    ``<file>.json``, the ``slimtune.json`` inside a directory (a SavedModel) or beside a
    file; an empty RunInfo when there is none."""
    for candidate in (path + ".json", os.path.join(path, FILENAME)):
        if os.path.isfile(candidate):
            try:
                with open(candidate, encoding="utf-8") as f:
                    return from_dict(json.load(f))
            except (ValueError, TypeError, AttributeError) as e:
                raise UsageError(f"{candidate} is not a valid slimtune sidecar ({e}): fix it "
                                 "or delete it") from None
    return recorded(path) if os.path.exists(path) else RunInfo()


def _first(*values):
    return next((v for v in values if v is not None), None)


def resolve(flags=RunInfo(), on_file=RunInfo(), *, identify=None,
            size_flag="--image_size", mode_flag="the BatchNorm mode flag"):
    """The run: ``flags`` (what was asked for explicitly) over ``on_file`` (what
    ``slimtune.json`` says, see :func:`recorded`) over the registry's defaults for the architecture.

    ``identify(model_name or None)`` returns the registry entry (default: the entry of
    the name; no name is a UsageError); one that returns None (a Keras model that is no
    registry architecture) leaves the registry's defaults out.  A model name that
    contradicts the file, an image size below the architecture's minimum (named as
    ``size_flag``) and BatchNorm flags (``mode_flag`` names the mode's) for a network
    without BatchNorm are UsageErrors.  What neither flags nor file say and the registry
    cannot know (the class count, the labels) stays None for the command to find.
    """
    asked, found = flags, on_file
    spec = (identify or _registered)(_model_name(asked.model_name, found.model_name))
    size = _first(asked.image_size, found.image_size, spec and spec.default_image_size)
    if spec and size < spec.min_image_size:
        raise UsageError(f"{size_flag}={size} is too small for {spec.name}: use at least "
                         f"{spec.min_image_size}")
    return RunInfo(
        model_name=spec.name if spec else _first(asked.model_name, found.model_name),
        num_classes=_first(asked.num_classes, found.num_classes),
        labels=_first(asked.labels, found.labels),
        labels_offset=_first(asked.labels_offset, found.labels_offset, 0),
        batch_norm=_batch_norm(spec, asked.batch_norm, found.batch_norm, mode_flag),
        image_size=size,
        preprocessing=canonical_preprocessing(_first(asked.preprocessing, found.preprocessing,
                                                     spec and spec.preprocessing)),
        grayscale=bool(_first(asked.grayscale, found.grayscale, False)),
        engine=_first(asked.engine, found.engine, SLIM_ENGINE),
        dataset=_dataset(asked.dataset, found.dataset),
        warm_start=_first(asked.warm_start, found.warm_start),
        serving=_first(asked.serving, found.serving),
        files=_first(asked.files, found.files),
        include_aux_logits=_first(asked.include_aux_logits, found.include_aux_logits),
        recalibrations=found.recalibrations,
        document=found.document)


def _model_name(asked, found):
    if asked and found and asked != found:
        raise UsageError(f"--model_name={asked} but the checkpoint was trained as {found} "
                         f"({FILENAME}): drop the flag or fix it")
    return asked or found


def _registered(name):
    if not name:
        raise UsageError(f"no --model_name given and no {FILENAME} beside the checkpoint "
                         f"names the architecture: pass --model_name (one of "
                         f"{', '.join(registry.names())})")
    return registry.get(name)


def _batch_norm(spec, asked, found, mode_flag):
    """Architecture defaults < the file's decay, epsilon and scale < flags.  The file's
    mode is left out: it says how training treated BatchNorm, while how this command
    builds it is the flags' choice (else the architecture's, follow)."""
    if spec is not None and spec.batch_norm is None:
        given = [flag for flag, value in _batch_norm_flag_values(asked, mode_flag)
                 if value is not None]
        if given:
            raise UsageError(f"{spec.name} has no BatchNorm layers: drop {' and '.join(given)}")
        return None
    if asked is not None:
        if asked.decay is not None and not 0.0 <= asked.decay < 1.0:
            raise UsageError(f"--batch_norm_decay={asked.decay} must be in [0, 1): 0.9-0.99 "
                             "suits small datasets, 0.997-0.9997 large ones")
        if asked.epsilon is not None and asked.epsilon <= 0:
            raise UsageError(f"--batch_norm_epsilon={asked.epsilon} must be positive")
    bn = found if spec is None else spec.batch_norm
    if spec is not None and found is not None:
        bn = bn.replace(decay=found.decay, epsilon=found.epsilon, scale=found.scale)
    if asked is not None:
        bn = asked if bn is None else bn.replace(**dataclasses.asdict(asked))
    return bn


def _batch_norm_flag_values(asked, mode_flag):
    asked = asked or BatchNormConfig(None, None, None, None)
    return (("--batch_norm_decay", asked.decay), ("--batch_norm_epsilon", asked.epsilon),
            ("--batch_norm_scale", asked.scale), (mode_flag, asked.mode))


def _dataset(asked, found):
    """The flags' dataset; the directory and split of the recorded one only when the
    flags name the same dataset (or none)."""
    if asked is None or found is None:
        return asked or found
    name = asked.name or found.name
    same = name == found.name
    return Dataset(name, asked.dir or (found.dir if same else None),
                   asked.split or (found.split if same else None))


def training_document(run, *, weight_decay, moving_average_decay, exclude_scopes, seed,
                      deterministic, mixed_precision="float32", files=None, start=None):
    """``slimtune.json`` of a training run's directory: the run, whether its network has
    the auxiliary head, where it started (``start``, the start plan's record: see
    :mod:`slimtune.start_plan`), the number format it computed in (``mixed_precision``,
    :mod:`slimtune.precision`); a Keras-engine run also names its ``files``
    (``{role: name}``)."""
    out = {
        "format": TRAIN_FORMAT,
        **run.as_dict(),
        "weight_decay": weight_decay,
        "moving_average_decay": moving_average_decay,
        "dataset": {"name": run.dataset.name, "dir": run.dataset.dir,
                    "split": run.dataset.split},
        "checkpoint_path": run.warm_start,
        "checkpoint_exclude_scopes": list(exclude_scopes),
        "seed": seed,
        "deterministic": deterministic,
    }
    if mixed_precision != "float32":  # a float32 run's file stays as it was
        out["mixed_precision"] = mixed_precision
    if run.include_aux_logits is not None:
        out["include_aux_logits"] = bool(run.include_aux_logits)
    if start is not None:
        out["start"] = start
    if run.engine == KERAS_ENGINE:
        out.update(files=dict(files or {}))
    return out


def conversion_document(run, *, source_checkpoint, source_prefix, source_sha256,
                        drop_background, input_size_fixed, use_moving_averages,
                        include_aux_logits, parity, files):
    """``slimtune.json`` beside a converted Keras model."""
    return {
        "format": KERAS_FORMAT,
        **run.as_dict(),
        "source_checkpoint": source_checkpoint,
        "source_prefix": source_prefix,
        "source_sha256": source_sha256,
        "drop_background": drop_background,
        "input_size_fixed": input_size_fixed,
        "use_moving_averages": use_moving_averages,
        "include_aux_logits": include_aux_logits,
        "parity": parity,
        "files": dict(files),
    }


def export_document(run, *, checkpoint, serving):
    """The sidecar of an exported graph (``<file>.pb.json``, a SavedModel's
    ``slimtune.json``): the run without its image size, which the input shape holds."""
    out = {"format": EXPORT_FORMAT, **run.as_dict(), "checkpoint": checkpoint,
           "input_node": serving.input_node, "output_nodes": list(serving.output_nodes),
           "input_shape": list(serving.input_shape)}
    del out["image_size"]
    return out


def published_document(run, name):
    """``slimtune.json`` of a published checkpoint unpacked into the cache: what its
    manifest entry says."""
    return {"model_name": run.model_name, "num_classes": run.num_classes,
            "image_size": run.image_size, "preprocessing": run.preprocessing,
            "published_checkpoint": name}


# What a file derived from another (a recalibrated checkpoint or .keras) gets from the
# resolved run when the source's file does not say it: what later tools need.
_COMPLETED = ("model_name", "num_classes", "image_size", "preprocessing", "grayscale",
              "batch_norm")


def completed(found, run, files=None):
    """The document of ``found`` (a RunInfo read from a file), with what it leaves out
    of the resolved ``run``'s architecture, class count, size, preprocessing and
    BatchNorm filled in, and ``files`` (``{role: file name}``) replaced if given."""
    out = dict(found.document)
    for key, value in run.as_dict().items():
        if key in _COMPLETED and value is not None:
            out.setdefault(key, value)
    if files is not None:
        out["files"] = dict(files)
    return out


def recalibration_record(checkpoint_name, source, split, num_batches, batch_size, images,
                         preprocessing, augment, image_size, layers, left_alone=(),
                         note=None):
    """The record that says a checkpoint's (or ``.keras``'s) BatchNorm statistics were
    re-estimated: from what, on which data, how."""
    entry = {
        "checkpoint": checkpoint_name,
        "source": source,
        "dataset": {"name": split.dataset_name, "dir": split.dataset_dir,
                    "split": split.split},
        "num_batches": num_batches,
        "batch_size": batch_size,
        "images": images,
        "preprocessing": preprocessing,
        "preprocessing_mode": "training" if augment else "evaluation",
        "image_size": image_size,
        "layers": layers,
        "left_alone": list(left_alone),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if note:
        entry["note"] = note
    return entry


def with_recalibration(document, entry):
    """A copy of ``document`` (a slimtune.json dict) with ``entry`` added to its records."""
    out = dict(document or {})
    out[RECALIBRATIONS] = list(out.get(RECALIBRATIONS) or []) + [entry]
    return out


def recalibration_of(run, path):
    """The record of the recalibration that wrote ``path`` (its base name), or None."""
    name = os.path.basename(path)
    found = [r for r in (run.recalibrations if run else ()) if r.get("checkpoint") == name]
    return found[-1] if found else None
