"""What a training run ends with, the same for both engines: its final weights, each
named as slim names it, so a comparison of the engines (slimtune-verify-training) reads
results instead of reaching into either engine's trainer."""

import dataclasses
from typing import Callable, Optional

import numpy as np


@dataclasses.dataclass(frozen=True)
class FinalWeight:
    """One weight at the end of a run: ``value`` in the engine's own layout, ``trained``
    whether --trainable_scopes trained it, ``average`` its --moving_average_decay average
    (None without), and ``from_slim`` turning a slim checkpoint tensor of the same
    variable into ``value``'s layout (the identity for the slim engine)."""

    slim_name: str
    value: object
    trained: bool
    average: Optional[object] = None
    from_slim: Callable = np.asarray
