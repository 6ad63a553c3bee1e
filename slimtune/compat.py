"""Make tf-slim 1.1.0 run on TensorFlow 2.21.

This is the only module in slimtune that knows TensorFlow and tf-slim internals.
tf-slim was last released in 2020 and reaches into private TensorFlow modules that
have since moved.  :func:`apply` puts back exactly what it needs, once, before any
slim graph is built:

1. ``tf_keras.legacy_tf_layers`` — TensorFlow's legacy layer shim imports it lazily
   (every ``slim.batch_norm`` goes through it) but tf-keras 2.21 only ships it under
   ``tf_keras.src``.  We alias the module only if the public path is missing, so the
   fix becomes a no-op if tf-keras restores it.
2. Private names that moved (``ops.Tensor``, ``control_flow_ops.cond`` ...).  Each is
   restored on its old module only when absent.
3. Noisy deprecation warnings from legacy layers are silenced.

It also scopes TensorFlow's process-wide op determinism to one block
(:func:`op_determinism`), which needs two functions TensorFlow does not export, and
gives slim graph building TF1's cheap identity equality (:func:`graph_equality`).

We never call ``disable_eager_execution()``: slim graphs are built inside their own
``tf.Graph().as_default()`` so the same process can still run eager TF2 code.
"""

import contextlib
import importlib
import logging
import sys
import warnings

_APPLIED = False

# (module holding the old name, old attribute, module holding the new object, new attribute)
_MOVED_NAMES = (
    ("tensorflow.python.framework.ops", "Tensor", "tensorflow", "Tensor"),
    ("tensorflow.python.framework.ops", "IndexedSlices",
     "tensorflow.python.framework.indexed_slices", "IndexedSlices"),
    ("tensorflow.python.ops.control_flow_ops", "cond", "tensorflow.python.ops.cond", "cond"),
    ("tensorflow.python.ops.control_flow_ops", "case",
     "tensorflow.python.ops.control_flow_case", "case"),
    ("tensorflow.python.ops.control_flow_ops", "while_loop",
     "tensorflow.python.ops.while_loop", "while_loop"),
    ("tensorflow.python.ops.control_flow_ops", "Assert",
     "tensorflow.python.ops.control_flow_assert", "Assert"),
    ("tensorflow.python.ops.array_ops", "stack", "tensorflow.python.ops.array_ops_stack", "stack"),
    ("tensorflow.python.ops.array_ops", "unstack",
     "tensorflow.python.ops.array_ops_stack", "unstack"),
    ("tensorflow.python.ops.variable_scope", "variable",
     "tensorflow.python.ops.variable_v1", "VariableV1"),
)

_LEGACY_LAYERS = "tf_keras.legacy_tf_layers"
_LEGACY_LAYERS_SRC = "tf_keras.src.legacy_tf_layers"


def _alias_legacy_tf_layers():
    try:
        importlib.import_module(_LEGACY_LAYERS + ".normalization")
        return
    except ImportError:
        pass
    package = importlib.import_module(_LEGACY_LAYERS_SRC)
    sys.modules[_LEGACY_LAYERS] = package
    for sub in ("base", "core", "convolutional", "normalization", "pooling"):
        try:
            module = importlib.import_module(f"{_LEGACY_LAYERS_SRC}.{sub}")
        except ImportError:
            continue
        sys.modules[f"{_LEGACY_LAYERS}.{sub}"] = module


def _restore_moved_names():
    for old_module, old_name, new_module, new_name in _MOVED_NAMES:
        target = importlib.import_module(old_module)
        if not hasattr(target, old_name):
            setattr(target, old_name, getattr(importlib.import_module(new_module), new_name))


def _quiet_legacy_warnings():
    for pattern in (r".*layer\.apply.*is deprecated.*", r".*_colocate_with.*",
                    r".*`tf\.layers\..*` is deprecated.*", r".*is deprecated and will be removed.*"):
        warnings.filterwarnings("ignore", message=pattern)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def apply():
    """Apply every fix once; later calls do nothing.  Returns the ``tf_slim`` module."""
    global _APPLIED
    if not _APPLIED:
        import tensorflow  # noqa: F401  (must be imported before its private modules)

        _alias_legacy_tf_layers()
        _restore_moved_names()
        _quiet_legacy_warnings()
        _APPLIED = True
    import tf_slim

    return tf_slim


