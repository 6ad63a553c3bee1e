"""The main job on built-in data: the whole life of a slim model, checked at every step.

What a slim user does with a published checkpoint, played out on scikit-learn's
handwritten digits so it runs anywhere without downloads:

1. **base**: train the network from scratch on digits 0-4 (it stands in for the
   published checkpoint you would download);
2. **fine-tune** it on digits 5-9 with a new head (``checkpoint_exclude_scopes`` = the
   logits scope) and a BatchNorm decay suited to a few hundred steps;
3. **evaluate** with ``is_training=False`` (moving statistics, as served) and with batch
   statistics: served not worse beyond chance shows the moving statistics were really
   updated (seed 001's failure is served far below batch statistics).  The gap is judged
   by the doctor's one-sided sign test on the images the two modes classify
   differently, not by a point threshold that 179 images cannot resolve;
4. **export** a frozen ``.pb`` and a SavedModel; **convert** to a Keras 3 ``.keras``
   (and the Keras SavedModel beside it);
5. **verify** every form against the checkpoint graph on the held-out images, class by
   class;
6. **keep training after the move**: the converted ``.keras`` trains on in Keras 3
   (``--engine=keras``) while the checkpoint trains on in the slim engine, the same
   steps on the same batches; their served accuracies must not differ beyond chance
   (the two-sided sign test);
7. **fine-tune in bfloat16** (``--mixed_precision=bfloat16``, on a CPU with AVX512_BF16
   or AMX; said and skipped elsewhere): the same fine-tune, served top-1 against the
   float32 one's by the same two-sided sign test.  Then one summary table: accuracy and
   parity of each form, both engines, both number formats.

Every output lives in ``work_dir``; running the command again resumes training where
it stopped and redoes the (cheap) export, conversion and verification.  Training is
always seeded and deterministic, so a fresh run prints the same summary table every
time on the same machine (only the wall time differs).
"""

import dataclasses
import os
import shutil
import time

import numpy as np

from slimtune import evaluate, export, forms, precision, registry, stats, train, verify
from slimtune.data import digits, pipeline
from slimtune.errors import SlimtuneError, UsageError
from slimtune.progress import format_seconds, log as _log

@dataclasses.dataclass
class QuickstartConfig:
    work_dir: str = os.path.join("runs", "quickstart")
    model_name: str = "resnet_v1_50"
    image_size: int = 32
    batch_size: int = 16
    base_classes: str = "0,1,2,3,4"
    new_classes: str = "5,6,7,8,9"
    base_steps: int = 250
    finetune_steps: int = 200
    continue_steps: int = 50  # both engines train on this much after the conversion
    bfloat16_finetune: bool = True  # the fine-tune again in bfloat16, where the CPU has it
    learning_rate: float = 0.002
    finetune_learning_rate: float = 0.001
    batch_norm_decay: float = 0.9  # small data, few steps: the published 0.997 would lag
    weight_decay: float = 0.0001
    verify_images: int = 200  # held-out images every form is verified on (the split has 180)
    seed: int = 0  # always seeded: the training runs are deterministic
    min_top1: float = 0.95
    rtol: float = 1e-5
    max_minutes: float = 10.0  # reported, not enforced: a busy machine is not a bad model


class TargetMissed(SlimtuneError):
    """The run finished but missed its accuracy or parity targets."""


def _classes(text, flag):
    try:
        classes = [int(c) for c in text.split(",") if c.strip()]
    except ValueError:
        raise UsageError(f"--{flag}={text!r} must be comma-separated digits 0-9") from None
    if len(classes) < 2 or len(set(classes)) != len(classes) or not set(classes) <= set(range(10)):
        raise UsageError(f"--{flag}={text!r} must name at least two distinct digits 0-9")
    return classes


def _train_config(cfg, train_dir, data, steps, learning_rate, **extra):
    per_epoch = len(data[1]) * 1438 // 10  # the digits train split has ~144 per class
    return train.TrainConfig(
        train_dir=train_dir, dataset_name=os.path.basename(data[0]), dataset_dir=data[0], model_name=cfg.model_name, preprocessing_name="lenet",
        train_image_size=cfg.image_size, batch_size=cfg.batch_size, max_number_of_steps=steps, optimizer="adam", learning_rate=learning_rate,
        opt_epsilon=1e-8, learning_rate_decay_type="polynomial",
        end_learning_rate=learning_rate / 100,
        num_epochs_per_decay=steps * cfg.batch_size / per_epoch,
        weight_decay=cfg.weight_decay, batch_norm_decay=cfg.batch_norm_decay,
        log_every_n_steps=25, save_interval_steps=100, seed=cfg.seed, **extra)


