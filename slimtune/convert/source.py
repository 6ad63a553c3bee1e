"""Open the checkpoint a conversion starts from: resolve it, read it, work out what it is.

Accepts anything ``checkpoint.resolve`` does: a prefix, a directory (its latest
checkpoint), a ``.tar.gz`` archive or a published checkpoint's manifest name (both
unpacked into the checkpoint cache by ``slimtune.published``).
"""

import contextlib
import dataclasses

from slimtune import checkpoint, metadata, registry
from slimtune.errors import CheckpointError, UsageError
from slimtune.ports.porter import is_training_state


@dataclasses.dataclass
class Source:
    prefix: str
    tensors: dict  # {checkpoint name: array}
    recorded: metadata.RunInfo  # what the checkpoint's slimtune.json says (empty if none)
    sha256: dict  # {file name: sha256} of the checkpoint files


@contextlib.contextmanager
def opened(path):
    """Yield a checkpoint prefix for ``path`` (see :func:`slimtune.checkpoint.resolve`:
    archives and manifest names are unpacked into the checkpoint cache, safely)."""
    yield checkpoint.resolve(path)


def read(prefix):
    """Every tensor of the checkpoint at ``prefix``; unreadable or truncated data fails here."""
    return Source(prefix, checkpoint.read_tensors(prefix), metadata.recorded(prefix),
                  checkpoint.file_hashes(prefix))


def detect_model(tensors, model_name=None):
    """The registry spec of the network in ``tensors``; ``model_name`` is checked, not trusted.

    Every registered network has its own root scope (``resnet_v1_50``, ``InceptionV3``),
    so the roots of the model variables name the architecture.
    """
    roots = sorted({n.split("/", 1)[0] for n in tensors if "/" in n and not is_training_state(n)})
    found = [n for n in registry.names()
             if registry.get(n).scope in roots and _fingerprint_matches(registry.get(n), tensors)]
    if model_name:
        spec = registry.get(model_name)
        if spec.scope not in roots:
            raise CheckpointError(
                f"checkpoint is not a {model_name}: it has no variables under {spec.scope}/ "
                f"(its root scopes: {', '.join(roots) or 'none'}); "
                + (f"use --model_name={found[0]}" if len(found) == 1
                   else "check --checkpoint_path and --model_name"))
        return spec
    if len(found) == 1:
        return registry.get(found[0])
    if not found:
        raise UsageError(f"cannot tell the architecture: the checkpoint's root scopes "
                         f"({', '.join(roots) or 'none'}) match no registered model; pass "
                         f"--model_name (one of {', '.join(registry.names())})")
    raise UsageError(f"the checkpoint holds several networks ({', '.join(found)}); pass "
                     "--model_name to choose one")


def _fingerprint_matches(spec, tensors):
    """False when ``spec`` shares its root scope with others and the checkpoint's
    distinguishing variable has another size (a MobileNet of another width)."""
    if not spec.fingerprint:
        return True
    name, size = spec.fingerprint
    value = tensors.get(f"{spec.scope}/{name}")
    return value is None or tuple(getattr(value, "shape", value))[-1] == size


def with_moving_averages(tensors):
    """Each variable replaced by its ExponentialMovingAverage shadow where it has one.

    Returns the new tensors and ``{variable name: shadow name}`` for the slim side.
    """
    suffix = "/ExponentialMovingAverage"
    shadows = {n[: -len(suffix)]: n for n in tensors if n.endswith(suffix)}
    if not shadows:
        raise CheckpointError("--use_moving_averages: the checkpoint holds no "
                              "ExponentialMovingAverage variables (train with "
                              "--moving_average_decay, or drop the flag)")
    swapped = dict(tensors)
    for name, shadow in shadows.items():
        if name in swapped:
            swapped[name] = tensors[shadow]
    return swapped, {name: shadow for name, shadow in shadows.items() if name in tensors}
