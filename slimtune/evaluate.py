"""Evaluate a slim checkpoint with ``is_training=False``: top-1, top-5, mean loss.

BatchNorm uses its moving statistics and dropout is off, as at serving time.  The
``batch_statistics`` option instead normalises each batch with its own statistics
(what ``is_training=True`` does to BN, with dropout still off): comparing the two
tells whether the moving statistics describe the data (see seed 001: a large gap
means the update ops never ran or the BN decay is too slow for the run's length).

The graph has an auxiliary head only if the checkpoint holds one, and a checkpoint (or a
Keras model) that computes NaN or inf is reported as broken (``slimtune.probe``), not as
NaN metrics.

A Keras model (a ``.keras``, a Keras-engine train dir, a conversion's output directory)
is evaluated the same way, ``model(images, training=False)`` on the same input pipeline.
"""

import dataclasses
import os
import time
from typing import Optional

from slimtune import checkpoint, compat, metadata, probe, slim_run, sources
from slimtune.data import pipeline
from slimtune.errors import UsageError
from slimtune.nets import batch_norm as bn_lib
from slimtune.progress import format_seconds, log as _log


@dataclasses.dataclass
class EvalConfig:
    checkpoint_path: str
    dataset_name: str = "imagenet"
    dataset_split_name: str = "test"  # research/slim's default
    dataset_dir: Optional[str] = None
    dataset_file_pattern: Optional[str] = None
    model_name: Optional[str] = None  # default: from the training metadata
    preprocessing_name: Optional[str] = None
    eval_image_size: Optional[int] = None
    use_grayscale: bool = False  # default: as trained (slimtune.json, else the weights)
    batch_size: int = 100
    labels_offset: Optional[int] = None
    max_num_batches: Optional[int] = None
    moving_average_decay: Optional[float] = None
    batch_statistics: bool = False
    # research/slim's: write the metrics as TensorBoard events here (None: nowhere)
    eval_dir: Optional[str] = None
    num_preprocessing_threads: Optional[int] = None  # None: tf.data's AUTOTUNE


@dataclasses.dataclass
class EvalResult:
    checkpoint: str
    global_step: int
    top1: float
    top5: float
    loss: float
    count: int
    seconds: float
    correct: Optional[object] = None  # bool [count]: top-1 right, per image in split order

    def line(self):
        return (f"top-1 {self.top1:.4f}  top-5 {self.top5:.4f}  loss {self.loss:.4f}  "
                f"on {self.count} images  ({self.checkpoint}, step {self.global_step})")


def _run_info(cfg, on_file, keras=False):
    """Model name, BN, preprocessing, size and offset: flags, else the checkpoint's
    slimtune.json, else the architecture's defaults.  A Keras model has no batch
    statistics mode here: ``training=True`` would also turn its dropout on."""
    if keras and (cfg.batch_statistics or cfg.moving_average_decay):
        raise UsageError(f"{cfg.checkpoint_path} is a Keras model: drop --batch_statistics "
                         "and --moving_average_decay (they apply to slim checkpoints; "
                         "slimtune-doctor --keras_model measures a Keras model's BatchNorm "
                         "statistics)")
    flags = metadata.RunInfo(
        model_name=cfg.model_name, preprocessing=cfg.preprocessing_name,
        image_size=cfg.eval_image_size, labels_offset=cfg.labels_offset,
        grayscale=cfg.use_grayscale or None,
        batch_norm=metadata.batch_norm_flags(
            mode=bn_lib.BATCH_STATS if cfg.batch_statistics else None))
    return metadata.resolve(flags, on_file, size_flag="--eval_image_size",
                            mode_flag="--batch_statistics")


@dataclasses.dataclass
class _EvalGraph:
    """The inference network on the split's batches, its metrics and its restorer."""

    graph: object
    images: object
    logits: object
    end_points: dict
    losses: object
    bad_images: object  # the batch's images when its logits are not finite, else none
    top1: object
    top5: object
    step: object
    saver: object


