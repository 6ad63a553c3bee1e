"""Values no working network holds: a checkpoint refused from its tensors alone.

Run before any graph, by every command that reads a slim checkpoint (convert, eval,
export, verify, recalibrate, the doctor, both engines' warm start).  A graph cannot be
trusted to show these: TensorFlow's grappler fuses Conv2D + FusedBatchNorm + Relu into
one oneDNN kernel whose ReLU turns NaN into 0, so a checkpoint with a negative moving
variance computes finite garbage in a TF1 session and NaN in Keras.

What is refused, tensor by tensor (by its role, read from the last part of its name):

* a NaN or inf in any weight or statistic;
* a BatchNorm ``moving_variance`` below zero (no square root: NaN through the layer);
* a magnitude whose products overflow float32 (3.4e38).  The rule takes ``BOUND`` = 1e8
  both for what a layer can be fed (an activation) and for what a layer can multiply by
  (its gain): a kernel (``weights``) is refused when ``max |w| * fan-in * BOUND`` exceeds
  float32's max, i.e. when its gain ``max |w| * fan-in`` passes 3.4e30; an activation-scale
  value (``biases``, ``beta``, ``gamma``, ``moving_mean``) when ``|v| * BOUND`` does,
  i.e. past 3.4e30 too.  (A large variance only divides: its square root is at most
  1.8e19 in float32, so it is judged for its sign alone.)  It cannot fire
  on a sane network: images come in as [-1, 1] or [0, 255], BatchNorm brings every layer
  back to unit scale, and a trained network's gains and activations stay below 1e4 (the
  largest gain over random checkpoints of every registered architecture is measured in
  tests/test_broken_checkpoints.py); 1e8 leaves four orders of magnitude of room, and
  the threshold 3.4e30 is 26 orders above.  A tensor that passes can still overflow in
  combination with others (two layers of 1e20): the probe that runs the graph
  (``slimtune.probe``, with the fusion off) names those.

A BatchNorm moving mean is an average of the layer's inputs, an activation: -3e38 is no
value a network fed images computes, and subtracting it gives float32's limit, which the
next layer's sum overflows.  The warm start refuses it too: the moving statistics it
restores start the run's averages (with decay 0.997, 99% of -3e38 after 3 steps) and are
what an eval of an early checkpoint normalises with.

Optimizer slots (``Momentum``, ``Adam``...) and ExponentialMovingAverage shadows are not
read by inference and are not judged, unless a command uses the shadows
(``averages=True``).
"""

import collections

import numpy as np

from slimtune.errors import BrokenCheckpoint

FLOAT32_MAX = float(np.finfo(np.float32).max)
BOUND = 1e8  # a generous bound on a sane network's activations and on its layers' gains
LIMIT = FLOAT32_MAX / BOUND  # 3.4e30: the largest gain or activation-scale value allowed
AVERAGE = "ExponentialMovingAverage"

KERNEL, OFFSET, VARIANCE = "kernel", "offset", "variance"
_ROLES = {"weights": KERNEL, "depthwise_weights": KERNEL, "pointwise_weights": KERNEL,
          "kernel": KERNEL, "biases": OFFSET, "bias": OFFSET, "beta": OFFSET,
          "gamma": OFFSET, "moving_mean": OFFSET, "moving_variance": VARIANCE}

RESTORE = "restore an earlier checkpoint of the run"
RECALIBRATE = ("re-estimate the statistics with slimtune-recalibrate or restore an earlier "
               "checkpoint")
RETRAIN = (f"{RESTORE}, or retrain with a lower --learning_rate or with "
           "--clip_gradient_norm")


def role(name, averages=False):
    """What tensor ``name`` is to inference: KERNEL, OFFSET, VARIANCE, or ``None`` (not
    read by inference: an optimizer slot, the global step, an average shadow unless
    ``averages``)."""
    parts = name.split("/")
    if parts[-1] == AVERAGE:
        if not averages or len(parts) < 2:
            return None
        parts = parts[:-1]
    return _ROLES.get(parts[-1])


def checked_names(names, averages=False):
    """The names among ``names`` that :func:`refuse` judges."""
    return [name for name in names if role(name, averages)]


def _short(value):
    text = f"{value:.2g}"
    return text.replace("e+0", "e").replace("e+", "e").replace("e-0", "e-")


def _at(value, flat):
    """Where flat index ``flat`` of ``value`` is, in words: a channel or an index."""
    if value.ndim <= 1:
        return f"channel {flat}" if value.ndim else "its one value"
    index = np.unravel_index(flat, value.shape)
    return f"index {tuple(int(i) for i in index)} of shape {list(value.shape)}"


