"""Export a slim checkpoint as a frozen inference GraphDef and a SavedModel.

What research/slim's ``export_inference_graph.py`` + ``freeze_graph`` produced, in one
step: the network built with ``is_training=False`` (BatchNorm on moving statistics,
dropout off), variables folded into constants, named input and output nodes.  The
SavedModel carries the same graph with a ``serving_default`` signature (float32 NHWC
images in; logits and probabilities out) that TF2's ``tf.saved_model.load`` opens.
Everything is written under temporary names and renamed when complete.  The graph has
an auxiliary head only if the checkpoint holds one; a checkpoint (or a Keras model) that
computes NaN or inf on seeded random images is refused before anything is written
(``slimtune.probe``).
"""

import dataclasses
import os
from typing import Optional

from slimtune import checkpoint, files, metadata, probe, slim_run, sources, upstream_export
from slimtune.errors import UsageError
from slimtune.progress import log as _log

INPUT_NODE = "input"
LOGITS_NODE = "logits"
PROBABILITIES_NODE = "probabilities"


@dataclasses.dataclass
class ExportConfig:
    checkpoint_path: Optional[str] = None  # None: research/slim's architecture-only graph
    output_file: Optional[str] = None  # frozen .pb
    output_dir: Optional[str] = None  # SavedModel directory
    model_name: Optional[str] = None  # default: the checkpoint's slimtune.json
    image_size: Optional[int] = None  # default: as trained, else the architecture's
    batch_size: Optional[int] = None  # None: dynamic batch
    num_classes: Optional[int] = None  # default: as trained, else the checkpoint's logits
    labels_offset: Optional[int] = None  # informational, stored in the sidecar JSON
    # research/slim's export_inference_graph.py flags (slimtune.upstream_export).
    is_training: bool = False
    dataset_name: Optional[str] = None  # for the class count; default imagenet (1001)
    dataset_dir: Optional[str] = None
    write_text_graphdef: bool = False
    quantize: bool = False
    use_grayscale: bool = False


def _run_info(cfg, prefix):
    """Flags, else the checkpoint's slimtune.json, else the architecture's defaults; the
    class count, when neither flag nor file says it, is the checkpoint's logits'; the
    input is 1-channel with ``--use_grayscale``, a grayscale run's file, or a checkpoint
    whose first convolution takes 1 channel."""
    flags = metadata.RunInfo(model_name=cfg.model_name, image_size=cfg.image_size,
                             num_classes=cfg.num_classes, labels_offset=cfg.labels_offset,
                             grayscale=cfg.use_grayscale or None)
    run = metadata.resolve(flags, metadata.recorded(prefix))
    is_keras = sources.kind_of(prefix) == sources.KERAS
    if not run.grayscale and not is_keras and checkpoint.input_channels(
            checkpoint.read_shapes(prefix)) == 1:
        run = dataclasses.replace(run, grayscale=True)
    num_classes = run.num_classes
    if num_classes is None and is_keras:
        raise UsageError(f"{prefix} has no slimtune.json saying its class count: pass "
                         "--num_classes")
    if num_classes is None:
        num_classes = checkpoint.logits_classes(run.spec, checkpoint.read_shapes(prefix), prefix)
    return dataclasses.replace(run, num_classes=int(num_classes))


def _frozen_keras(path, size, batch_size, spec, channels=3):
    """The frozen inference graph of the Keras model at ``path`` (a mirror of ``spec``),
    under the same node names as a checkpoint's (``training=False``: moving statistics, no
    dropout)."""
    import tensorflow as tf

    from slimtune import compat

    model = sources.load_keras(path)

    @tf.function(input_signature=[tf.TensorSpec([batch_size, size, size, channels],
                                                 tf.float32, name=INPUT_NODE)])
    def serve(images):
        logits = model(images, training=False)
        logits = tf.identity(logits[0] if isinstance(logits, (list, tuple)) else logits,
                             name=LOGITS_NODE)
        return {"logits": logits, "probabilities": tf.nn.softmax(logits,
                                                                 name=PROBABILITIES_NODE)}

    # A model computing NaN would export a graph that serves NaN: refuse it.
    probe_images = probe.random_images(batch_size or 2, size, channels=channels)
    probe.check_keras(path, model, serve(tf.constant(probe_images))["logits"], probe_images,
                      spec)
    return compat.frozen_graph_def(serve.get_concrete_function())


