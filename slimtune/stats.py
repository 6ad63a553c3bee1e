"""Is a difference in accuracy between two modes of one model more than chance?

Shared by the BatchNorm doctor's eval-gap finding and the main job's gap target, so
both judge a gap the same way.
"""

import math

# A gap counts only when chance alone would give it less often than this: on 64 images
# a gap of 5 images happens by chance to a healthy model.
GAP_CHANCE = 0.01


def chance_of_gap(batch_only, served_only):
    """How likely a healthy model is to show at least this gap on these images.

    Only images that one mode gets right and the other wrong carry information; if
    BatchNorm made no difference, each would go either way with probability 1/2.  The
    exact binomial tail ``P(X >= batch_only)``, ``X ~ Binomial(batch_only + served_only,
    1/2)`` (McNemar's exact test, one-sided).
    """
    n = batch_only + served_only
    return sum(math.comb(n, k) for k in range(batch_only, n + 1)) / 2.0 ** n


def chance_of_difference(a_only, b_only):
    """How likely two equally good models are to differ at least this much, either way:
    the two-sided exact sign test on the images only one of them gets right."""
    return min(1.0, 2 * min(chance_of_gap(a_only, b_only), chance_of_gap(b_only, a_only)))


def disagreements(batch_correct, served_correct):
    """``(batch_only, served_only)``: images only batch statistics get right, and only
    served (inference-mode) BatchNorm gets right, from per-image correctness."""
    import numpy as np

    batch_correct, served_correct = np.asarray(batch_correct), np.asarray(served_correct)
    return (int(np.sum(batch_correct & ~served_correct)),
            int(np.sum(served_correct & ~batch_correct)))