def _build(cfg, run, split, num_classes, prefix):
    import tensorflow as tf

    v1 = tf.compat.v1
    spec = run.spec
    graph = tf.Graph()
    with graph.as_default():
        data = pipeline.batches(split, run.preprocessing, run.image_size, cfg.batch_size, False,
                                num_classes, run.labels_offset, grayscale=run.grayscale)
        images, labels = v1.data.make_one_shot_iterator(data).get_next()
        # --moving_average_decay: evaluate the averaged weights research/slim kept.
        net = slim_run.inference_network(spec, prefix, images, num_classes, run.batch_norm,
                                         moving_average_decay=cfg.moving_average_decay,
                                         global_step=True)
        logits, end_points = net.logits, net.end_points
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        # The images of a batch whose logits are not finite (none otherwise), to find
        # where the network goes NaN.
        bad_images = v1.cond(tf.reduce_all(tf.math.is_finite(logits)),
                             lambda: images[:0], lambda: images)
        top1 = tf.nn.in_top_k(predictions=logits, targets=labels, k=1)
        top5 = tf.nn.in_top_k(predictions=logits, targets=labels, k=min(5, num_classes))
    return _EvalGraph(graph, images, logits, end_points, losses, bad_images, top1, top5,
                      net.global_step, net.saver)


def _run_batches(cfg, g, prefix, started, log):
    """``(global step, [loss sum, top-1 sum, top-5 sum], image count, top-1 per batch)``."""
    import numpy as np
    import tensorflow as tf

    totals = np.zeros(3)
    count = 0
    correct = []
    with tf.compat.v1.Session(graph=g.graph) as sess:
        sess.run(g.step.initializer)
        g.saver.restore(sess, prefix)
        step = int(sess.run(g.step))
        batch = 0
        while cfg.max_num_batches is None or batch < cfg.max_num_batches:
            try:
                l, t1, t5, bad = sess.run([g.losses, g.top1, g.top5, g.bad_images])
            except tf.errors.OutOfRangeError:
                break
            if len(bad):  # NaN metrics would hide that the checkpoint itself is broken
                probe.check(prefix, sess, sess.run(g.logits, {g.images: bad}), g.end_points,
                            g.images, bad, g.logits)
            totals += [l.sum(), t1.sum(), t5.sum()]
            correct.append(t1)
            count += len(l)
            batch += 1
            if batch % 10 == 0:
                log(f"evaluated {count} images, {count / (time.monotonic() - started):.1f} img/s")
    return step, totals, count, correct


def evaluate(cfg: EvalConfig, log=_log) -> EvalResult:
    """Score ``cfg.checkpoint_path`` on the split (with ``eval_dir``, also written there as
    TensorBoard events, see :func:`write_summaries`)."""
    with pipeline.parallelism(num_threads=cfg.num_preprocessing_threads):
        result = _evaluate(cfg, log)
    if cfg.eval_dir:
        write_summaries(cfg.eval_dir, result)
        log(f"wrote eval/Accuracy, eval/Recall_5 and eval/Loss at step {result.global_step} "
            f"to {cfg.eval_dir}")
    return result


# research/slim's summary names (its eval_image_classifier.py), then slimtune's own.
SUMMARY_NAMES = {"eval/Accuracy": "top1", "eval/Recall_5": "top5", "eval/Loss": "loss"}


def write_summaries(eval_dir, result):
    """The metrics as TensorBoard scalars at the checkpoint's global step, under
    research/slim's names (``eval/Accuracy`` top-1, ``eval/Recall_5`` top-5) and slimtune's
    ``eval/Loss`` (the mean cross entropy), in an event file of ``eval_dir``."""
    import tensorflow as tf

    v1 = tf.compat.v1
    values = [v1.Summary.Value(tag=tag, simple_value=float(getattr(result, field)))
              for tag, field in SUMMARY_NAMES.items()]
    writer = tf.summary.create_file_writer(eval_dir)
    with writer.as_default():
        tf.summary.experimental.write_raw_pb(v1.Summary(value=values).SerializeToString(),
                                             step=result.global_step)
    writer.close()