def _evaluate(checkpoint_path, data, batch_statistics, log):
    return evaluate.evaluate(evaluate.EvalConfig(
        checkpoint_path=checkpoint_path, dataset_name=os.path.basename(data[0]),
        dataset_dir=data[0], dataset_split_name="validation", batch_size=60,
        batch_statistics=batch_statistics), log=log)


def _fresh(path):
    """Remove a previous run's derived output (this job owns ``work_dir``)."""
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.remove(path)


class _Steps:
    """``[3/7] what`` headers with the time since the start."""

    def __init__(self, total, log):
        self.total, self.log, self.done, self.started = total, log, 0, time.monotonic()

    def __call__(self, title):
        self.done += 1
        self.log(f"\n[{self.done}/{self.total}] {title}  "
                 f"(elapsed {format_seconds(time.monotonic() - self.started)})")


@dataclasses.dataclass
class _BatchNormVerdict:
    """The fine-tuned model evaluated as served and on batch statistics, and how likely
    the images only batch statistics get right are to come by chance."""

    served: object  # evaluate.EvalResult
    batch_mode: object
    gap: float
    batch_only: int
    served_only: int
    gap_chance: float


def _check_config(cfg):
    """``(spec, base classes, new classes)``; bad flags are UsageErrors."""
    if cfg.seed is None:
        raise UsageError("--seed must be a number: the main job's figures repeat only "
                         "with a seed")
    spec = registry.get(cfg.model_name)
    return (spec, _classes(cfg.base_classes, "base_classes"),
            _classes(cfg.new_classes, "new_classes"))


def _data(cfg, base_classes, new_classes, step, log):
    """``(base data, new data)``: each ``(dataset dir, classes)``."""
    step("data: scikit-learn's handwritten digits as slim TFRecords")
    work = cfg.work_dir
    base_data = (digits.ensure(os.path.join(work, "data", "digits_base"), base_classes),
                 base_classes)
    new_data = (digits.ensure(os.path.join(work, "data", "digits_new"), new_classes),
                new_classes)
    log(f"{base_data[0]} (digits {cfg.base_classes}), {new_data[0]} (digits {cfg.new_classes})")
    return base_data, new_data


def _train_base_and_fine_tune(cfg, spec, base_data, new_data, finetune_dir, step, log):
    """``(base evaluation, fine-tuning result)``: the stand-in for a published checkpoint,
    then the fine-tune on the new digits with a new head."""
    step(f"base model: {spec.name} from scratch on digits {cfg.base_classes}")
    base_dir = os.path.join(cfg.work_dir, "base")
    train.train(_train_config(cfg, base_dir, base_data, cfg.base_steps, cfg.learning_rate),
                log=log)
    base_eval = _evaluate(base_dir, base_data, False, log)

    step(f"fine-tune on digits {cfg.new_classes}: new head, every layer trained")
    exclude = ",".join(spec.logits_scopes)
    log(f"warm start from {base_dir}, excluding {exclude} (the old {len(base_data[1])}-class "
        "head)")
    tuned = train.train(_train_config(
        cfg, finetune_dir, new_data, cfg.finetune_steps, cfg.finetune_learning_rate,
        checkpoint_path=base_dir, checkpoint_exclude_scopes=exclude), log=log)
    return base_eval, tuned


def _judge_batch_norm(finetune_dir, new_data, step, log):
    step("evaluate held-out digits: is_training=False, then batch statistics")
    served = _evaluate(finetune_dir, new_data, False, log)
    batch_mode = _evaluate(finetune_dir, new_data, True, log)
    batch_only, served_only = stats.disagreements(batch_mode.correct, served.correct)
    return _BatchNormVerdict(served, batch_mode, batch_mode.top1 - served.top1, batch_only,
                             served_only, stats.chance_of_gap(batch_only, served_only))


