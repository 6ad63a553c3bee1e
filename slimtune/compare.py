"""How far apart two models' outputs are on the same inputs, class by class.

:func:`difference` measures any two arrays of one shape (logits, end points): the
conversion's parity check, slimtune-verify's layerwise table, the doctor's repeat runs.
:func:`compare` reports two logit arrays ``[N, C]`` as slimtune-verify prints them.
Differences are never sorted, and a candidate whose classes are shifted by one against
the reference (1001 with background versus 1000 without) is named as a class
misalignment rather than reported as noise.
"""

import dataclasses
from typing import Optional

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
    median_abs: float = 0.0  # a few outliers or a drift everywhere: the median tells

    @property
    def median_rel(self):
        """``median_abs`` on the scale of ``max_rel``."""
        return self.median_abs / max(1.0, self.reference_max)

    def line(self):
        return (f"max |ref| {self.reference_max:.3g}, max abs {self.max_abs:.3g}, max rel "
                f"{self.max_rel:.3g}, median rel {self.median_rel:.3g}, mean abs "
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
                      top1, len(reference), reference_max,
                      float(np.median(diff)) if diff.size else 0.0)


def near_ties(reference, max_abs):
    """How many rows of ``reference`` logits ``[N, C]`` have their two best classes
    within ``2 * max_abs`` of each other: the images whose top-1 a candidate that is at
    most ``max_abs`` away from every logit may name differently.  Two computations that
    agree within rounding can disagree on these, and only on these."""
    reference = np.asarray(reference, np.float64)
    if reference.ndim != 2 or reference.shape[1] < 2:
        return 0
    best_two = np.sort(reference, axis=1)[:, -2:]
    return int(np.sum(best_two[:, 1] - best_two[:, 0] <= 2 * max_abs))


@dataclasses.dataclass
class Comparison:
    """Two logit arrays compared; ``findings`` (:mod:`slimtune.findings`) say why they
    differ where a cause can be seen, and an error among them fails the comparison."""

    max_abs: float
    max_rel: float
    mean_abs: float
    cosine: float
    top1_agreement: float
    top5_agreement: float
    count: int
    num_classes: tuple
    misalignment: Optional[str]
    per_class_max_abs: list
    passed: bool
    findings: list = dataclasses.field(default_factory=list)

    def add(self, findings):
        self.findings += findings
        if any(f.fatal for f in findings):
            self.passed = False

    def lines(self):
        out = [f"images compared      {self.count}",
               f"classes              reference {self.num_classes[0]}, candidate "
               f"{self.num_classes[1]}"]
        if self.misalignment:
            out.append(f"CLASS MISALIGNMENT   {self.misalignment}")
        out += [f.line() for f in self.findings]
        out += [f"max abs difference   {self.max_abs:.3g}",
                f"max rel difference   {self.max_rel:.3g}",
                f"mean abs difference  {self.mean_abs:.3g}",
                f"cosine similarity    {self.cosine:.9f}",
                f"top-1 agreement      {self.top1_agreement:.4f}",
                f"top-5 agreement      {self.top5_agreement:.4f}",
                f"verdict              {'PASS' if self.passed else 'FAIL'}"]
        return out

    def as_dict(self):
        out = dataclasses.asdict(self)
        out["findings"] = [f.as_line_dict() for f in self.findings]
        return out


def misalignment(reference, candidate, rtol):
    """Why the candidate's classes do not line up with the reference's, in words, or None."""
    r, c = reference.shape[1], candidate.shape[1]
    checks = []
    if r == c + 1:
        checks.append((reference[:, 1:], candidate, "the candidate lacks the reference's "
                       "class 0 (1001 classes with background vs 1000): drop the background "
                       "class (--drop_background) or set labels_offset=1"))
    if c == r + 1:
        checks.append((reference, candidate[:, 1:], "the candidate has an extra class 0 "
                       "(background) the reference lacks: drop it or set labels_offset=1"))
    if r == c:
        checks.append((reference[:, 1:], candidate[:, :-1], "the candidate's classes are "
                       "shifted by one against the reference (an off-by-one label offset)"))
        checks.append((reference[:, :-1], candidate[:, 1:], "the candidate's classes are "
                       "shifted by one against the reference (an off-by-one label offset)"))
    for a, b, text in checks:
        if difference(a, b).max_rel <= max(rtol, 1e-4):
            return text
    if r != c:
        return f"class counts differ ({r} vs {c}) and no shift by one explains it"
    return None


def compare(reference, candidate, atol=1e-4, rtol=1e-5):
    """:class:`Comparison` of two logit arrays ``[N, C]``: passed within ``atol`` or
    ``rtol`` and without a class misalignment."""
    reference = np.asarray(reference, np.float64)
    candidate = np.asarray(candidate, np.float64)
    misaligned = misalignment(reference, candidate, rtol)
    n = min(reference.shape[1], candidate.shape[1])
    a, b = reference[:, :n], candidate[:, :n]
    diff = difference(a, b)
    cosine = float(np.sum(a * b) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-30))
    top5 = min(5, n)
    ref5 = np.argsort(-a, axis=1)[:, :top5]
    cand5 = np.argsort(-b, axis=1)[:, :top5]
    top5_agreement = float(np.mean([set(x) == set(y) for x, y in zip(ref5, cand5)]))
    per_class = np.abs(a - b).max(axis=0).tolist() if len(a) else []
    passed = (misaligned is None and (diff.max_abs <= atol or diff.max_rel <= rtol))
    return Comparison(diff.max_abs, diff.max_rel, diff.mean_abs, cosine, diff.top1_agreement,
                      top5_agreement, len(a), (reference.shape[1], candidate.shape[1]),
                      misaligned, per_class, passed)
