"""slimtune-convert: a slim checkpoint in, a verified Keras 3 model out.

Order of work, chosen so that nothing is written unless everything succeeded:
read and identify the checkpoint, build the Keras mirror and port every tensor (an
unmatched name on either side is an error), run the slim graph and the Keras model on
the same images and refuse beyond ``rtol``, then write ``model.keras``, a SavedModel and
``slimtune.json`` into a temporary directory that is renamed to ``output_dir`` last.

The slim graph has an auxiliary head only if the checkpoint holds one, and a checkpoint
whose own graph computes NaN or inf is named as broken (``slimtune.probe``) rather than
reported as a parity failure.
"""

import ctypes
import dataclasses
import gc
import os
import time
from typing import Optional, Sequence

import numpy as np

from slimtune import checkpoint, compare, files, metadata, probe, registry, slim_run
from slimtune import sources
from slimtune.data import pipeline
from slimtune.errors import CheckpointError, SlimtuneError, UsageError
from slimtune.progress import log as _log

KERAS_FILE = metadata.KERAS_FILE
SAVED_MODEL_DIR = "saved_model"


class ParityError(SlimtuneError):
    """The converted model does not compute what the checkpoint computes."""


@dataclasses.dataclass
class Source:
    prefix: str
    tensors: dict  # {checkpoint name: array}
    recorded: metadata.RunInfo  # what the checkpoint's slimtune.json says (empty if none)
    sha256: dict  # {file name: sha256} of the checkpoint files


def read_source(prefix):
    """Every tensor of the checkpoint at ``prefix``; unreadable or truncated data fails here."""
    return Source(prefix, checkpoint.read_tensors(prefix), metadata.recorded(prefix),
                  checkpoint.file_hashes(prefix))


@dataclasses.dataclass
class ConvertConfig:
    checkpoint_path: str
    output_dir: str
    model_name: Optional[str] = None
    num_classes: Optional[int] = None  # must equal the checkpoint's logits (minus background)
    drop_background: bool = False
    # None: the architecture's default (checkpoint.averages_to_read)
    use_moving_averages: Optional[bool] = None
    include_aux_logits: bool = False
    batch_norm_decay: Optional[float] = None
    batch_norm_epsilon: Optional[float] = None
    batch_norm_scale: Optional[bool] = None
    image_size: Optional[int] = None  # parity-check size (default: metadata, then the net's)
    fixed_input_size: bool = False  # bake image_size into the Keras input
    images: Sequence[str] = ()  # real image files for the parity check
    random_images: int = 4
    seed: int = 0
    rtol: float = 1e-5
    overwrite: bool = False


def _run_info(cfg, src, log=_log):
    """Flags, else the checkpoint's slimtune.json, else the architecture's defaults; the
    architecture is checked against (or read from) the checkpoint's variables, and so is
    a grayscale input when no file says it (a research/slim ``--use_grayscale``
    checkpoint: its first convolution takes 1 channel).  BatchNorm follows the network:
    freezing is the user's ``trainable=False`` later."""
    flags = metadata.RunInfo(
        model_name=cfg.model_name, image_size=cfg.image_size,
        batch_norm=metadata.batch_norm_flags(cfg.batch_norm_decay, cfg.batch_norm_epsilon,
                                             cfg.batch_norm_scale))
    run = metadata.resolve(flags, src.recorded,
                           identify=lambda name: registry.identify(src.tensors, name))
    if not run.grayscale and checkpoint.input_channels(src.tensors) == 1:
        log("the checkpoint's first convolution takes 1 input channel: a grayscale model "
            "(research/slim's --use_grayscale), converted with a 1-channel input")
        run = dataclasses.replace(run, grayscale=True)
    return run


