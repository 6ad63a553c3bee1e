"""NASNet-A and PNASNet-5 as research/slim builds them (``nets/nasnet/nasnet.py``,
``nasnet_utils.py``, ``pnasnet.py``), walked once for every backend.

The networks are cells wired by a few rules, so the wiring lives here once
(:func:`walk`) and each backend supplies the layers: slim (:class:`SlimOps`, below), the
Keras mirror (``slimtune.keras_nets.nasnet``) and the port table
(``slimtune.ports.nasnet``).  Every op gets its full variable scope, so the three cannot
disagree about a name.

research/slim's checkpoints have no root scope: ``cell_stem_0/1x1/weights``,
``cell_3/comb_iter_0/left/separable_5x5_1/depthwise_weights``,
``reduction_cell_0/...``, ``aux_7/aux_logits/FC/weights``, ``final_layer/FC/weights``.

A cell (scope ``cell_<n>``) reads the previous cell's output and the one before it:

- the older input is matched to the newer: a factorized reduction (two 1x1 convs on
  the map and on the map shifted by one pixel, both subsampled by 2, concatenated) when
  their sizes differ, else a ``prev_1x1`` conv when their channels differ;
- the newer goes through relu, ``1x1``, ``beginning_bn``;
- five combinations (``comb_iter_<i>``) each add two operations (``left``, ``right``)
  on hidden states chosen by the cell's table; ``separable_KxK_2`` is twice relu,
  separable conv (no bias), BatchNorm; ``none`` is the identity unless it must stride
  or change channels; pools may be followed by a ``1x1`` conv;
- the output concatenates the hidden states no combination consumed.

Only the cell's first two hidden states are strided in a reduction.  Every op but
``none`` is followed by drop path in training (research/slim's "v3": the drop
probability grows with the cell's depth and with the training progress).  The
auxiliary head sits on the cell before the second reduction.

Convolutions have no biases; every BatchNorm has a gamma.  ImageNet variants start
with ``conv0`` (3x3 stride 2 VALID) and two stem cells (NASNet's reduction cell, or
PNASNet's only cell, at a quarter and half the filters); CIFAR's with ``l1_stem_3x3``.
"""

import functools
from typing import NamedTuple

from slimtune import compat
from slimtune.nets.batch_norm import BatchNormConfig, slim_params

# research/slim's arg scopes: CIFAR's BatchNorm, and the ImageNet models'.
CIFAR_BN = BatchNormConfig(decay=0.9, epsilon=1e-5, scale=True)
IMAGENET_BN = BatchNormConfig(decay=0.9997, epsilon=1e-3, scale=True)
FILTER_SCALING_RATE = 2.0
NUM_REDUCTION_LAYERS = 2


class Cell(NamedTuple):
    """One cell design: ``operations`` and the hidden state each reads, in pairs (left,
    right) per combination; ``used``: 1 for hidden states left out of the output."""

    operations: tuple
    inputs: tuple
    used: tuple


NASNET_NORMAL = Cell(
    ("separable_5x5_2", "separable_3x3_2", "separable_5x5_2", "separable_3x3_2",
     "avg_pool_3x3", "none", "avg_pool_3x3", "avg_pool_3x3", "separable_3x3_2", "none"),
    (0, 1, 1, 1, 0, 1, 1, 1, 0, 0), (1, 0, 0, 0, 0, 0, 0))
NASNET_REDUCTION = Cell(
    ("separable_5x5_2", "separable_7x7_2", "max_pool_3x3", "separable_7x7_2",
     "avg_pool_3x3", "separable_5x5_2", "none", "avg_pool_3x3", "separable_3x3_2",
     "max_pool_3x3"),
    (0, 1, 0, 1, 0, 1, 3, 2, 2, 0), (1, 1, 1, 0, 0, 0, 0))
PNASNET_CELL = Cell(
    ("separable_5x5_2", "max_pool_3x3", "separable_7x7_2", "max_pool_3x3",
     "separable_5x5_2", "separable_3x3_2", "separable_3x3_2", "max_pool_3x3",
     "separable_3x3_2", "none"),
    (1, 1, 0, 0, 0, 0, 4, 0, 1, 0), (1, 1, 0, 0, 0, 0, 0))


