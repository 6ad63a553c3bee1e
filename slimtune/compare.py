"""How far apart two models' outputs are on the same inputs, class by class.

:func:`difference` measures any two arrays of one shape (logits, end points): the
conversion's parity check, slimtune-verify's comparisons and layerwise table, the
doctor's repeat runs.  Differences are never sorted.
"""

import dataclasses

import numpy as np


@dataclasses.dataclass
class Difference:
    """How far ``candidate`` is from ``reference``, class by class (never sorted)."""

    max_abs: float
    max_rel: float  # max_abs / max(1, max |reference|)
    mean_abs: float
    top1_agreement: float
    count: int
    reference_max: float  # max |reference|: a zero difference of all-zero outputs proves nothing

    def line(self):
        return (f"max |ref| {self.reference_max:.3g}, max abs {self.max_abs:.3g}, max rel {self.max_rel:.3g}, mean abs "
                f"{self.mean_abs:.3g}, top-1 agreement {self.top1_agreement:.4f} "
                f"over {self.count} images")


def difference(reference, candidate):
    reference = np.asarray(reference, np.float64)
    candidate = np.asarray(candidate, np.float64)
    if reference.shape != candidate.shape:
        raise ValueError(f"shapes differ: reference {reference.shape}, "
                         f"candidate {candidate.shape}")
    diff = np.abs(reference - candidate)
    max_abs = float(diff.max()) if diff.size else 0.0
    reference_max = float(np.abs(reference).max()) if diff.size else 0.0
    scale = max(1.0, reference_max)
    if reference.ndim >= 2:
        top1 = float(np.mean(reference.reshape(len(reference), -1).argmax(-1)
                             == candidate.reshape(len(candidate), -1).argmax(-1)))
    else:
        top1 = 1.0
    return Difference(max_abs, max_abs / scale, float(diff.mean()) if diff.size else 0.0,
                      top1, len(reference), reference_max)
