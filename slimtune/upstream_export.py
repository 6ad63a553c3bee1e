"""research/slim's ``export_inference_graph.py``: the architecture-only GraphDef.

What upstream writes, and what ``slimtune-export`` writes without ``--checkpoint_path``:
the network built for ``num_classes = dataset classes - labels_offset`` on a float32
placeholder named ``input`` (``[batch_size, image_size, image_size, 3]``, 1 channel with
``use_grayscale``), variables uninitialised, ``graph.as_graph_def()`` written binary or
(``write_text_graphdef``) as text.  Node names are upstream's, so the recipe that
follows it works unchanged: TF's ``freeze_graph`` at ``<Scope>/Predictions/Reshape_1``
(:func:`predictions_node` names it for each architecture).

Variables are TF1 reference variables (``VariableV2``), as upstream's TF1 graphs held:
TF 2.21's ``freeze_graph`` cannot restore resource variables (``VarHandleOp``) of a bare
GraphDef (its Saver fails with ``IndexError`` in ``ResourceVariableSaveable``).
"""

import dataclasses

from slimtune import files, metadata
from slimtune.data import tfrecord
from slimtune.errors import UsageError

INPUT_NODE = "input"
UPSTREAM_DEFAULT_MODEL = "inception_v3"  # export_inference_graph.py's --model_name default
UPSTREAM_DEFAULT_DATASET = "imagenet"
NO_QUANTIZE = ("--quantize is not supported: TF 2 has no quantize rewrite for TF1 graphs "
               "(tf.contrib.quantize.create_eval_graph is gone); export without it and "
               "quantize with the TFLite converter")

# Where upstream's softmax is for the networks whose slim definition here has no
# Predictions end point: the node freeze_graph is given.
_SOFTMAX_UNDER_LOGITS = ("InceptionV4", "InceptionResnetV2")  # tf.nn.softmax(name=...)
_NO_SOFTMAX = ("vgg_16", "vgg_19", "alexnet_v2")  # upstream freezes at fc8/squeezed


def dataset_classes(dataset_name, dataset_dir):
    """Class count of a dataset as upstream's dataset factory knows it: the
    ``labels.txt`` in ``dataset_dir``, else research/slim's hard-coded counts."""
    labels = tfrecord.read_labels(dataset_dir) if dataset_dir else None
    if labels:
        return max(labels) + 1
    if dataset_name in tfrecord.KNOWN_NUM_CLASSES:
        return tfrecord.KNOWN_NUM_CLASSES[dataset_name]
    raise UsageError(f"--dataset_name={dataset_name}: the class count is unknown; pass a "
                     f"--dataset_dir holding {tfrecord.LABELS_FILE}, or one of "
                     f"{', '.join(sorted(tfrecord.KNOWN_NUM_CLASSES))}")


def checkpoint_config(cfg):
    """``cfg`` of an export from a checkpoint; ``--is_training``, which only makes sense
    for the architecture-only graph, is refused; a dataset given sets the class count
    (``--use_grayscale`` applies to both: a 1-channel ``input``)."""
    if cfg.is_training:
        raise UsageError("--is_training applies to the architecture-only graph (no "
                         "--checkpoint_path); a frozen serving graph is built with "
                         "is_training=False")
    if (cfg.dataset_name or cfg.dataset_dir) and cfg.num_classes is None:
        classes = dataset_classes(cfg.dataset_name, cfg.dataset_dir)
        return dataclasses.replace(cfg, num_classes=classes - (cfg.labels_offset or 0))
    return cfg


def predictions_node(spec, logits, end_points):
    """Add upstream's softmax where the slim definition lacks it; the name of the node
    research/slim's recipe freezes at."""
    import tensorflow as tf

    from slimtune import compat

    slim = compat.apply()
    key = next((k for k in ("Predictions", "predictions") if k in end_points), None)
    if key:
        return end_points[key].op.name
    if spec.scope in _NO_SOFTMAX:
        return logits.op.name
    if spec.scope in _SOFTMAX_UNDER_LOGITS:
        with tf.name_scope(f"{spec.scope}/Logits/"):
            return tf.nn.softmax(logits, name="Predictions").op.name
    if logits.shape.rank == 4:  # MobileNets: upstream squeezes under Logits
        with tf.name_scope(f"{spec.scope}/Logits/"):
            logits = tf.squeeze(logits, [1, 2], name="SpatialSqueeze")
    return slim.softmax(logits, scope=f"{spec.scope}/Predictions").op.name


def graph_def(spec, num_classes, size, batch_size, is_training, channels=3):
    """``(GraphDef, predictions node)`` of the architecture, variables uninitialised."""
    import tensorflow as tf

    v1 = tf.compat.v1
    with tf.Graph().as_default() as graph:
        images = v1.placeholder(tf.float32, [batch_size, size, size, channels],
                                name=INPUT_NODE)
        # Reference variables, as TF1 made: TF 2's freeze_graph restores only those.
        with v1.variable_scope(v1.get_variable_scope(), use_resource=False):
            _, end_points = spec.build(images, num_classes, is_training=is_training)
        logits = end_points.get("Logits", end_points.get(f"{spec.scope}/logits"))
        if logits is None:  # vgg, alexnet: the squeezed fc8
            logits = graph.get_tensor_by_name(f"{spec.scope}/fc8/squeezed:0")
        node = predictions_node(spec, logits, end_points)
    return graph.as_graph_def(), node


def write(cfg, log):
    """Write ``cfg.output_file`` as research/slim's export_inference_graph.py does."""
    if not cfg.output_file:
        raise UsageError("pass --output_file: the GraphDef to write (without "
                         "--checkpoint_path, the architecture-only graph)")
    if cfg.output_dir:
        raise UsageError("--output_dir (a SavedModel) needs weights: pass --checkpoint_path")
    run = metadata.resolve(metadata.RunInfo(model_name=cfg.model_name or UPSTREAM_DEFAULT_MODEL,
                                            image_size=cfg.image_size))
    dataset = cfg.dataset_name or UPSTREAM_DEFAULT_DATASET
    offset = cfg.labels_offset or 0
    num_classes = cfg.num_classes or dataset_classes(dataset, cfg.dataset_dir) - offset
    channels = 1 if cfg.use_grayscale else 3
    definition, node = graph_def(run.spec, num_classes, run.image_size, cfg.batch_size,
                                 cfg.is_training, channels)
    if cfg.write_text_graphdef:
        files.write_text(cfg.output_file, str(definition))
    else:
        files.write_text(cfg.output_file, definition.SerializeToString(), mode="wb")
    log(f"wrote {cfg.output_file}: {run.spec.name} architecture only (no weights), "
        f"{num_classes} classes ({dataset} - labels_offset {offset}), input '{INPUT_NODE}' "
        f"[{cfg.batch_size or 'None'}, {run.image_size}, {run.image_size}, {channels}], "
        f"is_training={cfg.is_training}, {'text' if cfg.write_text_graphdef else 'binary'}")
    log(f"freeze it with a checkpoint: python -m tensorflow.python.tools.freeze_graph "
        f"--input_graph={cfg.output_file} --input_binary="
        f"{str(not cfg.write_text_graphdef).lower()} --input_checkpoint=<checkpoint prefix> "
        f"--output_node_names={node} --output_graph=<frozen .pb>")
    return node