def _fan_in(name, value):
    """How many inputs one output of kernel ``value`` sums: a depthwise kernel
    ``[h, w, in, multiplier]`` reads h * w of them, any other ``[..., in, out]`` all but
    the last dimension."""
    if value.ndim <= 1:
        return 1
    if name.split("/")[-1] == "depthwise_weights" and value.ndim == 4:
        return int(np.prod(value.shape[:2]))
    return int(np.prod(value.shape[:-1]))


def _is_statistic(name):
    return name.split("/")[-1] in ("moving_mean", "moving_variance") or (
        name.endswith("/" + AVERAGE) and "/moving_" in name)


class Problem(collections.namedtuple("Problem", "tensor seen means fix")):
    """What is wrong with one tensor: what was seen, what it means, what to do."""

    def sentence(self, where):
        """The error's one line, for checkpoint ``where``."""
        return f"{self.seen}: {self.means}; checkpoint {where} is broken: {self.fix}"


def problem(name, value, averages=False):
    """Why tensor ``name`` holding ``value`` is no working network's (a :class:`Problem`);
    ``None`` when it passes (or is not judged)."""
    kind = role(name, averages)
    value = np.asarray(value)
    if kind is None or value.dtype.kind != "f" or not value.size:
        return None
    fix = RECALIBRATE if _is_statistic(name) else RETRAIN
    bad = ~np.isfinite(value)
    if bad.any():
        flat = int(np.flatnonzero(bad)[0])
        return Problem(name, f"{name} holds {value.flat[flat]} ({_at(value, flat)}; "
                       f"{int(bad.sum())} of {value.size} values not finite)",
                       "every output computed through it is NaN or inf", fix)
    if kind == VARIANCE and value.min() < 0:
        flat = int(np.argmin(value))
        return Problem(name, f"{name} holds {_short(float(value.flat[flat]))} "
                       f"({_at(value, flat)})", "a variance below zero has no square root, "
                       "so every output computed through this BatchNorm is NaN", fix)
    return _overflow(name, kind, value, fix)


def scale(name, value, averages=False):
    """What the magnitude rule compares with ``LIMIT`` for tensor ``name``: a kernel's
    gain (``max |w| * fan-in``), an activation-scale value's largest magnitude (a
    variance's square root); ``None`` when the tensor is not judged or not finite."""
    kind = role(name, averages)
    value = np.asarray(value)
    if kind is None or value.dtype.kind != "f" or not value.size:
        return None
    largest = float(np.abs(value.astype(np.float64)).max())
    if not np.isfinite(largest):
        return None
    if kind == KERNEL:
        return largest * _fan_in(name, value)
    return float(np.sqrt(max(largest, 0.0))) if kind == VARIANCE else largest


def _overflow(name, kind, value, fix):
    """:func:`problem`'s magnitude rule (see the module's docstring)."""
    measured = scale(name, value)
    if measured is None or measured <= LIMIT:
        return None
    flat = int(np.argmax(np.abs(value.astype(np.float64))))
    seen = f"{name} holds {_short(float(value.flat[flat]))} ({_at(value, flat)})"
    if kind == KERNEL:
        return Problem(name, f"{seen} over a fan-in of {_fan_in(name, value)}",
                       f"a gain of {_short(measured)}, so any input above "
                       f"{_short(FLOAT32_MAX / measured)} overflows float32 to inf and NaN "
                       f"follows (no working network has a gain above {_short(LIMIT)})", fix)
    what = "a standard deviation of " + _short(measured) if kind == VARIANCE else "a value"
    return Problem(name, seen, f"{what} that large is no activation of a network fed "
                   f"images, and any layer gain above {_short(FLOAT32_MAX / measured)} makes "
                   "it overflow float32 to inf and NaN", fix)


def refuse(tensors, where, averages=False):
    """Raise :class:`BrokenCheckpoint` (one line, naming the first bad tensor, its value
    and what it means; ``where``, the checkpoint, after it) when a tensor of ``tensors``
    (``{name: array}`` or ``(name, array)`` pairs, read one at a time) fails
    :func:`problem`.  Returns how many tensors were judged."""
    pairs = tensors.items() if isinstance(tensors, dict) else tensors
    judged = 0
    for name, value in pairs:
        found = problem(name, value, averages)
        judged += role(name, averages) is not None
        if found:
            error = BrokenCheckpoint(found.sentence(where))
            error.problem = found
            raise error
    return judged
