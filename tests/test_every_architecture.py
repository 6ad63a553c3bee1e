"""Every registered architecture through every command, at a small input where the
network builds: what issue 26 asks of each name research/slim's nets_factory knows.

The default run takes one network of each family through the commands in its own test
file (tests/test_convert_*.py); this file runs all of them, in the nightly run
(``-m slow``): about a minute each on 2 cores, the VGGs, OverFeat and the large NASNets
longest.
"""

import pytest

from conversion import check_every_command
from slimtune import registry


@pytest.mark.slow
@pytest.mark.parametrize("model_name", registry.names())
def test_every_command(tmp_path, digits_dir, model_name):
    spec = registry.get(model_name)
    check_every_command(tmp_path, digits_dir, model_name, max(32, spec.min_image_size),
                        batch_size=4)