def _export_and_convert(cfg, finetune_dir, step, log):
    """``{form title: path}`` of the exported and converted forms."""
    from slimtune import convert  # imports Keras: not before the tool has started

    step("export: frozen .pb and SavedModel (is_training=False)")
    export_dir = os.path.join(cfg.work_dir, "export")
    frozen, saved_model = os.path.join(export_dir, "frozen.pb"), os.path.join(export_dir,
                                                                               "saved_model")
    for path in (frozen, frozen + ".json", saved_model):
        _fresh(path)
    os.makedirs(export_dir, exist_ok=True)
    export.export(export.ExportConfig(checkpoint_path=finetune_dir, output_file=frozen,
                                      output_dir=saved_model), log=log)

    step("convert to Keras 3 (.keras and Keras SavedModel), parity-checked")
    keras_dir = os.path.join(cfg.work_dir, "keras")
    convert.convert(convert.ConvertConfig(checkpoint_path=finetune_dir, output_dir=keras_dir,
                                          overwrite=True, rtol=cfg.rtol), log=log)
    return {"frozen .pb": frozen, "SavedModel (TF1)": saved_model,
            ".keras": os.path.join(keras_dir, convert.KERAS_FILE),
            "Keras SavedModel": os.path.join(keras_dir, convert.SAVED_MODEL_DIR)}


def _verify_forms(cfg, new_data, reference_path, paths, step, log):
    """``(image count, [(title, report or None for the reference)], {title: top-1})``:
    every form against the checkpoint graph on the held-out digits."""
    step("verify every form against the checkpoint graph on the held-out digits")
    images, labels = pipeline.load_eval_arrays(os.path.basename(new_data[0]), new_data[0],
                                               "validation", "lenet", cfg.image_size,
                                               cfg.verify_images)
    reference = forms.open_form(reference_path)
    reference_logits = reference.run(images)
    reports = [("slim checkpoint", None)]
    top1 = {"slim checkpoint": _top1(reference_logits, labels)}
    for title, path in paths.items():
        form = forms.open_form(path)
        report = verify.check(reference, form, images, rtol=cfg.rtol,
                              reference_logits=reference_logits)
        reports.append((title, report))
        for finding in report.findings:
            log(f"{title}: {finding.label}: {finding.text}")
        top1[title] = _top1(form.run(images), labels)
    return len(images), reports, top1


@dataclasses.dataclass
class _EnginesVerdict:
    """Both engines' served evaluations after training on from the converted model."""

    slim: object  # evaluate.EvalResult
    keras: object
    slim_only: int
    keras_only: int
    chance: float


def _keep_training(cfg, new_data, finetune_dir, keras_path, step, log):
    """The fine-tuned checkpoint trains on with the slim engine and its conversion with
    the Keras engine, ``continue_steps`` more steps each (same flags, seed and batches);
    both are evaluated as served."""
    step(f"keep training: {cfg.continue_steps} more steps in the slim engine and, from the "
         ".keras, in the Keras 3 engine")
    results = {}
    for engine, start in (("slim", finetune_dir), ("keras", keras_path)):
        train_dir = os.path.join(cfg.work_dir, f"continue_{engine}")
        _fresh(train_dir)
        train.train(_train_config(cfg, train_dir, new_data, cfg.continue_steps,
                                  cfg.finetune_learning_rate / 10, checkpoint_path=start,
                                  engine=engine), log=log)
        results[engine] = _evaluate(train_dir, new_data, False, log)
    slim_only, keras_only = stats.disagreements(results["slim"].correct,
                                                results["keras"].correct)
    return _EnginesVerdict(results["slim"], results["keras"], slim_only, keras_only,
                           stats.chance_of_difference(slim_only, keras_only))


@dataclasses.dataclass
class _PrecisionVerdict:
    """The fine-tune's served evaluation in float32 and in bfloat16."""

    float32: object  # evaluate.EvalResult
    bfloat16: object
    float32_only: int
    bfloat16_only: int
    chance: float