def tf1():
    """The ``tf.compat.v1`` namespace, with the compat fixes applied."""
    apply()
    import tensorflow as tf

    return tf.compat.v1


def eager_mode():
    """A context that runs eagerly even inside ``graph.as_default()`` (or a Session block).

    Used for small side computations (counting records, locating a bad one) that must
    not add ops to a finalized training graph.
    """
    apply()
    from tensorflow.python.eager import context

    return context.eager_mode()


def op_determinism_enabled():
    """Whether TensorFlow's op determinism is on (``enable_op_determinism`` or
    ``TF_DETERMINISTIC_OPS=1``)."""
    apply()
    from tensorflow.python.framework import config

    return config.is_op_determinism_enabled()


@contextlib.contextmanager
def op_determinism(enabled=True):
    """TensorFlow's op determinism on inside the block (if ``enabled``), as before after.

    The setting is process-wide, and while it is on every random op without a seed
    raises, so it is kept to the block: eager Keras code later in the same process
    (conversion, parity checks) keeps its unseeded random ops.  TensorFlow 2.21 exports
    only ``enable_op_determinism``; turning it off again and reading it are
    ``tensorflow.python.framework.config`` functions.
    """
    if not enabled or op_determinism_enabled():
        yield
        return
    from tensorflow.python.framework import config

    config.enable_op_determinism()
    try:
        yield
    finally:
        config.disable_op_determinism()


@contextlib.contextmanager
def graph_equality():
    """TF1's identity ``==`` and ``hash`` for tensors and variables inside the block,
    while a plain (non-function) TF1 graph is the default; TensorFlow's setting after.

    Building a slim network is TF1 code in a TF1 graph, where TensorFlow 2 already
    compares variables by identity, but only after asking, at every ``hash`` and ``==``,
    whether it runs eagerly outside functions (a walk of the graph stack).  tf-keras's
    legacy layers (every ``slim.batch_norm``) put all the graph's variables into a set at
    each layer, so those questions grow with the square of the network: a third of
    Inception v3's graph build (measured 9.8/8.6 s against 6.8/5.5 s at 107 px,
    resnet_v1_50 6.0 against 4.1 s; the same variables either way).  Inside a
    tf.function, a cond branch or eager code the answers differ, so there the block
    changes nothing.
    """
    apply()
    import tensorflow as tf
    from tensorflow.python.framework import tensor as tensor_lib

    graph = tf.compat.v1.get_default_graph()
    if (tf.executing_eagerly() or graph.building_function
            or not tensor_lib.Tensor._USE_EQUALITY):  # pylint: disable=protected-access
        yield
        return
    tf.compat.v1.disable_tensor_equality()
    try:
        yield
    finally:
        tf.compat.v1.enable_tensor_equality()


def session_config(fuse=True):
    """A ``ConfigProto`` for a ``tf.compat.v1.Session`` with the process's TensorFlow
    settings (``tf.config.threading`` thread counts, logical devices): a Session given a
    config of its own would not see them.

    ``fuse=False`` turns grappler's remapper off, for a session that must see every NaN
    its graph computes.  The remapper fuses Conv2D + FusedBatchNorm + Relu into one
    oneDNN kernel whose ReLU turns NaN into 0: measured on TF 2.21 with
    TF_ENABLE_ONEDNN_OPTS=1, a four-op graph (conv, a BatchNorm with one variance of -1,
    relu) fetching only the relu returns 0 for that channel by default and NaN with the
    remapper off (fetching the BatchNorm output too prevents the fusion: NaN either way).
    """
    apply()
    import tensorflow as tf
    from tensorflow.core.protobuf import rewriter_config_pb2
    from tensorflow.python.eager import context

    config = tf.compat.v1.ConfigProto()
    config.CopyFrom(context.context().config)
    if not fuse:
        config.graph_options.rewrite_options.remapping = rewriter_config_pb2.RewriterConfig.OFF
    return config