def _grayscale_if(run, channels, what, log):
    """``run``, grayscale when the model takes 1 channel though nothing said so (a
    research/slim ``--use_grayscale`` checkpoint without slimtune.json); a grayscale run
    of a model taking 3 channels is a UsageError."""
    if run.grayscale and channels == 3:
        raise UsageError(f"--use_grayscale, but the {what} takes 3 channels: the model was "
                         "trained on RGB images; drop the flag")
    if run.grayscale or channels != 1:
        return run
    log(f"the {what} takes 1 channel: evaluating on grayscale images (research/slim's "
        "--use_grayscale)")
    return dataclasses.replace(run, grayscale=True)


def _evaluate(cfg, log):
    import numpy as np

    compat.apply()
    keras_path = sources.keras_path(cfg.checkpoint_path)
    if keras_path:
        prefix = keras_path
        run = _run_info(cfg, metadata.recorded(os.path.dirname(keras_path) or "."),
                        keras=True)
    else:
        prefix = sources.checkpoint_prefix(cfg.checkpoint_path)
        checkpoint.refuse_broken(prefix, averages=bool(cfg.moving_average_decay))
        run = _run_info(cfg, metadata.recorded(prefix))
        run = _grayscale_if(run, checkpoint.input_channels(checkpoint.read_shapes(prefix)),
                            "checkpoint's first convolution", log)
        if not cfg.moving_average_decay:  # the inference graph follows the default
            _, note = checkpoint.averages_to_read(run.spec, checkpoint.read_shapes(prefix))
            if note:  # slim_run.inference_network judges the shadows it restores
                log(note)
    split = pipeline.open_split(cfg.dataset_name, cfg.dataset_dir, cfg.dataset_split_name,
                                cfg.dataset_file_pattern)
    num_classes = run.num_classes or (split.num_classes - run.labels_offset)
    started = time.monotonic()
    if keras_path:
        step, totals, count, correct = _run_keras(cfg, run, split, num_classes, keras_path,
                                                  started, log)
    else:
        g = _build(cfg, run, split, num_classes, prefix)
        step, totals, count, correct = _run_batches(cfg, g, prefix, started, log)
    if count == 0:
        raise UsageError(f"split {cfg.dataset_split_name!r} of {split.dataset_dir} is empty")
    result = EvalResult(prefix, step, totals[1] / count, totals[2] / count, totals[0] / count,
                        count, time.monotonic() - started, np.concatenate(correct))
    mode = " (BatchNorm on batch statistics)" if cfg.batch_statistics else ""
    log(f"eval{mode}: {result.line()} in {format_seconds(result.seconds)}")
    return result


def _run_keras(cfg, run, split, num_classes, path, started, log):
    """:func:`_run_batches` for a Keras model: its logits on the split's batches."""
    import numpy as np
    import tensorflow as tf

    model = sources.load_keras(path)
    spec = run.spec if run.model_name else None  # names its layers' slim scopes
    run = _grayscale_if(run, model.inputs[0].shape[-1], "Keras model's input", log)
    data = pipeline.batches(split, run.preprocessing, run.image_size, cfg.batch_size, False,
                            num_classes, run.labels_offset, grayscale=run.grayscale)
    totals, count, correct = np.zeros(3), 0, []
    for batch, (images, labels) in enumerate(data):
        if cfg.max_num_batches is not None and batch >= cfg.max_num_batches:
            break
        logits = model(images, training=False)
        logits = logits[0] if isinstance(logits, (list, tuple)) else logits
        probe.check_keras(path, model, logits, images, spec)
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        top1 = tf.math.in_top_k(labels, logits, 1).numpy()
        top5 = tf.math.in_top_k(labels, logits, min(5, num_classes)).numpy()
        totals += [float(tf.reduce_sum(losses)), top1.sum(), top5.sum()]
        correct.append(top1)
        count += len(top1)
        if (batch + 1) % 10 == 0:
            log(f"evaluated {count} images, {count / (time.monotonic() - started):.1f} img/s")
    return _keras_step(path), totals, count, correct


def _keras_step(path):
    """The global step of the Keras-engine run whose model is ``path`` (its latest
    training checkpoint), else 0 (a converted model)."""
    latest = checkpoint.latest_in(os.path.dirname(os.path.abspath(path)), log=lambda line: None)
    suffix = latest.rsplit("-", 1)[-1] if latest else ""
    return int(suffix) if suffix.isdigit() else 0