def _fine_tune_in_bfloat16(cfg, spec, new_data, served, step, log):
    """The fine-tune again with --mixed_precision=bfloat16 (same flags, seed, batches),
    evaluated as served and compared with ``served`` (the float32 fine-tune's); None
    where the CPU lacks bfloat16 or ``cfg.bfloat16_finetune`` is off."""
    step("fine-tune again in bfloat16 (--mixed_precision=bfloat16)")
    if not cfg.bfloat16_finetune:
        log("skipped: --bfloat16_finetune is off")
        return None
    try:
        precision.check_available(precision.BFLOAT16)
    except UsageError as e:
        log(f"skipped: {str(e).splitlines()[0]}")
        return None
    train_dir = os.path.join(cfg.work_dir, "finetune_bfloat16")
    train.train(_train_config(
        cfg, train_dir, new_data, cfg.finetune_steps, cfg.finetune_learning_rate,
        checkpoint_path=os.path.join(cfg.work_dir, "base"),
        checkpoint_exclude_scopes=",".join(spec.logits_scopes),
        mixed_precision=precision.BFLOAT16), log=log)
    half = _evaluate(train_dir, new_data, False, log)
    float32_only, bfloat16_only = stats.disagreements(served.correct, half.correct)
    return _PrecisionVerdict(served, half, float32_only, bfloat16_only,
                             stats.chance_of_difference(float32_only, bfloat16_only))


def _precision_rows(formats):
    if formats is None:
        return [("fine-tuned top-1, bfloat16", "skipped", "", None)]
    return [
        ("fine-tuned top-1, bfloat16, served", f"{formats.bfloat16.top1:.4f}", "", None),
        ("images right only in float32's", f"{formats.float32_only}", "", None),
        ("images right only in bfloat16's", f"{formats.bfloat16_only}", "", None),
        ("float32 vs bfloat16: chance (sign test)", f"{formats.chance:.4f}",
         f">= {stats.GAP_CHANCE}", bool(formats.chance >= stats.GAP_CHANCE)),
    ]


def _top1(logits, labels):
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def _checks(cfg, base_eval, verdict, engines=None, formats=None):
    """The summary's rows: ``(name, value, target, ok or None when there is no target)``;
    ``formats``: the bfloat16 fine-tune's verdict, None when it was skipped."""
    return [
        ("base top-1, digits " + cfg.base_classes, f"{base_eval.top1:.4f}", "", None),
        # bool(): top-1 is a numpy float, and a numpy False is not False.
        ("fine-tuned top-1, is_training=False", f"{verdict.served.top1:.4f}",
         f">= {cfg.min_top1}", bool(verdict.served.top1 >= cfg.min_top1)),
        ("fine-tuned top-1, BN batch statistics", f"{verdict.batch_mode.top1:.4f}", "", None),
        ("gap (batch statistics - served)", f"{verdict.gap:+.4f}", "", None),
        ("images right only with batch statistics", f"{verdict.batch_only}", "", None),
        ("images right only served", f"{verdict.served_only}", "", None),
        # One-sided: served scoring higher is not a BatchNorm problem.
        ("chance of that gap (sign test)", f"{verdict.gap_chance:.4f}",
         f">= {stats.GAP_CHANCE}", bool(verdict.gap_chance >= stats.GAP_CHANCE)),
    ] + (_engine_rows(cfg, engines) + _precision_rows(formats) if engines else [])


def _engine_rows(cfg, engines):
    more = f"+{cfg.continue_steps} steps"
    return [
        (f"{more}, slim engine, served top-1", f"{engines.slim.top1:.4f}", "", None),
        (f"{more}, Keras engine, served top-1", f"{engines.keras.top1:.4f}", "", None),
        ("images right only in the slim engine's", f"{engines.slim_only}", "", None),
        ("images right only in the Keras engine's", f"{engines.keras_only}", "", None),
        # Two-sided: either engine ahead beyond chance means they train differently.
        ("chance of that difference (sign test)", f"{engines.chance:.4f}",
         f">= {stats.GAP_CHANCE}", bool(engines.chance >= stats.GAP_CHANCE)),
    ]


def _missed(checks, forms):
    """Why the run missed its targets (see the summary), or None."""
    if not all(report.passed for _, report in forms[1:]):
        return ("an exported or converted form does not compute what the checkpoint "
                "computes (see the table above)")
    if any(ok is False for *_, ok in checks):
        return ("the main job missed its targets (see the summary above): try more "
                "--base_steps/--finetune_steps or another --batch_norm_decay")
    return None


