"""What a model path is, decided in one place, and a Keras model loaded in one place.

Every command takes a path to a model: a slim checkpoint (a prefix, a V1 ``.ckpt``
file, a train dir, an archive or a manifest name: :func:`checkpoint_prefix` finds the
prefix), a ``.keras`` file (or a directory whose slimtune.json names one: a
Keras-engine train dir, slimtune-convert's output), a frozen GraphDef ``.pb`` or a
SavedModel directory.  :func:`kind_of` says which, :func:`keras_path` finds the
``.keras`` file a path stands for, and :func:`load_keras` loads it with the errors a
person can act on.  Commands ask here instead of looking at suffixes themselves.
"""

import os

from slimtune import checkpoint, metadata, published
from slimtune.errors import CheckpointError, UnusableInput
from slimtune.progress import log as _log

SLIM, KERAS, FROZEN, SAVED_MODEL = "slim checkpoint", "keras", "frozen graph", "SavedModel"


def keras_path(path):
    """The ``.keras`` file ``path`` stands for: the file itself, or the one a directory's
    slimtune.json names (a Keras-engine train dir, slimtune-convert's output); else None
    (a slim checkpoint, a graph)."""
    if not path:
        return None
    if path.endswith(".keras"):
        return path
    if not os.path.isdir(path):
        return None
    recorded = metadata.recorded(path)
    name = (recorded.files or {}).get("keras") or metadata.KERAS_FILE
    if (recorded.engine == metadata.KERAS_ENGINE or recorded.files
            or os.path.isfile(os.path.join(path, name))):
        return os.path.join(path, name)
    return None


def kind_of(path):
    """Which form ``path`` is: :data:`KERAS`, :data:`FROZEN`, :data:`SAVED_MODEL`, or
    :data:`SLIM` for anything else (the checkpoint resolver says whether it is one)."""
    if keras_path(path):
        return KERAS
    if path.endswith(".pb") and os.path.isfile(path):
        return FROZEN
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "saved_model.pb")):
        return SAVED_MODEL
    return SLIM


def load_keras(path, compile=True):
    """A saved Keras model, in safe mode; a missing file, or a ``.keras`` file that is not
    the zip archive Keras writes (Keras itself then says "File not found"), is
    :class:`UnusableInput`."""
    import zipfile

    import keras

    if not os.path.isfile(path):
        raise UnusableInput(f"Keras file {path} does not exist")
    if path.endswith(".keras") and not zipfile.is_zipfile(path):
        raise UnusableInput(f"{path} is not a valid .keras archive (not a zip file): it is "
                            "truncated or another format; save it again with model.save() "
                            "or convert the checkpoint again with slimtune-convert")
    try:
        return keras.models.load_model(path, compile=compile, safe_mode=True)
    except Exception as e:
        raise UnusableInput(f"cannot load Keras model {path}: {str(e).splitlines()[0]}; pass a "
                            ".keras file written by model.save or slimtune-convert") from None


def checkpoint_prefix(path, log=_log):
    """A checkpoint prefix from a prefix, a ``.index``/``.data`` file, a directory (latest),
    a checkpoint archive (``.tar.gz``) or a published checkpoint's manifest name (see
    :mod:`slimtune.published`); a train dir moved from another machine is found by file
    name (:func:`slimtune.checkpoint.latest_in`)."""
    if not path:
        raise CheckpointError("no checkpoint given: pass --checkpoint_path")
    path = published.local(path)
    if os.path.isdir(path):
        latest = checkpoint.latest_in(path, log)
        if latest is None:
            raise CheckpointError(f"no checkpoint in directory {path}: point --checkpoint_path "
                                  "at a checkpoint prefix or a train_dir that holds one")
        return latest
    for suffix in (".index", ".meta"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
    if ".data-" in os.path.basename(path):
        path = path[: path.rindex(".data-")]
    if not (os.path.exists(path + ".index") or os.path.exists(path)):
        raise CheckpointError(f"checkpoint {path} does not exist: check --checkpoint_path "
                              "(a prefix such as model.ckpt-1000, a .ckpt file, or a directory)")
    return path