def _frozen_graph(spec, prefix, size, num_classes, bn, batch_size, channels=3):
    """(GraphDef with constants, dict of node names) of the inference network."""
    import tensorflow as tf

    from slimtune import compat

    compat.apply()
    v1 = tf.compat.v1
    with tf.Graph().as_default() as graph:
        images = v1.placeholder(tf.float32, [batch_size, size, size, channels],
                                name=INPUT_NODE)
        net = slim_run.inference_network(spec, prefix, images, num_classes, bn)
        logits, end_points = net.logits, net.end_points
        tf.identity(logits, name=LOGITS_NODE)
        tf.nn.softmax(logits, name=PROBABILITIES_NODE)
        # Unfused (compat.session_config): the probe must see every NaN.
        with v1.Session(graph=graph, config=compat.session_config(fuse=False)) as sess:
            net.saver.restore(sess, prefix)
            # A checkpoint computing NaN would export a graph that serves NaN: refuse it.
            probe_images = probe.random_images(batch_size or 2, size, channels=channels)
            probe.check(prefix, sess, sess.run(logits, {images: probe_images}), end_points,
                        images, probe_images, logits)
            frozen = v1.graph_util.convert_variables_to_constants(
                sess, graph.as_graph_def(), [LOGITS_NODE, PROBABILITIES_NODE])
    return frozen


def _write_pb(frozen, path, sidecar, text=False):
    with files.staged(path) as tmp:
        if text:  # --write_text_graphdef
            files.write_text(tmp, str(frozen))
        else:
            files.write_text(tmp, frozen.SerializeToString(), mode="wb")
        files.write_json(path + ".json", sidecar, indent=2, sort_keys=True)


def _write_saved_model(frozen, directory, sidecar):
    import tensorflow as tf

    v1 = tf.compat.v1

    def fill(tmp):
        with tf.Graph().as_default() as graph:
            tf.graph_util.import_graph_def(frozen, name="")
            inputs = graph.get_tensor_by_name(INPUT_NODE + ":0")
            outputs = {"logits": graph.get_tensor_by_name(LOGITS_NODE + ":0"),
                       "probabilities": graph.get_tensor_by_name(PROBABILITIES_NODE + ":0")}
            signature = v1.saved_model.signature_def_utils.predict_signature_def(
                {"images": inputs}, outputs)
            builder = v1.saved_model.Builder(tmp)
            with v1.Session(graph=graph) as sess:
                builder.add_meta_graph_and_variables(
                    sess, [v1.saved_model.tag_constants.SERVING],
                    signature_def_map={"serving_default": signature})
            builder.save()
        metadata.write(tmp, sidecar)
        if os.path.exists(directory):
            raise UsageError(f"output directory {directory} already exists: remove it or "
                             "choose another --output_dir")

    files.write_directory(directory, fill)


def export(cfg: ExportConfig, log=_log):
    """Write the requested forms; returns the sidecar dict (None for an
    architecture-only graph, which has no sidecar, as research/slim's has none)."""
    if cfg.quantize:
        raise UsageError(upstream_export.NO_QUANTIZE)
    if not cfg.checkpoint_path:
        upstream_export.write(cfg, log)
        return None
    cfg = upstream_export.checkpoint_config(cfg)
    if not cfg.output_file and not cfg.output_dir:
        raise UsageError("nothing to write: pass --output_file (frozen .pb) and/or "
                         "--output_dir (SavedModel)")
    if cfg.output_dir and os.path.exists(cfg.output_dir):
        raise UsageError(f"output directory {cfg.output_dir} already exists: remove it or "
                         "choose another --output_dir")
    keras_path = sources.keras_path(cfg.checkpoint_path)
    prefix = keras_path or sources.checkpoint_prefix(cfg.checkpoint_path)
    if not keras_path:
        checkpoint.refuse_broken(prefix)
    run = _run_info(cfg, prefix)
    spec, size = run.spec, run.image_size
    log(f"exporting {prefix}: {spec.name}, {run.num_classes} classes, {size}px, batch "
        f"{cfg.batch_size or 'dynamic'}, {run.channels} input channel"
        f"{'s' if run.channels > 1 else ' (grayscale)'}, is_training=False")
    if keras_path:
        frozen = _frozen_keras(keras_path, size, cfg.batch_size, spec, run.channels)
    else:
        frozen = _frozen_graph(spec, prefix, size, run.num_classes, run.batch_norm,
                               cfg.batch_size, run.channels)
    sidecar = metadata.export_document(
        run, checkpoint=prefix,
        serving=metadata.Serving(INPUT_NODE, (LOGITS_NODE, PROBABILITIES_NODE),
                                 (cfg.batch_size, size, size, run.channels)))
    if cfg.output_file:
        _write_pb(frozen, cfg.output_file, sidecar, cfg.write_text_graphdef)
        log(f"wrote {cfg.output_file} (input node '{INPUT_NODE}', output nodes "
            f"'{LOGITS_NODE}', '{PROBABILITIES_NODE}') and {cfg.output_file}.json")
    if cfg.output_dir:
        _write_saved_model(frozen, cfg.output_dir, sidecar)
        log(f"wrote SavedModel {cfg.output_dir} (signature serving_default: images -> "
            "logits, probabilities)")
    return sidecar