def with_mixed_precision(config, mode):
    """``config`` (a session ``ConfigProto``) with grappler's mixed-precision rewrite for
    ``mode`` (:mod:`slimtune.precision`) on; float32 returns it unchanged.

    bfloat16 turns on ``auto_mixed_precision_onednn_bfloat16``: oneDNN's rewrite casts the
    inputs of convolutions, matmuls and the ops between them to bfloat16 while the
    variables, the optimizer's update and the loss stay float32 (the graph's variables are
    never touched, so the checkpoint is the float32 run's).  float16 turns on
    ``auto_mixed_precision``, the CUDA rewrite (it changes nothing without a GPU), whose
    gradients need the loss scale :func:`loss_scale_optimizer` adds.  Grappler runs the
    rewrite as the session first runs the graph, so the Python graph stays float32.
    """
    from tensorflow.core.protobuf import rewriter_config_pb2

    on = rewriter_config_pb2.RewriterConfig.ON
    rewrite = config.graph_options.rewrite_options
    if mode == "bfloat16":
        rewrite.auto_mixed_precision_onednn_bfloat16 = on
    elif mode == "float16":
        rewrite.auto_mixed_precision = on
    return config


def loss_scale_optimizer(optimizer):
    """A TF1 ``optimizer`` wrapped in TF1's dynamic loss scale
    (``tf.compat.v1.mixed_precision.MixedPrecisionLossScaleOptimizer``): the loss is
    multiplied by the scale before the gradients and they are divided by it after; a step
    with a non-finite gradient is skipped and halves the scale, 2000 finite steps double
    it (start 2**15).  Its two variables (``current_loss_scale``, ``good_steps``) join the
    checkpoint beside the optimizer's slots; no model variable changes name or dtype."""
    import tensorflow as tf

    return tf.compat.v1.mixed_precision.MixedPrecisionLossScaleOptimizer(optimizer, "dynamic")


def saved_model_root():
    """An empty object that a SavedModel saves with each attribute under its own name.

    ``tf.Module`` would do but reserves ``variables``, a name ``model.export`` writes
    and users of its SavedModels read; its base class is only in ``tf.__internal__``.
    """
    import tensorflow as tf

    return tf.__internal__.tracking.AutoTrackable()


def read_saved_model_proto(path):
    """The ``SavedModel`` protocol buffer in ``path`` (a ``saved_model.pb``): its meta
    graphs with their signatures and GraphDefs, read without loading the model (the
    proto class has no public name in TF 2.21)."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    with open(path, "rb") as f:
        saved.ParseFromString(f.read())
    return saved


# TensorFlow's native start-up lines that say nothing to a CPU user; TF_CPP_MIN_LOG_LEVEL
# cannot hide them because they are written before absl logging is initialised.
_BENIGN_NATIVE_LINES = (
    "All log messages before absl::InitializeLog() is called",
    "cudart_stub.cc", "Could not find cuda drivers", "failed call to cuInit",
    "Unable to register cuDNN factory", "Unable to register cuFFT factory",
    "Unable to register cuBLAS factory", "computation_placer.cc", "TF-TRT Warning",
    "oneDNN custom operations are on", "This TensorFlow binary is optimized",
    "rebuild TensorFlow with the appropriate compiler flags",
)


def frozen_graph_def(concrete_function):
    """The GraphDef of a ``tf.function``'s concrete function with its variables turned
    into constants, as ``convert_variables_to_constants`` does for a TF1 session (its
    TF2 counterpart has no public name in TF 2.21)."""
    from tensorflow.python.framework import convert_to_constants

    return convert_to_constants.convert_variables_to_constants_v2(
        concrete_function).graph.as_graph_def()


def import_tensorflow_quietly():
    """Import TensorFlow and probe its devices with only the benign native noise dropped.

    Command-line tools call this first so that their own first line on stderr (an
    error, say) is the first line a user sees.  Everything else TensorFlow writes to
    the native stderr during start-up is passed through unchanged.
    """
    import os
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines():
                if line.strip() and not any(b in line for b in _BENIGN_NATIVE_LINES):
                    print(line, file=sys.stderr)
