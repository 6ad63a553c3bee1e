"""One entry per supported architecture: how to build it and what its checkpoints hold.

A :class:`ModelSpec` says everything other modules need to know about a network:
the slim function and arg scope, the BatchNorm defaults of its published checkpoints,
its default input size and class count, its logits scopes (what to exclude when
fine-tuning to a new label set) and its preprocessing.  Families live in
``slimtune.nets.<family>``; adding one means adding its module to ``_FAMILIES``.
"""

import dataclasses
import importlib
from typing import Callable, Optional

from slimtune.errors import UsageError
from slimtune.nets.batch_norm import BatchNormConfig

_FAMILIES = ("resnet", "inception", "inception_v4", "inception_resnet_v2", "vgg", "densenet",
             "mobilenet")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str
    scope: str  # root variable scope, e.g. "resnet_v1_50" or "InceptionV3"
    # slim network: fn(images, num_classes, is_training, scope[, create_aux_logits])
    # -> (net, end_points); create_aux_logits is taken where aux_logits is set.
    net_fn: Callable
    arg_scope_fn: Callable  # fn(weight_decay, bn: BatchNormConfig | None) -> arg scope
    default_image_size: int
    min_image_size: int  # smallest input the graph can be built for
    num_classes: int  # class count of the published checkpoints (1001 = with background)
    logits_scopes: tuple  # exclude these to fine-tune on a new label set
    preprocessing: str
    batch_norm: Optional[BatchNormConfig]  # None: the network has no BatchNorm
    has_dropout: bool
    aux_logits: Optional[str] = None  # end point key of an auxiliary head, if any
    # Tells apart architectures that share a root scope (MobileNet depth multipliers):
    # (a variable under the root scope, the size of its last dimension).
    fingerprint: Optional[tuple] = None

    @property
    def aux_scope(self):
        """Variable scope of the auxiliary head (``InceptionV3/AuxLogits``), or None."""
        return f"{self.scope}/{self.aux_logits}" if self.aux_logits else None

    def holds_aux_logits(self, names):
        """Whether checkpoint variable ``names`` include the auxiliary head.

        A checkpoint saved from a graph built with ``create_aux_logits=False`` (common in
        fine-tuning recipes) has none; every tool builds the graph to match what the
        checkpoint holds (``build(..., create_aux_logits=spec.holds_aux_logits(names))``).
        """
        return bool(self.aux_logits) and any(n.startswith(self.aux_scope + "/") for n in names)

    def build(self, images, num_classes, is_training, batch_norm=None, weight_decay=0.0,
              create_aux_logits=True):
        """Build the slim graph; returns ``(logits [B, C], end_points)``.

        ``batch_norm`` overrides the architecture's BatchNorm defaults.  When its mode
        forces BN into or out of training, BN layers fed through ``normalizer_params``
        obey it while dropout still follows ``is_training``; networks without dropout
        are simply built with ``is_training`` equal to the forced value, which also
        reaches BN layers called directly (ResNet v2's ``preact``/``postnorm``).
        ``create_aux_logits=False`` leaves out the auxiliary head of the networks that
        have one (research/slim's default builds it).
        """
        import tensorflow as tf

        from slimtune import compat

        slim = compat.apply()
        graph = tf.compat.v1.get_default_graph()
        if not is_training and graph.seed is None and compat.op_determinism_enabled():
            # Inference graphs are restored, never initialised, but TensorFlow refuses to
            # create an unseeded initializer at all while op determinism is on (a seeded
            # training run, or TF_DETERMINISTIC_OPS=1): any fixed seed will do.
            tf.compat.v1.set_random_seed(0)
        bn = batch_norm or self.batch_norm
        net_training = is_training
        if bn is not None and bn.forced_training is not None and not self.has_dropout:
            net_training = bn.forced_training
        aux = {"create_aux_logits": create_aux_logits} if self.aux_logits else {}
        with slim.arg_scope(self.arg_scope_fn(weight_decay, bn)):
            net, end_points = self.net_fn(images, num_classes=num_classes,
                                          is_training=net_training, scope=self.scope, **aux)
        if net.shape.rank == 4:
            net = tf.squeeze(net, axis=[1, 2], name="SpatialSqueeze")
        return net, end_points


_REGISTRY = {}


def _load():
    if not _REGISTRY:
        for family in _FAMILIES:
            module = importlib.import_module(f"slimtune.nets.{family}")
            for spec in module.SPECS:
                _REGISTRY[spec.name] = spec
    return _REGISTRY


def names():
    """All registered architecture names, sorted."""
    return sorted(_load())


def get(name):
    """The spec of ``name``; an unknown name is a :class:`UsageError` listing the choices."""
    specs = _load()
    if name not in specs:
        raise UsageError(
            f"unknown model name {name!r}: choose one of {', '.join(sorted(specs))} "
            "(pass it as --model_name)")
    return specs[name]