class Plan(NamedTuple):
    """A variant's hparams (research/slim's ``*_config()``), NHWC."""

    name: str
    num_cells: int
    filters: int  # num_conv_filters
    stem_multiplier: float
    cifar_stem: bool
    skip_reduction_input: bool  # skip_reduction_layer_input
    drop_path_keep: float
    dense_dropout_keep: float
    total_training_steps: int
    pnas: bool  # PNASNet: one cell, strided at the reductions; NASNet-A: two cells

    @property
    def reductions(self):
        """Cells before which a reduction happens (calc_reduction_layers)."""
        return [int(k / (NUM_REDUCTION_LAYERS + 1) * self.num_cells)
                for k in range(1, NUM_REDUCTION_LAYERS + 1)]

    @property
    def aux_cell(self):
        return self.reductions[1] - 1

    @property
    def total_cells(self):
        """The depth drop path is scaled by: cells, NASNet's reduction cells, stem cells."""
        stems = 0 if self.cifar_stem else 2
        return self.num_cells + stems + (0 if self.pnas else NUM_REDUCTION_LAYERS)

    @property
    def aux_scope(self):
        return f"aux_{self.aux_cell}"


NASNET_CIFAR = Plan("nasnet_cifar", 18, 32, 3.0, True, False, 0.6, 1.0, 937500, False)
NASNET_MOBILE = Plan("nasnet_mobile", 12, 44, 1.0, False, False, 1.0, 0.5, 250000, False)
NASNET_LARGE = Plan("nasnet_large", 18, 168, 3.0, False, True, 0.7, 0.5, 250000, False)
PNASNET_MOBILE = Plan("pnasnet_mobile", 9, 54, 1.0, False, True, 1.0, 0.5, 250000, True)
PNASNET_LARGE = Plan("pnasnet_large", 12, 216, 3.0, False, True, 0.6, 0.5, 250000, True)


def drop_path_keep(plan, cell_num, progress):
    """research/slim's drop path keep probability of cell ``cell_num`` (stems counted)
    at ``progress`` = min(1, step / total steps): 1 at the start, ``drop_path_keep`` in
    the deepest cell at the end."""
    layer = 1 - (cell_num + 1) / float(plan.total_cells) * (1 - plan.drop_path_keep)
    return 1 - progress * (1 - layer)


class State(NamedTuple):
    """A hidden state: the backend's tensor, how many times it was strided, channels."""

    x: object
    level: int
    channels: int


# -- the walk -------------------------------------------------------------------------------
def walk(ops, plan, num_classes, create_aux_logits=True):
    """Build ``plan`` with ``ops`` from ``ops.images``; returns the logits.

    ``ops`` records end points under research/slim's keys (``ops.end_point``).  Map
    sizes are compared by how often a state was strided, so an open input size works;
    research/slim compares widths, the same at every size that builds with the
    auxiliary head (the last map is at least 3 px there, and a halving changes it)."""
    if plan.cifar_stem:
        stem = plan.filters * plan.stem_multiplier
        x = ops.conv(ops.images, "l1_stem_3x3", int(stem), 3)
        net = State(ops.bn(x, "l1_stem_bn"), 0, int(stem))
        outputs = [None, net]
        first = 0
    else:
        net, outputs = _imagenet_stem(ops, plan)
        first = 2
    ops.end_point("Stem", net.x)
    normal = PNASNET_CELL if plan.pnas else NASNET_NORMAL
    scaling, cell_num = 1.0, first
    for n in range(plan.num_cells):
        reduce = n in plan.reductions
        if reduce:
            scaling *= FILTER_SCALING_RATE
        prev = outputs[-2]
        if reduce and not plan.pnas:
            k = plan.reductions.index(n)
            net = _cell(ops, plan, NASNET_REDUCTION, f"reduction_cell_{k}", net, prev,
                        scaling, 2, cell_num)
            ops.end_point(f"Reduction_Cell_{k}", net.x)
            cell_num += 1
            outputs.append(net)
            if not plan.skip_reduction_input:
                prev = outputs[-2]
        stride = 2 if reduce and plan.pnas else 1  # both PNASNets skip the reduction input
        net = _cell(ops, plan, normal, f"cell_{n}", net, prev, scaling, stride, cell_num)
        ops.end_point(f"Cell_{n}", net.x)
        cell_num += 1
        outputs.append(net)
        if create_aux_logits and num_classes and n == plan.aux_cell:
            _aux_head(ops, plan, net, num_classes)
    x = ops.relu(net.x, "final_layer/relu")
    x = ops.global_pool(x, "final_layer/global_pool")
    ops.end_point("global_pool", x)
    x = ops.dropout(x, "final_layer/dropout", plan.dense_dropout_keep)
    logits = ops.fully_connected(x, "final_layer/FC", num_classes)
    ops.end_point("Logits", logits)
    return logits


