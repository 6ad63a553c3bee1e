"""The sign test that judges a BatchNorm gap, shared by the doctor and the main job."""

import numpy as np
import pytest

from slimtune import stats


@pytest.mark.parametrize("batch_only, served_only, chance", [
    (6, 1, 8 / 128),  # seed 001's fixed run on 64 images: 7 + 1 of the 2**7 outcomes
    (0, 0, 1.0),  # no disagreement: nothing to blame
    (0, 5, 1.0),  # served ahead is never a BatchNorm problem
    (10, 0, 1 / 1024),
    (5, 5, 638 / 1024),  # C(10,5..10) / 2**10
])
def test_chance_of_gap_is_the_exact_one_sided_binomial_tail(batch_only, served_only, chance):
    assert stats.chance_of_gap(batch_only, served_only) == pytest.approx(chance, rel=1e-12)


def test_disagreements_count_the_images_one_mode_alone_gets_right():
    batch = np.array([1, 1, 0, 0, 1, 1], bool)
    served = np.array([1, 0, 1, 0, 0, 1], bool)
    assert stats.disagreements(batch, served) == (2, 1)


def test_chance_of_difference_is_two_sided_and_symmetric():
    assert stats.chance_of_difference(5, 5) == 1.0
    assert stats.chance_of_difference(9, 1) == stats.chance_of_difference(1, 9)
    assert stats.chance_of_difference(9, 1) == pytest.approx(2 * stats.chance_of_gap(9, 1))
    assert stats.chance_of_difference(0, 0) == 1.0  # no image tells the two apart
