"""The BatchNorm settings a slim graph is built with.

Why slimtune builds its own arg scopes: ``slim.conv2d`` passes ``normalizer_params``
to ``batch_norm`` as explicit keyword arguments, and explicit arguments beat any outer
``arg_scope([slim.batch_norm], decay=...)``.  So the decay in the *network's* arg scope
is the one that counts, and several upstream arg scopes (inception v1/v2) do not expose
it.  Every family module therefore builds its parameters with :func:`slim_params`.
"""

import dataclasses

# How BatchNorm normalises, independently of the network's is_training.
FOLLOW = "follow"  # batch statistics when training, moving statistics otherwise (slim default)
FROZEN = "frozen"  # always moving statistics; no updates; gamma/beta not trained
BATCH_STATS = "batch_stats"  # always batch statistics (diagnosis: what is_training=True does)
MODES = (FOLLOW, FROZEN, BATCH_STATS)


@dataclasses.dataclass(frozen=True)
class BatchNormConfig:
    """BatchNorm parameters of one slim graph.

    decay:   moving = moving * decay + batch * (1 - decay), per training step.
    epsilon: added to the variance before the square root.
    scale:   whether a ``gamma`` variable exists (Inception checkpoints have none).
    mode:    one of ``MODES``; ``frozen`` is Keras' ``trainable=False`` meaning.
    """

    decay: float
    epsilon: float
    scale: bool
    mode: str = FOLLOW

    def replace(self, **changes):
        """A copy with the given fields changed; ``None`` values are ignored."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    @property
    def forced_training(self):
        """``None`` when BN follows the network, else the is_training BN is forced to."""
        return {FOLLOW: None, FROZEN: False, BATCH_STATS: True}[self.mode]

    def as_dict(self):
        return dataclasses.asdict(self)


def slim_params(bn):
    """Keyword arguments for ``slim.batch_norm`` (used as ``normalizer_params``)."""
    import tensorflow as tf

    params = {
        "decay": bn.decay,
        "epsilon": bn.epsilon,
        "scale": bn.scale,
        "center": True,
        "updates_collections": tf.compat.v1.GraphKeys.UPDATE_OPS,
    }
    if bn.forced_training is not None:
        # Explicit arguments win over the network's own arg_scope(is_training=...).
        params["is_training"] = bn.forced_training
    if bn.mode == FROZEN:
        params["trainable"] = False
    return params