def _imagenet_stem(ops, plan):
    filters = int(32 * plan.stem_multiplier)
    x = ops.conv(ops.images, "conv0", filters, 3, stride=2, padding="valid")
    net = State(ops.bn(x, "conv0_bn"), 1, filters)
    outputs = [None, net]
    cell = PNASNET_CELL if plan.pnas else NASNET_REDUCTION
    scaling = 1.0 / FILTER_SCALING_RATE ** 2
    for n in range(2):
        net = _cell(ops, plan, cell, f"cell_stem_{n}", net, outputs[-2], scaling, 2, n)
        outputs.append(net)
        scaling *= FILTER_SCALING_RATE
    return net, outputs


def _cell(ops, plan, cell, scope, net, prev, scaling, stride, cell_num):
    filters = int(plan.filters * scaling)
    prev = _match_prev(ops, scope, prev or net, net, filters)
    x = ops.relu(net.x, f"{scope}/1x1/relu")
    x = ops.bn(ops.conv(x, f"{scope}/1x1", filters, 1), f"{scope}/beginning_bn")
    states = [State(x, net.level, filters), prev]
    for i in range(5):
        where = f"{scope}/comb_iter_{i}"
        sides = []
        for side, j in (("left", 2 * i), ("right", 2 * i + 1)):
            state = states[cell.inputs[j]]
            strided = stride if cell.inputs[j] < 2 else 1
            sides.append(_operation(ops, plan, f"{where}/{side}", cell.operations[j], state,
                                    strided, filters, cell_num))
        x = ops.add(sides[0].x, sides[1].x, f"{where}/combine")
        states.append(State(x, sides[0].level, filters))
    return _cell_output(ops, f"{scope}/cell_output", states, cell.used)


def _match_prev(ops, scope, prev, net, filters):
    """The older input at the newer one's size and ``filters`` channels."""
    if prev is net:
        return prev
    if prev.level != net.level:
        x = ops.relu(prev.x, f"{scope}/prev/relu")
        return _factorized_reduction(ops, scope, State(x, prev.level, prev.channels),
                                     filters, 2)
    if prev.channels != filters:
        x = ops.relu(prev.x, f"{scope}/prev_1x1/relu")
        x = ops.bn(ops.conv(x, f"{scope}/prev_1x1", filters, 1), f"{scope}/prev_bn")
        return State(x, prev.level, filters)
    return prev


def _factorized_reduction(ops, scope, state, filters, stride):
    if stride == 1:
        x = ops.bn(ops.conv(state.x, f"{scope}/path_conv", filters, 1), f"{scope}/path_bn")
        return State(x, state.level, filters)
    half = filters // 2
    path1 = ops.subsample(state.x, f"{scope}/path1")
    path1 = ops.conv(path1, f"{scope}/path1_conv", half, 1)
    path2 = ops.subsample(ops.shift(state.x, f"{scope}/path2_shift"), f"{scope}/path2")
    path2 = ops.conv(path2, f"{scope}/path2_conv", half, 1)
    x = ops.concat([path1, path2], f"{scope}/final_path")
    # An odd ``filters`` loses one channel (research/slim's int(filters / 2) twice).
    return State(ops.bn(x, f"{scope}/final_path_bn"), state.level + 1, 2 * half)