def _class_count(spec, tensors, cfg):
    in_checkpoint = checkpoint.logits_classes(spec, tensors)
    out = in_checkpoint - (1 if cfg.drop_background else 0)
    if cfg.num_classes is not None and cfg.num_classes != out:
        hint = (" (add --drop_background to go from 1001 to 1000 classes)"
                if cfg.num_classes == in_checkpoint - 1 and not cfg.drop_background else "")
        raise UsageError(f"--num_classes={cfg.num_classes} but the checkpoint's logits "
                         f"({spec.logits_scopes[0]}) have {in_checkpoint} classes{hint}")
    if cfg.drop_background and in_checkpoint < 3:
        raise UsageError(f"--drop_background: the checkpoint has only {in_checkpoint} classes")
    return in_checkpoint, out


def _check_aux_logits(spec, src, cfg):
    """--include_aux_logits needs a network with an auxiliary head and a checkpoint that
    holds it (one saved with create_aux_logits=False has none)."""
    if not cfg.include_aux_logits or spec.holds_aux_logits(src.tensors):
        return
    if not spec.aux_logits:
        raise UsageError(f"--include_aux_logits: {spec.name} has no auxiliary head; drop the "
                         "flag")
    raise UsageError(f"--include_aux_logits: checkpoint {src.prefix} holds no auxiliary head "
                     f"(no variables under {spec.aux_scope}/; it was saved without one): drop "
                     "the flag to convert the main logits")


def _check_output_dir(cfg):
    if os.path.exists(cfg.output_dir) and os.listdir(cfg.output_dir) and not cfg.overwrite:
        raise UsageError(f"output directory {cfg.output_dir} is not empty: choose another "
                         "--output_dir or pass --overwrite")


def _hint_for(error, tensors):
    """Add the specific fix to a port error whose cause is recognisable."""
    text = str(error)
    if "moving_mean not in" in text or "moving_variance not in" in text:
        return CheckpointError(
            "the checkpoint has no BatchNorm moving statistics for some layers (" +
            text.split(": ", 1)[1].split(";")[0] + "); it was saved from a Saver over "
            "trainable variables only: save with all global variables and convert again\n"
            + text)
    return error


def _release_memory():
    """Collect garbage and hand freed heap memory back to the system (glibc's
    ``malloc_trim``; elsewhere only the collection).

    Freed tensors (the checkpoint's arrays, the closed slim session's weights, a graph
    run's activations) stay in the allocator's free lists, still counted as the
    process's memory, and the next large buffer (``model.save`` builds the weights file
    in memory) comes on top.  Measured for resnet_v1_152 with Eigen kernels
    (TF_ENABLE_ONEDNN_OPTS=0): peak RSS 1705 MiB without this, 1383 MiB with it.  With
    oneDNN kernels (slimtune's default) TensorFlow keeps freed tensors in its own pool
    for reuse, and this gains about 25 MiB.
    """
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError, TypeError):  # not glibc
        pass


def serving_function(model):
    """``model.__call__`` traced once for batches of any size: the concrete function that
    both the parity check and the SavedModel run.

    A graph frees each layer's output as soon as it is used; an eager call of a
    functional model keeps every layer's output until it returns (measured: +1 GB of
    peak memory for resnet_v1_152 on 4 images at 224 px).
    """
    import tensorflow as tf

    x = model.inputs[0]
    spec = tf.TensorSpec((None,) + tuple(x.shape[1:]), x.dtype, name=x.name)
    return tf.function(model.__call__, input_signature=[spec],
                       autograph=False).get_concrete_function()


def _write_saved_model(model, serve, path):
    """The SavedModel ``model.export`` writes (a ``serve`` endpoint, the same two
    signatures, the ``variables`` lists), from the ``serve`` the parity check traced.

    ``model.export`` traces the model twice more (walking every layer for lookup tables,
    and again inside TensorFlow's save context) and saves each weight twice, as the Keras
    variable and as the TensorFlow variable inside it; saving the TensorFlow variables
    (``Variable.value`` on the TensorFlow backend) once, with the traced function, took
    11.4 s instead of 30.9 s for resnet_v1_50 and half the disk space.  TF2's
    ``tf.saved_model.load`` and the TF1 loader (what TF Serving runs) both open it.
    """
    import tensorflow as tf

    from slimtune import compat

    root = compat.saved_model_root()
    root.variables = [v.value for v in model.variables]
    root.trainable_variables = [v.value for v in model.trainable_variables]
    root.non_trainable_variables = [v.value for v in model.non_trainable_variables]
    root.serve = serve
    tf.saved_model.save(root, path, signatures={"serve": serve, "serving_default": serve})


