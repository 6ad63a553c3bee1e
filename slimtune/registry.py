"""Every supported architecture, one entry each: how to build it in slim and in Keras, how
its checkpoints port, and what its published checkpoints expect.

An entry (:class:`ModelSpec`) joins the slim network function and arg scope
(``slimtune.nets`` or ``tf_slim.nets``), the Keras mirror (``slimtune.keras_nets``), the
port table and end points (``slimtune.ports``), the BatchNorm defaults, the default and
smallest input sizes, the class count of the published checkpoints, the logits and
auxiliary scopes, the preprocessing and the dropout keep probability.  Published
checkpoints (``checkpoints/manifest.json``) name their entry and take classes, size and
preprocessing from it.

Adding an architecture is its slim module (only if tf_slim lacks it), its Keras module,
its port table and one :func:`register` call: the built-in ones are registered at the
end of this module, and a user's own code can register more.  The registry is per
process.
"""

import dataclasses
import functools
from typing import Callable, Optional

from slimtune.errors import CheckpointError, UsageError
from slimtune.keras_nets import densenet as densenet_keras
from slimtune.keras_nets import inception as inception_keras
from slimtune.keras_nets import layers as keras_layers
from slimtune.keras_nets import mobilenet as mobilenet_keras
from slimtune.keras_nets import mobilenet_v3 as mobilenet_v3_keras
from slimtune.keras_nets import nasnet as nasnet_keras
from slimtune.keras_nets import resnet as resnet_keras
from slimtune.keras_nets import small as small_keras
from slimtune.keras_nets import vgg as vgg_keras
from slimtune.nets import densenet as densenet_slim
from slimtune.nets import inception as inception_slim
from slimtune.nets import inception_resnet_v2, inception_table, inception_v4
from slimtune.nets import mobilenet as mobilenet_slim
from slimtune.nets import mobilenet_v3 as mobilenet_v3_slim
from slimtune.nets import nasnet as nasnet_slim
from slimtune.nets import resnet as resnet_slim
from slimtune.nets import small as small_slim
from slimtune.nets import vgg as vgg_slim
from slimtune.nets.batch_norm import BatchNormConfig
from slimtune.ports import densenet as densenet_port
from slimtune.ports import inception as inception_port
from slimtune.ports import mobilenet as mobilenet_port
from slimtune.ports import mobilenet_v3 as mobilenet_v3_port
from slimtune.ports import nasnet as nasnet_port
from slimtune.ports import resnet as resnet_port
from slimtune.ports import small as small_port
from slimtune.ports import vgg as vgg_port
from slimtune.ports.porter import Porter, is_training_state, scoped


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    # root variable scope, e.g. "resnet_v1_50" or "InceptionV3"; "" for research/slim's
    # NASNets, whose variables start at the top (``cell_0/``): see :meth:`variable`
    scope: str
    # slim network: fn(images, num_classes, is_training, scope[, create_aux_logits])
    # -> (net, end_points); create_aux_logits is taken where aux_logits is set.
    net_fn: Callable
    arg_scope_fn: Callable  # fn(weight_decay, bn: BatchNormConfig | None) -> arg scope
    # Keras mirror: fn(num_classes=, image_size=, weight_decay=, name=[, batch_norm=]
    # [, dropout_keep_prob=][, include_aux_logits=]) -> keras.Model (random weights),
    # the bracketed arguments given where the network has BatchNorm, dropout, an aux head.
    keras_fn: Callable
    # port table: fn(porter, drop_background=[, include_aux_logits=]); slimtune.ports
    port_fn: Callable
    # fn() -> [(slim end point key, Keras layer name), ...] in network order: the slim
    # end points whose tensors a Keras layer outputs exactly (to find the first that differs)
    end_points_fn: Callable
    default_image_size: int
    min_image_size: int  # smallest input the graph can be built for
    num_classes: int  # class count of the published checkpoints (1001 = with background)
    logits_scopes: tuple  # exclude these to fine-tune on a new label set
    preprocessing: str
    batch_norm: Optional[BatchNormConfig]  # None: the network has no BatchNorm
    dropout_keep_prob: Optional[float] = None  # None: the network has no dropout
    aux_logits: Optional[str] = None  # end point key of an auxiliary head, if any
    # Tells apart architectures that share a root scope (MobileNet depth multipliers, v3's
    # forms): ((a variable under the root scope, the size of its last dimension, or None
    # where the variable must be absent), ...).
    fingerprint: Optional[tuple] = None
    # research/slim evaluates the published checkpoints with their ExponentialMovingAverage
    # shadows (MobileNet v3, EdgeTPU): the tools read them by default where a checkpoint
    # holds them (``checkpoint.averages_to_read``).
    published_averages: bool = False
    # The auxiliary head's scope under the root when it is not its end point key
    # (NASNet's ``aux_7`` computes ``AuxLogits``).
    aux_head_scope: Optional[str] = None
    # Drop path's keep probability in the deepest cell at the end of training (NASNet);
    # None: the network has none.  Both engines schedule it over --max_number_of_steps.
    drop_path_keep: Optional[float] = None

    @property
    def has_dropout(self):
        return self.dropout_keep_prob is not None

    @property
    def aux_scope(self):
        """Variable scope of the auxiliary head (``InceptionV3/AuxLogits``, NASNet-A
        mobile's ``aux_7``), or None."""
        if not self.aux_logits:
            return None
        return self.variable(self.aux_head_scope or self.aux_logits)

    @property
    def keras_name(self):
        """The Keras mirror's name: the root scope, else the architecture's name."""
        return self.scope or self.name

    def variable(self, name):
        """The checkpoint name of ``name`` under the root scope (the one place that knows
        a network may have none)."""
        return scoped(self.scope, name)

    def holds_aux_logits(self, names):
        """Whether checkpoint variable ``names`` include the auxiliary head.

        A checkpoint saved from a graph built with ``create_aux_logits=False`` (common in
        fine-tuning recipes) has none; every tool builds the graph to match what the
        checkpoint holds (``build(..., create_aux_logits=spec.holds_aux_logits(names))``).
        """
        return bool(self.aux_logits) and any(n.startswith(self.aux_scope + "/") for n in names)

    def build(self, images, num_classes, is_training, batch_norm=None, weight_decay=0.0,
              create_aux_logits=True, dropout_keep_prob=None, total_training_steps=None):
        """Build the slim graph; returns ``(logits [B, C], end_points)``.

        ``batch_norm`` overrides the architecture's BatchNorm defaults.  When its mode
        forces BN into or out of training, BN layers fed through ``normalizer_params``
        obey it while dropout still follows ``is_training``; networks without dropout
        are simply built with ``is_training`` equal to the forced value, which also
        reaches BN layers called directly (ResNet v2's ``preact``/``postnorm``).
        ``create_aux_logits=False`` leaves out the auxiliary head of the networks that
        have one (research/slim's default builds it).  ``dropout_keep_prob`` overrides
        the architecture's (1.0: no dropout; networks without dropout ignore it).
        ``total_training_steps`` is the run's length drop path's schedule spans (the
        network's own default when None; networks without drop path ignore it).
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
        if self.has_dropout:
            aux["dropout_keep_prob"] = (self.dropout_keep_prob if dropout_keep_prob is None
                                        else dropout_keep_prob)
        if self.drop_path_keep is not None:
            aux["total_training_steps"] = total_training_steps
        with compat.graph_equality(), slim.arg_scope(self.arg_scope_fn(weight_decay, bn)):
            net, end_points = self.net_fn(images, num_classes=num_classes,
                                          is_training=net_training, scope=self.scope, **aux)
        if net.shape.rank == 4:
            net = tf.squeeze(net, axis=[1, 2], name="SpatialSqueeze")
        return net, end_points

    def build_keras(self, num_classes, batch_norm=None, include_aux_logits=False,
                    image_size=None, weight_decay=0.0, dropout_keep_prob=None, channels=3,
                    drop_path=None):
        """The Keras 3 mirror with random weights, named ``scope``.

        Input ``[B, H, W, channels]`` float32 (``H = W = image_size``, or open when
        ``None`` and the architecture allows it; ``channels`` 1 for a grayscale run); output the logits ``[B, num_classes]``, or
        ``[logits, aux_logits]`` with ``include_aux_logits``.  ``batch_norm`` overrides
        the BatchNorm defaults (decay, epsilon, scale); ``weight_decay`` is slim's;
        ``dropout_keep_prob`` overrides the architecture's (1.0: no dropout);
        ``drop_path`` builds drop path layers (the Keras engine's training model, where
        ``drop_path_keep`` is set; ``slimtune.keras_engine.drop_path``).
        """
        from slimtune import compat

        compat.apply()
        if include_aux_logits and not self.aux_logits:
            raise ValueError(f"{self.name} has no auxiliary logits")
        options = {}
        if self.batch_norm is not None:
            options["batch_norm"] = batch_norm or self.batch_norm
        if self.has_dropout:
            options["dropout_keep_prob"] = (self.dropout_keep_prob if dropout_keep_prob is None
                                            else dropout_keep_prob)
        if self.aux_logits:
            options["include_aux_logits"] = include_aux_logits
        if drop_path is not None:
            options["drop_path"] = drop_path
        with keras_layers.input_channels(channels):
            return self.keras_fn(num_classes=num_classes, image_size=image_size,
                                 weight_decay=weight_decay, name=self.keras_name, **options)

    def keras_from_tensors(self, tensors, num_classes, batch_norm=None, drop_background=False,
                           include_aux_logits=False, image_size=None, source="checkpoint",
                           weight_decay=0.0, channels=3):
        """The Keras mirror holding ``tensors`` (``{checkpoint name: array}``), on
        ``channels``-channel input (1: a grayscale run's, see :func:`input_channels`).

        Raises :class:`~slimtune.errors.CheckpointError` listing every unmatched name
        unless each Keras weight got exactly one tensor of the same shape and each tensor
        was used or deliberately skipped.
        """
        model = self.build_keras(num_classes, batch_norm, include_aux_logits, image_size,
                                 weight_decay, channels=channels)
        porter = Porter(model, tensors, self.scope, source=source)
        aux = {"include_aux_logits": include_aux_logits} if self.aux_logits else {}
        self.port_fn(porter, drop_background=drop_background, **aux)
        # A checkpoint's auxiliary head is left out unless included (a checkpoint saved
        # without one has nothing to skip).
        porter.finish(also_skip=(self.aux_scope,) if self.aux_scope and not include_aux_logits
                      else ())
        return model

    def end_points(self):
        """``[(slim end point key, Keras layer name), ...]`` in network order."""
        return self.end_points_fn()


_REGISTRY = {}
# research/slim's nets_factory names that are not image classifiers.
VIDEO_MODELS = ("i3d", "s3dg")


def register(spec):
    """Add an architecture; its name must be new.  Returns ``spec``."""
    if spec.name in _REGISTRY:
        raise ValueError(f"architecture {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def names():
    """All registered architecture names, sorted."""
    return sorted(_REGISTRY)


def get(name):
    """The spec of ``name``; an unknown name is a :class:`UsageError` listing the choices
    (research/slim's video models, one line saying so)."""
    if name in VIDEO_MODELS and name not in _REGISTRY:
        raise UsageError(
            f"{name} is a video model (research/slim's i3d/s3dg take clips of frames), not "
            "an image classifier: slimtune trains and converts image classifiers")
    if name not in _REGISTRY:
        raise UsageError(
            f"unknown model name {name!r}: choose one of {', '.join(names())} "
            "(pass it as --model_name)")
    return _REGISTRY[name]


# -- the built-in architectures, family by family -------------------------------------------
def _resnet(version, depth):
    name = f"resnet_v{version}_{depth}"
    plan = {"version": version, "depth": depth}
    # v1 checkpoints were trained with VGG preprocessing at 224 on 1000 classes;
    # v2 checkpoints with Inception preprocessing at 299 on 1001 (0 = background).
    return ModelSpec(
        name=name, scope=name,
        net_fn=resnet_slim.network(version, depth), arg_scope_fn=resnet_slim.resnet_arg_scope,
        keras_fn=functools.partial(resnet_keras.resnet, **plan),
        port_fn=functools.partial(resnet_port.port, **plan),
        end_points_fn=functools.partial(resnet_port.end_points, root=name, **plan),
        default_image_size=224 if version == 1 else 299, min_image_size=32,
        num_classes=1000 if version == 1 else 1001, logits_scopes=(f"{name}/logits",),
        preprocessing="vgg" if version == 1 else "inception", batch_norm=resnet_slim.RESNET_BN)


def _inception(table, scope, net_fn, default_size, min_size):
    aux = table.aux is not None
    return ModelSpec(
        name=table.name, scope=scope,
        net_fn=net_fn, arg_scope_fn=inception_slim.inception_arg_scope,
        keras_fn=functools.partial(inception_keras.inception, table),
        port_fn=functools.partial(inception_port.port, table=table),
        end_points_fn=functools.partial(inception_port.end_points, table),
        default_image_size=default_size, min_image_size=min_size, num_classes=1001,
        logits_scopes=(f"{scope}/Logits",) + ((f"{scope}/{inception_table.AUX}",) if aux else ()),
        preprocessing="inception", batch_norm=inception_slim.INCEPTION_BN,
        dropout_keep_prob=inception_table.DROPOUT_KEEP,
        aux_logits=inception_table.AUX if aux else None)


def _vgg(depth):
    name = f"vgg_{depth}"
    return ModelSpec(
        name=name, scope=name,
        net_fn=vgg_slim.network(name), arg_scope_fn=vgg_slim.vgg_arg_scope,
        keras_fn=functools.partial(vgg_keras.vgg, depth=depth),
        port_fn=functools.partial(vgg_port.port_vgg, depth=depth),
        end_points_fn=functools.partial(vgg_port.vgg_end_points, depth=depth, root=name),
        default_image_size=224, min_image_size=224, num_classes=1000,
        logits_scopes=(f"{name}/fc8",), preprocessing="vgg", batch_norm=None,
        dropout_keep_prob=vgg_slim.DROPOUT_KEEP)


def _alexnet(name="alexnet_v2", arg_scope_fn=vgg_slim.alexnet_arg_scope,
             keras_fn=vgg_keras.alexnet_v2, port_fn=vgg_port.port_alexnet,
             end_points_fn=vgg_port.alexnet_end_points, default_size=224, min_size=195):
    """AlexNet v2, or (the same layout: VALID convs and pools, fc6 over the last map)
    OverFeat."""
    return ModelSpec(
        name=name, scope=name,
        net_fn=vgg_slim.network(name), arg_scope_fn=arg_scope_fn,
        keras_fn=keras_fn, port_fn=port_fn,
        end_points_fn=functools.partial(end_points_fn, root=name),
        default_image_size=default_size, min_image_size=min_size, num_classes=1000,
        logits_scopes=(f"{name}/fc8",), preprocessing="vgg", batch_norm=None,
        dropout_keep_prob=vgg_slim.DROPOUT_KEEP)


def _densenet(name, growth, stem_filters, blocks):
    plan = {"growth": growth, "stem_filters": stem_filters, "blocks": blocks}
    return ModelSpec(
        name=name, scope=name,
        net_fn=densenet_slim.network(**plan), arg_scope_fn=densenet_slim.densenet_arg_scope,
        keras_fn=functools.partial(densenet_keras.densenet, **plan),
        port_fn=functools.partial(densenet_port.port, **plan),
        end_points_fn=functools.partial(densenet_port.end_points, root=name, **plan),
        default_image_size=224, min_image_size=32,
        num_classes=1000,  # pudae's checkpoints: 1000 classes, no background
        logits_scopes=(f"{name}/logits",), preprocessing="densenet",
        batch_norm=densenet_slim.DENSENET_BN)


def _mobilenet_v1(name, multiplier):
    return ModelSpec(
        name=name, scope="MobilenetV1",
        net_fn=mobilenet_slim.network_v1(multiplier),
        arg_scope_fn=mobilenet_slim.mobilenet_arg_scope,
        keras_fn=functools.partial(mobilenet_keras.mobilenet_v1, multiplier=multiplier),
        port_fn=mobilenet_port.port_v1, end_points_fn=mobilenet_port.end_points_v1,
        default_image_size=224, min_image_size=32, num_classes=1001,
        logits_scopes=("MobilenetV1/Logits",), preprocessing="inception",
        batch_norm=mobilenet_slim.MOBILENET_V1_BN, dropout_keep_prob=mobilenet_slim.DROPOUT_KEEP,
        fingerprint=(("Conv2d_0/weights",
                      mobilenet_slim.channels(mobilenet_slim.STEM_CHANNELS, multiplier)),))


def _mobilenet_v2(name, multiplier):
    return ModelSpec(
        name=name, scope="MobilenetV2",
        net_fn=mobilenet_slim.network_v2(multiplier),
        arg_scope_fn=mobilenet_slim.mobilenet_arg_scope,
        keras_fn=functools.partial(mobilenet_keras.mobilenet_v2, multiplier=multiplier),
        port_fn=functools.partial(mobilenet_port.port_v2, multiplier=multiplier),
        end_points_fn=functools.partial(mobilenet_port.end_points_v2, multiplier),
        default_image_size=224, min_image_size=32, num_classes=1001,
        logits_scopes=("MobilenetV2/Logits",), preprocessing="inception",
        batch_norm=mobilenet_slim.MOBILENET_V2_BN,
        dropout_keep_prob=mobilenet_slim.V2_DROPOUT_KEEP,
        fingerprint=(("Conv/weights", mobilenet_slim.divisible(32 * multiplier)),))


def _mobilenet_v3(name, plan, fingerprint, multiplier=1.0, finegrain=False):
    """research/slim's mobilenet_v3.py networks: v3 large/small (and minimalistic) under
    ``MobilenetV3``, EdgeTPU (1.0, and 0.75 with finegrain_classification_mode) under
    ``MobilenetEdgeTPU``; all with mobilenet training_scope's BatchNorm and dropout."""
    shape = {"plan": plan, "multiplier": multiplier}
    return ModelSpec(
        name=name, scope=plan.scope,
        net_fn=mobilenet_v3_slim.network(plan, multiplier, finegrain),
        arg_scope_fn=mobilenet_slim.mobilenet_arg_scope,
        keras_fn=functools.partial(mobilenet_v3_keras.mobilenet_v3, finegrain=finegrain,
                                   **shape),
        port_fn=functools.partial(mobilenet_v3_port.port, **shape),
        end_points_fn=functools.partial(mobilenet_v3_port.end_points, **shape),
        default_image_size=224, min_image_size=32, num_classes=1001,
        logits_scopes=(f"{plan.scope}/Logits",), preprocessing="inception",
        batch_norm=mobilenet_slim.MOBILENET_V2_BN,
        dropout_keep_prob=mobilenet_v3_slim.DROPOUT_KEEP, fingerprint=fingerprint,
        published_averages=True)


def _small(name, plan, arg_scope_fn, keras_fn):
    """research/slim's LeNet and CifarNet: 10 classes (MNIST, CIFAR-10), no BatchNorm.
    Their fully connected layers take the flattened map, so a checkpoint works at the
    size it was trained at; the graph builds from 4 px (two 2x2 VALID pools)."""
    return ModelSpec(
        name=name, scope=plan.scope,
        net_fn=small_slim.network(plan), arg_scope_fn=arg_scope_fn, keras_fn=keras_fn,
        port_fn=functools.partial(small_port.port, plan=plan),
        end_points_fn=functools.partial(small_port.end_points, plan),
        default_image_size=small_keras.DEFAULT_SIZE[plan.scope], min_image_size=4,
        num_classes=10, logits_scopes=(f"{plan.scope}/{plan.logits}",), preprocessing=name,
        batch_norm=None, dropout_keep_prob=small_slim.DROPOUT_KEEP)


def _v3_fingerprint(plan):
    """MobileNet v3 shares ``MobilenetV3``: large and small differ in Conv_1's depth
    (960, 576), the minimalistic forms in having no squeeze-excite in the fourth block
    (``None``: the variable must be absent)."""
    row = mobilenet_v3_slim.plan_rows(plan)[3]
    return (("Conv_1/weights", plan.head[0]),
            (f"{row.scope}/squeeze_excite/Conv/weights", row.squeeze))


def _nasnet(plan, default_size, min_size):
    """research/slim's NASNet-A and PNASNet-5: no root scope, so the width of
    ``cell_0/1x1`` (the variant's num_conv_filters) tells them apart."""
    cifar = plan.cifar_stem
    return ModelSpec(
        name=plan.name, scope="",
        net_fn=nasnet_slim.network(plan), arg_scope_fn=nasnet_slim.nasnet_arg_scope,
        keras_fn=functools.partial(nasnet_keras.nasnet, plan),
        port_fn=functools.partial(nasnet_port.port, plan=plan),
        end_points_fn=functools.partial(nasnet_port.end_points, plan),
        default_image_size=default_size, min_image_size=min_size,
        num_classes=10 if cifar else 1001,
        logits_scopes=("final_layer/FC", f"{plan.aux_scope}/aux_logits/FC"),
        # research/slim's preprocessing_factory: inception for the ImageNet ones; the
        # CIFAR-10 model was trained with CIFAR's pad, crop and flip.
        preprocessing="cifarnet" if cifar else "inception",
        batch_norm=nasnet_slim.CIFAR_BN if cifar else nasnet_slim.IMAGENET_BN,
        dropout_keep_prob=plan.dense_dropout_keep, aux_logits="AuxLogits",
        fingerprint=(("cell_0/1x1/weights", plan.filters),), aux_head_scope=plan.aux_scope,
        drop_path_keep=plan.drop_path_keep)


# Smallest Inception sizes that build (measured): v1 ends in a fixed 7x7 VALID average
# pool; the auxiliary heads of v3, v4 and IRv2 need 107 px; v2 shrinks every kernel for
# small inputs and builds at any size, 16 px is a floor below which nothing is learned.
_BUILT_IN = (
    *(_resnet(version, depth) for version in (1, 2) for depth in (50, 101, 152, 200)),
    _inception(inception_slim.INCEPTION_V1, "InceptionV1", inception_slim.network(1), 224, 193),
    _inception(inception_slim.INCEPTION_V2, "InceptionV2", inception_slim.network(2), 224, 16),
    _inception(inception_slim.INCEPTION_V3, "InceptionV3", inception_slim.network(3), 299, 107),
    _inception(inception_v4.INCEPTION_V4, "InceptionV4",
               inception_table.network(inception_v4.INCEPTION_V4), 299, 107),
    _inception(inception_resnet_v2.INCEPTION_RESNET_V2, "InceptionResnetV2",
               inception_table.network(inception_resnet_v2.INCEPTION_RESNET_V2), 299, 107),
    _vgg("a"), _vgg(16), _vgg(19), _alexnet(),
    # OverFeat's fc6 needs a 6x6 pool5: 231 px (tf_slim's size) is the smallest input.
    _alexnet("overfeat", vgg_slim.overfeat_arg_scope, vgg_keras.overfeat,
             vgg_port.port_overfeat, vgg_port.overfeat_end_points, 231, 231),
    _densenet("densenet121", growth=32, stem_filters=64, blocks=(6, 12, 24, 16)),
    _densenet("densenet161", growth=48, stem_filters=96, blocks=(6, 12, 36, 24)),
    _densenet("densenet169", growth=32, stem_filters=64, blocks=(6, 12, 32, 32)),
    _mobilenet_v1("mobilenet_v1", 1.0), _mobilenet_v1("mobilenet_v1_075", 0.75),
    _mobilenet_v1("mobilenet_v1_050", 0.5), _mobilenet_v1("mobilenet_v1_025", 0.25),
    _mobilenet_v2("mobilenet_v2", 1.0), _mobilenet_v2("mobilenet_v2_140", 1.4),
    # research/slim's mobilenet_v2_035: finegrain_classification_mode, Conv_1 keeps 1280.
    _mobilenet_v2("mobilenet_v2_035", 0.35),
    *(_mobilenet_v3(f"mobilenet_v3_{kind}", plan, _v3_fingerprint(plan))
      for kind, plan in mobilenet_v3_slim.V3_PLANS.items()),
    _mobilenet_v3("mobilenet_edgetpu", mobilenet_v3_slim.EDGETPU, (("Conv/weights", 32),)),
    # research/slim's edge_tpu_075: depth multiplier 0.75, finegrain (Conv_1 keeps 1280).
    _mobilenet_v3("mobilenet_edgetpu_075", mobilenet_v3_slim.EDGETPU, (("Conv/weights", 24),),
                  multiplier=0.75, finegrain=True),
    # The auxiliary head (built by default) pools a 5x5 VALID window on the map before
    # the second reduction: 9 px on CIFAR, 67 on ImageNet (measured).
    _nasnet(nasnet_slim.NASNET_CIFAR, 32, 9), _nasnet(nasnet_slim.NASNET_MOBILE, 224, 67),
    _nasnet(nasnet_slim.NASNET_LARGE, 331, 67), _nasnet(nasnet_slim.PNASNET_MOBILE, 224, 67),
    _nasnet(nasnet_slim.PNASNET_LARGE, 331, 67),
    _small("lenet", small_slim.LENET, small_slim.lenet_arg_scope, small_keras.lenet),
    _small("cifarnet", small_slim.CIFARNET, small_slim.cifarnet_arg_scope,
           small_keras.cifarnet),
)
for _spec in _BUILT_IN:
    register(_spec)


def identify(tensors, model_name=None):
    """The entry of the network whose variables are ``tensors`` (``{name: array or
    shape}``); ``model_name`` is checked against them, not trusted.

    Every registered network has its own root scope (``resnet_v1_50``, ``InceptionV3``),
    so the roots of the model variables name the architecture; those sharing one, or
    without one (NASNet), are told apart by their fingerprint.
    """
    roots = sorted({n.split("/", 1)[0] for n in tensors if "/" in n and not is_training_state(n)})
    found = [n for n in names()
             if _holds(get(n), roots, tensors) and _fingerprint_matches(get(n), tensors)]
    if model_name:
        spec = get(model_name)
        if not _holds(spec, roots, tensors):
            where = (f"no variables under {spec.scope}/" if spec.scope else
                     "no " + " and ".join(f"{name} with {size} output channels"
                                          for name, size in spec.fingerprint))
            raise CheckpointError(
                f"checkpoint is not a {model_name}: it has {where} "
                f"(its root scopes: {', '.join(roots) or 'none'}); "
                + (f"use --model_name={found[0]}" if len(found) == 1
                   else "check --checkpoint_path and --model_name"))
        return spec
    if len(found) == 1:
        return get(found[0])
    if not found:
        raise UsageError(f"cannot tell the architecture: the checkpoint's root scopes "
                         f"({', '.join(roots) or 'none'}) match no registered model; pass "
                         f"--model_name (one of {', '.join(names())})")
    raise UsageError(f"the checkpoint holds several networks ({', '.join(found)}); pass "
                     "--model_name to choose one")


def _holds(spec, roots, tensors):
    """Whether ``tensors`` have ``spec``'s root scope; for a network without one
    (research/slim's NASNets), its fingerprint variable at its size."""
    if spec.scope:
        return spec.scope in roots
    return _fingerprint_matches(spec, tensors)


def _fingerprint_matches(spec, tensors):
    """False when the checkpoint differs from ``spec``'s fingerprint: a distinguishing
    variable of another size (a MobileNet of another width), missing (which also rules
    out a network without a root scope, NASNet), or present where it must be absent
    (MobileNet v3's squeeze-excite in a minimalistic checkpoint)."""
    for name, size in spec.fingerprint or ():
        value = tensors.get(spec.variable(name))
        if value is None or size is None:
            if (value is None) != (size is None):
                return False
        elif tuple(getattr(value, "shape", value))[-1] != size:
            return False
    return True