def _operation(ops, plan, scope, operation, state, stride, filters, cell_num):
    x, channels = state.x, state.channels
    if operation.startswith("separable"):
        kernel, layers = int(operation.split("_")[1][0]), int(operation.split("_")[2])
        for k in range(1, layers + 1):
            name = f"separable_{kernel}x{kernel}_{k}"
            x = ops.relu(x, f"{scope}/{name}/relu")
            x = ops.separable_conv(x, f"{scope}/{name}", filters, kernel,
                                   stride if k == 1 else 1)
            x = ops.bn(x, f"{scope}/bn_sep_{kernel}x{kernel}_{k}")
        channels = filters
    elif operation == "none":
        if stride > 1 or channels != filters:
            x = ops.relu(x, f"{scope}/1x1/relu")
            x = ops.bn(ops.conv(x, f"{scope}/1x1", filters, 1, stride=stride),
                       f"{scope}/bn_1")
            channels = filters
    else:
        kind, size = operation.split("_")[0], int(operation.split("_")[-1][0])
        x = ops.pool(x, f"{scope}/{kind}_pool", kind, size, stride)
        if channels != filters:
            x = ops.bn(ops.conv(x, f"{scope}/1x1", filters, 1), f"{scope}/bn_1")
            channels = filters
    if operation != "none":
        x = ops.drop_path(x, f"{scope}/drop_path", plan, cell_num)
    return State(x, state.level + (stride > 1), channels)


def _cell_output(ops, scope, states, used):
    final = states[-1]
    kept = []
    for i, (state, is_used) in enumerate(zip(states, used)):
        if is_used:
            continue
        if state.level != final.level or state.channels != final.channels:
            state = _factorized_reduction(ops, f"{scope}/reduction_{i}", state,
                                          final.channels, 2 if state.level != final.level else 1)
        kept.append(state)
    x = ops.concat([s.x for s in kept], f"{scope}/concat")
    return State(x, final.level, sum(s.channels for s in kept))


def _aux_head(ops, plan, net, num_classes):
    """research/slim's ``_build_aux_head`` (it builds it only when training; here it is
    built whenever asked, so an inference graph restores all of a checkpoint)."""
    scope = f"{plan.aux_scope}/aux_logits"
    x = ops.relu(net.x, f"{plan.aux_scope}/relu")
    x = ops.pool(x, f"{scope}/avg_pool", "avg", 5, 3, padding="valid")
    x = ops.bn(ops.conv(x, f"{scope}/proj", 128, 1), f"{scope}/aux_bn0")
    x = ops.relu(x, f"{scope}/proj/relu")
    x = ops.bn(ops.conv(x, f"{scope}/Conv", 768, None, padding="valid"), f"{scope}/aux_bn1")
    x = ops.relu(x, f"{scope}/Conv/relu")
    x = ops.fully_connected(ops.flatten(x, f"{scope}/flatten"), f"{scope}/FC", num_classes)
    ops.end_point("AuxLogits", x)


# -- slim -----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _forced_bn_training():
    """An arg-scoped function returning what :func:`nasnet_arg_scope` forces
    BatchNorm's is_training to (None: it follows the network).  The cells call
    ``slim.batch_norm`` directly, where the network's is_training would otherwise beat
    the arg scope's (made on first use: tf_slim loads TensorFlow)."""
    slim = compat.apply()

    @slim.add_arg_scope
    def forced_bn_training(is_training=None):
        return is_training

    return forced_bn_training


def nasnet_arg_scope(weight_decay, bn):
    """research/slim's NASNet arg scopes (all three differ only in their defaults):
    L2 decay and FAN_OUT variance scaling on fully connected, conv and separable conv
    weights; no activation and no biases in the convs; BatchNorm as ``bn``."""
    slim = compat.apply()
    with slim.arg_scope([slim.fully_connected, slim.conv2d, slim.separable_conv2d],
                        weights_regularizer=slim.l2_regularizer(weight_decay),
                        weights_initializer=slim.variance_scaling_initializer(mode="FAN_OUT")):
        with slim.arg_scope([slim.fully_connected], activation_fn=None):
            with slim.arg_scope([slim.conv2d, slim.separable_conv2d], activation_fn=None,
                                biases_initializer=None):
                with slim.arg_scope([slim.batch_norm], **slim_params(bn)), \
                        slim.arg_scope([_forced_bn_training()],
                                       is_training=bn.forced_training) as scope:
                    return scope