def check_parity(run, src, serve, num_classes, cfg, variable_map, log, model=None):
    """Slim graph vs Keras model (run by ``serve``) on random (and real) images; returns a
    dict for the JSON.  Keras logits that are not finite where the slim graph's are (the
    slim graph's own NaN is named in ``slim_run``) are named as such (``model``: the layer
    and the weights feeding it), not as a parity failure."""
    import tensorflow as tf

    spec, bn, size = run.spec, run.batch_norm, run.image_size
    inputs = {"random": probe.random_images(cfg.random_images, size, cfg.seed, run.channels)}
    if cfg.images:
        inputs["images"] = pipeline.load_images(cfg.images, run.preprocessing, size,
                                                run.grayscale)
    report = {"image_size": size, "rtol": cfg.rtol}
    failures = []
    first = 1 if cfg.drop_background else 0
    started = time.monotonic()
    slim = slim_run.slim_outputs_each(
        spec, src.prefix, inputs, num_classes, bn, drop_background=cfg.drop_background,
        variable_map=variable_map,
        end_point_keys=[spec.aux_logits] if cfg.include_aux_logits else [])
    _release_memory()  # the slim graph and its session's copy of the weights
    log(f"slim graph built, restored and run in {time.monotonic() - started:.1f} s")
    started = time.monotonic()
    for name, images in inputs.items():
        slim_logits, slim_points = slim[name]
        outputs = serve(tf.constant(images))
        pairs = {name: (slim_logits, outputs[0] if cfg.include_aux_logits else outputs)}
        if cfg.include_aux_logits:  # the auxiliary head is checked like the logits
            pairs[f"{name} aux"] = (slim_points[spec.aux_logits][:, first:], outputs[1])
        for key, (reference, candidate) in pairs.items():
            _refuse_non_finite(model, images, candidate, spec)
            diff = compare.difference(reference, np.asarray(candidate))
            log(f"parity on {len(images)} {key} images at {size}px: {diff.line()}")
            report[key] = dataclasses.asdict(diff)
            if not diff.max_rel <= cfg.rtol:
                failures.append(f"{key} images: max rel {diff.max_rel:.3g} > --rtol "
                                f"{cfg.rtol:g}")
    log(f"Keras model run in {time.monotonic() - started:.1f} s")
    _release_memory()
    if failures:
        raise ParityError(f"the Keras model does not match the checkpoint ({'; '.join(failures)}); "
                          f"nothing written. Check the BatchNorm parameters "
                          f"(epsilon {bn.epsilon if bn else '-'}, scale {bn.scale if bn else '-'}) "
                          "against how the checkpoint was trained, or run slimtune-verify "
                          "--layerwise to find the layer")
    return report


def _refuse_non_finite(model, images, candidate, spec):
    """ParityError naming where the Keras model goes non-finite, when it does (the slim
    graph computed finite values on the same images)."""
    candidate = np.asarray(candidate)
    if np.all(np.isfinite(candidate)):
        return
    where = (probe.keras_only_non_finite(model, candidate, images, spec) if model is not None
             else "the Keras model computes non-finite logits (NaN/inf)")
    raise ParityError(f"{where}, where the slim graph computes finite ones on the same "
                      "images; nothing written. The checkpoint's values are finite and in "
                      "range, so the two computations differ there: compare that layer's "
                      "Keras definition with its slim one")


def _write(model, serve, cfg, meta_out, log):
    def fill(tmp):
        started = time.monotonic()
        model.save(os.path.join(tmp, KERAS_FILE))
        log(f"wrote {KERAS_FILE} in {time.monotonic() - started:.1f} s; exporting the "
            "SavedModel")
        started = time.monotonic()
        _write_saved_model(model, serve, os.path.join(tmp, SAVED_MODEL_DIR))
        log(f"wrote {SAVED_MODEL_DIR}/ in {time.monotonic() - started:.1f} s")
        metadata.write(tmp, meta_out)

    # output_dir is absent, empty, or --overwrite (checked before any work)
    files.write_directory(cfg.output_dir, fill)