def _print_summary(cfg, checks, count, forms, top1, log):
    log("")
    log(f"{'main job summary':<40} {'value':>8}  {'target':<9} ok")
    for name, value, target, ok in checks:
        verdict = "" if ok is None else "yes" if ok else "NO"
        log(f"{name:<40} {value:>8}  {target:<9} {verdict}".rstrip())
    log(f"\n{count} held-out images of digits {cfg.new_classes}, every form against "
        f"the checkpoint graph (pass: max rel <= {cfg.rtol}):")
    log(f"{'form':<18} {'top-1':>7} {'max abs':>9} {'max rel':>9} {'top-1 agree':>11}  verdict")
    for title, report in forms:
        if report is None:
            log(f"{title:<18} {top1[title]:>7.4f} {'-':>9} {'-':>9} {'-':>11}  reference")
        else:
            log(f"{title:<18} {top1[title]:>7.4f} {report.max_abs:>9.2g} {report.max_rel:>9.2g} "
                f"{report.top1_agreement:>11.4f}  {'PASS' if report.passed else 'FAIL'}")


def _print_times_and_outputs(cfg, elapsed, finetune_dir, paths, log):
    within_time = elapsed <= cfg.max_minutes * 60
    log(f"\nwall time {format_seconds(elapsed)} (target <= {cfg.max_minutes:g} min: "
        f"{'yes' if within_time else 'NO - machine busy or slow? accuracy still counts'})")
    log(f"outputs: {finetune_dir} (checkpoint), "
        f"{os.path.dirname(paths['frozen .pb'])} (.pb, SavedModel), "
        f"{os.path.dirname(paths['.keras'])} (.keras, Keras SavedModel)")


def run(cfg: QuickstartConfig, log=_log):
    """Run the main job; returns a dict of the summary figures (raises TargetMissed)."""
    started = time.monotonic()
    spec, base_classes, new_classes = _check_config(cfg)
    step = _Steps(9, log)
    log(f"slimtune main job: {spec.name} at {cfg.image_size}px, batch {cfg.batch_size}; base "
        f"{cfg.base_steps} steps on digits {cfg.base_classes}, fine-tune "
        f"{cfg.finetune_steps} steps on digits {cfg.new_classes}; BN decay "
        f"{cfg.batch_norm_decay}; output in {cfg.work_dir}")
    base_data, new_data = _data(cfg, base_classes, new_classes, step, log)
    finetune_dir = os.path.join(cfg.work_dir, "finetune")
    base_eval, tuned = _train_base_and_fine_tune(cfg, spec, base_data, new_data, finetune_dir,
                                                 step, log)
    verdict = _judge_batch_norm(finetune_dir, new_data, step, log)
    paths = _export_and_convert(cfg, finetune_dir, step, log)
    count, forms, top1 = _verify_forms(cfg, new_data, tuned.checkpoint, paths, step, log)
    engines = _keep_training(cfg, new_data, finetune_dir, paths[".keras"], step, log)
    formats = _fine_tune_in_bfloat16(cfg, spec, new_data, verdict.served, step, log)
    elapsed = time.monotonic() - started
    checks = _checks(cfg, base_eval, verdict, engines, formats)
    _print_summary(cfg, checks, count, forms, top1, log)
    _print_times_and_outputs(cfg, elapsed, finetune_dir, paths, log)
    missed = _missed(checks, forms)
    if missed:
        raise TargetMissed(missed)
    return {"base_top1": base_eval.top1, "top1": verdict.served.top1,
            "top1_batch_statistics": verdict.batch_mode.top1, "gap": verdict.gap,
            "batch_only": verdict.batch_only, "served_only": verdict.served_only,
            "gap_chance": verdict.gap_chance, "images": verdict.served.count,
            "seconds": elapsed, "checkpoint": tuned.checkpoint,
            "engines": {"slim_top1": engines.slim.top1, "keras_top1": engines.keras.top1,
                        "slim_only": engines.slim_only, "keras_only": engines.keras_only,
                        "chance": engines.chance},
            "bfloat16": None if formats is None else {
                "top1": formats.bfloat16.top1, "float32_only": formats.float32_only,
                "bfloat16_only": formats.bfloat16_only, "chance": formats.chance},
            "forms": {title: {"top1": top1[title],
                              "max_rel": None if report is None else report.max_rel,
                              "passed": None if report is None else report.passed}
                      for title, report in forms}}