class SlimOps:
    """The layers of :func:`walk` in slim, under research/slim's variable names."""

    def __init__(self, images, plan, is_training, total_training_steps=None):
        self.images, self.plan, self.is_training = images, plan, is_training
        self.total_training_steps = total_training_steps or plan.total_training_steps
        self.end_points = {}
        self.slim = compat.apply()
        forced = _forced_bn_training()()
        self.bn_training = is_training if forced is None else forced

    def end_point(self, key, x):
        self.end_points[key] = x

    def conv(self, x, scope, filters, kernel, stride=1, padding="same"):
        if kernel is None:  # the aux head's: the whole map
            kernel = x.shape.as_list()[1:3]
        return self.slim.conv2d(x, filters, kernel, stride=stride, padding=padding.upper(),
                                scope=scope)

    def separable_conv(self, x, scope, filters, kernel, stride):
        return self.slim.separable_conv2d(x, filters, kernel, depth_multiplier=1,
                                          stride=stride, scope=scope)

    def bn(self, x, scope):
        return self.slim.batch_norm(x, is_training=self.bn_training, scope=scope)

    def relu(self, x, name):
        import tensorflow as tf

        return tf.nn.relu(x)

    def pool(self, x, name, kind, size, stride, padding="same"):
        pool = self.slim.max_pool2d if kind == "max" else self.slim.avg_pool2d
        return pool(x, size, stride=stride, padding=padding.upper())

    def subsample(self, x, name):
        import tensorflow as tf

        return tf.nn.avg_pool2d(x, 1, 2, "VALID")

    def shift(self, x, name):
        import tensorflow as tf

        return tf.pad(x, [[0, 0], [0, 1], [0, 1], [0, 0]])[:, 1:, 1:, :]

    def add(self, a, b, name):
        return a + b

    def concat(self, xs, name):
        import tensorflow as tf

        return tf.concat(xs, axis=3)

    def drop_path(self, x, name, plan, cell_num):
        """Whole examples dropped, the rest scaled by 1 / keep (research/slim's
        ``drop_path``), with the keep probability of :func:`drop_path_keep` at the
        global step."""
        import tensorflow as tf

        if not self.is_training or plan.drop_path_keep >= 1.0:
            return x
        step = tf.cast(tf.compat.v1.train.get_or_create_global_step(), tf.float32)
        progress = tf.minimum(1.0, step / float(self.total_training_steps))
        keep = drop_path_keep(plan, cell_num, progress)
        mask = tf.floor(keep + tf.random.uniform([tf.shape(x)[0], 1, 1, 1]))
        return x / keep * mask

    def global_pool(self, x, name):
        import tensorflow as tf

        return tf.reduce_mean(x, [1, 2])

    def dropout(self, x, name, keep_prob):
        return self.slim.dropout(x, keep_prob, is_training=self.is_training, scope=name)

    def flatten(self, x, name):
        return self.slim.flatten(x)

    def fully_connected(self, x, scope, units):
        return self.slim.fully_connected(x, units, scope=scope)


def network(plan):
    """The registry's net function for ``plan``; ``scope`` must be ``""`` (research/slim's
    NASNets have no root scope)."""

    def build(images, num_classes, is_training, scope="", create_aux_logits=True,
              dropout_keep_prob=None, total_training_steps=None):
        import tensorflow as tf

        if scope:
            raise ValueError(f"{plan.name} has no root scope (research/slim builds its "
                             f"variables at the top level), not {scope!r}")
        chosen = (plan if dropout_keep_prob is None
                  else plan._replace(dense_dropout_keep=dropout_keep_prob))
        ops = SlimOps(images, chosen, is_training, total_training_steps)
        logits = walk(ops, chosen, num_classes, create_aux_logits)
        with tf.name_scope("final_layer/"):  # research/slim's final_layer/predictions
            ops.end_points["Predictions"] = tf.nn.softmax(logits, name="predictions")
        return logits, ops.end_points

    return build