def _port(run, src, num_classes, cfg, averages):
    """The Keras mirror with the checkpoint's weights (or, with ``averages``, their
    moving averages), and the slim variable names to read for them (``{}``: as named)."""
    tensors, variable_map = src.tensors, {}
    if averages:
        tensors, variable_map = checkpoint.with_moving_averages(src.tensors)
    fixed = cfg.fixed_input_size or cfg.include_aux_logits
    try:
        model = run.spec.keras_from_tensors(
            tensors, num_classes, run.batch_norm, drop_background=cfg.drop_background,
            include_aux_logits=cfg.include_aux_logits,
            image_size=run.image_size if fixed else None, channels=run.channels)
    except CheckpointError as e:
        raise _hint_for(e, tensors) from None
    return model, variable_map


def _converted(run, src, num_classes, cfg, report, averages):
    """The slimtune.json of the converted model: the run, minus the background class
    when it was dropped, and where it came from."""
    labels, offset = run.labels, run.labels_offset
    if cfg.drop_background:
        offset += 1
        if labels:
            labels = {k - 1: v for k, v in labels.items() if k > 0}
    return metadata.conversion_document(
        dataclasses.replace(run, num_classes=num_classes, labels=labels, labels_offset=offset),
        source_checkpoint=os.path.abspath(cfg.checkpoint_path),
        source_prefix=os.path.basename(src.prefix), source_sha256=src.sha256,
        drop_background=cfg.drop_background,
        input_size_fixed=cfg.fixed_input_size or cfg.include_aux_logits,
        use_moving_averages=averages,
        include_aux_logits=cfg.include_aux_logits, parity=report,
        files={"keras": KERAS_FILE, "saved_model": SAVED_MODEL_DIR})


def convert(cfg: ConvertConfig, log=_log):
    """Run a conversion; returns the metadata dict written beside the model."""
    from slimtune import compat

    compat.apply()
    started = time.monotonic()
    _check_output_dir(cfg)
    src = read_source(sources.checkpoint_prefix(cfg.checkpoint_path))
    run = _run_info(cfg, src, log)  # slimtune.json and the variable names: no values yet
    averages, note = checkpoint.averages_to_read(run.spec, src.tensors, cfg.use_moving_averages)
    if note:  # the architecture's default
        log(note + "; pass --nouse_moving_averages for the raw weights")
    # Judged once, the shadows too when they are what the model will hold.
    checkpoint.refuse_broken(src.prefix, averages=averages, tensors=src.tensors)
    in_checkpoint, num_classes = _class_count(run.spec, src.tensors, cfg)
    _check_aux_logits(run.spec, src, cfg)
    bn = run.batch_norm
    bn_text = (f"BN epsilon {bn.epsilon}, scale {bn.scale}, momentum {bn.decay}"
               if bn else "no BN")
    log(f"converting {src.prefix}: {run.model_name}, {in_checkpoint} classes"
        f"{' -> ' + str(num_classes) if num_classes != in_checkpoint else ''}, {bn_text}")
    model, variable_map = _port(run, src, num_classes, cfg, averages)
    log(f"ported {len(model.weights)} weights in {time.monotonic() - started:.1f} s; "
        "checking parity with the slim graph")
    # The Keras variables hold the weights now; the slim graph restores its own copy.
    src.tensors = None
    _release_memory()
    traced = time.monotonic()
    serve = serving_function(model)
    log(f"traced the Keras model in {time.monotonic() - traced:.1f} s")
    report = check_parity(run, src, serve, in_checkpoint, cfg, variable_map, log, model)
    meta_out = _converted(run, src, num_classes, cfg, report, averages)
    _write(model, serve, cfg, meta_out, log)
    log(f"wrote {cfg.output_dir} ({KERAS_FILE}, {SAVED_MODEL_DIR}/, {metadata.FILENAME}) "
        f"in {time.monotonic() - started:.1f} s")
    return meta_out
