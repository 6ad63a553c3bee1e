"""The parity check every converter test runs: slim graph vs Keras mirror, same inputs.

A checkpoint with random weights, biases and BatchNorm statistics is converted; the
slim graph (``is_training=False``) and the Keras model (``training=False``) then run on
one seeded batch, and the logits and every matching end point are compared unsorted.
With ``forms=True`` the shipped forms are checked too: the frozen ``.pb`` and the
SavedModel written by slimtune-export and the ``.keras`` file, each reopened from disk
the way slimtune-verify opens it (which also runs each twice, so a form that is not a
pure function of its input fails).

:func:`reload_without_slimtune` runs a ``.keras`` in a fresh process that never imports
slimtune: what a user without slimtune installed gets.
"""

import os
import subprocess
import sys

import keras
import numpy as np

from slimtune import compare, export, forms, probe, registry, verify
from slimtune.testing import photos  # noqa: F401  (the parity tests' real images)
from slim_checkpoints import make_checkpoint, read


def keras_end_points(model, layer_names, images):
    probe = keras.Model(model.input, [model.get_layer(n).output for n in layer_names])
    outputs = probe(images, training=False)
    return [np.asarray(o) for o in (outputs if isinstance(outputs, (list, tuple)) else [outputs])]


def check_forms(tmp_path, prefix, model, model_name, image_size, images, slim_logits,
                rtol=1e-5):
    """The exported .pb and SavedModel and the saved .keras against the slim logits."""
    export.export(export.ExportConfig(
        checkpoint_path=prefix, model_name=model_name, image_size=image_size,
        output_file=str(tmp_path / "frozen.pb"), output_dir=str(tmp_path / "saved_model")),
        log=lambda message: None)
    model.save(str(tmp_path / "model.keras"))
    reference = forms.Form("checkpoint", prefix, None, deterministic_by_construction=True)
    reports = {}
    for path in ("frozen.pb", "saved_model", "model.keras"):
        form = forms.open_form(str(tmp_path / path))
        report = verify.check(reference, form, images, rtol=rtol, reference_logits=slim_logits)
        print(f"{model_name} {image_size}px {form.kind}: max rel {report.max_rel:.3g}, "
              f"top-1 agreement {report.top1_agreement:.4f}, "
              f"{[f.label for f in report.findings] or 'no findings'}")
        reports[form.kind] = report
        if form.kind == "frozen":
            assert not any(n.op in ("VariableV2", "VarHandleOp") for n in form.graph_def.node)
    failed = {kind: r.max_rel for kind, r in reports.items() if not r.passed or r.max_rel > rtol}
    assert not failed, f"{model_name} at {image_size}px: forms differ from the checkpoint: {failed}"
    return reports


def check_parity(tmp_path, model_name, image_size, num_classes=7, batch=2, seed=0,
                 rtol=1e-5, forms=False, aux=False, images=None, label=""):
    """Convert a random checkpoint and assert slim/Keras parity; returns the differences.

    ``aux`` converts the auxiliary head too and compares it with slim's ``AuxLogits``;
    ``images`` (``label`` in the printed lines) replace the seeded random batch.
    """
    spec = registry.get(model_name)
    bn = spec.batch_norm
    images = probe.random_images(batch, image_size, seed) if images is None else images
    points = spec.end_points()
    # The slim reference comes from the graph that saved the checkpoint (built with
    # is_training=False); tests/test_convert.py covers restoring into a fresh graph.
    prefix, slim_logits, slim_points = make_checkpoint(
        str(tmp_path / "model.ckpt"), model_name, num_classes, image_size=image_size,
        seed=seed, run_on=images,
        end_point_keys=[key for key, _ in points] + (["AuxLogits"] if aux else []))
    model = spec.keras_from_tensors(read(prefix), num_classes, bn, image_size=image_size,
                                    include_aux_logits=aux)
    outputs = model(images, training=False)
    keras_logits = np.asarray(outputs[0] if aux else outputs)
    results = {"logits": compare.difference(slim_logits, keras_logits)}
    if aux:
        results["AuxLogits"] = compare.difference(slim_points["AuxLogits"], np.asarray(outputs[1]))
        assert results["AuxLogits"].reference_max > 1e-3, "degenerate test: aux logits ~0"
    for (key, _), value in zip(points, keras_end_points(model, [n for _, n in points], images)):
        results[key] = compare.difference(slim_points[key], value)
    for key, diff in results.items():
        print(f"{model_name} {image_size}px {label}{key}: {diff.line()}")
    bad = {k: d.max_rel for k, d in results.items() if d.max_rel > rtol}
    assert not bad, f"{model_name} at {image_size}px diverges: {bad}"
    assert results["logits"].reference_max > 1e-3, "degenerate test: slim logits are all ~0"
    if forms:
        check_forms(tmp_path, prefix, model, model_name, image_size, images, slim_logits, rtol)
    return results


def check_tools_path(tmp_path, model_name, pretrained_classes, image_size=32, aux=False):
    """What the tools do with a new architecture: fine-tune a random "published"
    checkpoint on digits with a new head (3 steps), evaluate in inference mode, and
    convert the train dir with no flags (``aux``: with the auxiliary head, which the
    parity check then covers too)."""
    from slimtune import evaluate, train
    from slimtune import convert

    spec = registry.get(model_name)
    pretrained = make_checkpoint(str(tmp_path / "pretrained" / "model.ckpt"), model_name,
                                 pretrained_classes, image_size=image_size)
    train_dir = str(tmp_path / "run")
    result = train.train(train.TrainConfig(
        train_dir=train_dir, dataset_name="digits", model_name=model_name,
        train_image_size=image_size, batch_size=8, max_number_of_steps=3,
        checkpoint_path=pretrained, checkpoint_exclude_scopes=",".join(spec.logits_scopes)),
        log=lambda line: None)
    assert result.global_step == 3
    scores = evaluate.evaluate(evaluate.EvalConfig(
        checkpoint_path=train_dir, dataset_name="digits",
        dataset_split_name="validation", max_num_batches=1, batch_size=16),
        log=lambda line: None)
    assert scores.count == 16
    meta = convert.convert(convert.ConvertConfig(checkpoint_path=train_dir,
                                                 output_dir=str(tmp_path / "keras"),
                                                 include_aux_logits=aux))
    assert meta["model_name"] == model_name and meta["num_classes"] == 10
    assert meta["preprocessing"] == spec.preprocessing and meta["image_size"] == image_size
    assert meta["parity"]["random"]["max_rel"] <= 1e-5
    if aux:
        assert meta["parity"]["random aux"]["max_rel"] <= 1e-5
    assert os.path.isfile(tmp_path / "keras" / "model.keras")


_RELOAD = """
import sys, numpy as np, keras
model = keras.models.load_model(sys.argv[1], safe_mode=True)
assert not [m for m in sys.modules if m.split(".")[0] == "slimtune"], "slimtune was imported"
np.save(sys.argv[3], np.asarray(model(np.load(sys.argv[2]), training=False)))
"""


def reload_without_slimtune(path, images, tmp_path):
    """The .keras file's logits computed in a fresh process that never imports slimtune."""
    np.save(tmp_path / "x.npy", images)
    subprocess.run([sys.executable, "-c", _RELOAD, path, str(tmp_path / "x.npy"),
                    str(tmp_path / "y.npy")], check=True,
                   env={**os.environ, "PYTHONPATH": ""}, cwd=str(tmp_path))
    return np.load(tmp_path / "y.npy")


def check_every_command(tmp_path, digits_dir, model_name, size, steps=2, batch_size=8):
    """One architecture through every command, as a user runs them on digits: the slim
    engine trains from scratch, then eval, export (frozen .pb), convert (parity checked),
    verify (the frozen graph, and the .keras layer by layer), the doctor, recalibrate (or
    its one-line refusal for a network without BatchNorm), the .keras reloaded in a
    process without slimtune, and the Keras engine trains a step and resumes."""
    from slimtune import convert, doctor, evaluate, export, recalibrate, train
    from slimtune.errors import UsageError

    quiet = lambda line: None  # noqa: E731
    spec = registry.get(model_name)
    train_dir = str(tmp_path / "run")
    result = train.train(train.TrainConfig(
        train_dir=train_dir, dataset_name="digits", dataset_dir=digits_dir,
        model_name=model_name, train_image_size=size, batch_size=batch_size,
        max_number_of_steps=steps, weight_decay=4e-5, seed=0), log=quiet)
    assert result.global_step == steps and np.isfinite(result.loss)
    scores = evaluate.evaluate(evaluate.EvalConfig(
        checkpoint_path=train_dir, dataset_name="digits", dataset_split_name="validation",
        dataset_dir=digits_dir, max_num_batches=1, batch_size=16), log=quiet)
    assert scores.count == 16
    frozen = str(tmp_path / "frozen.pb")
    export.export(export.ExportConfig(checkpoint_path=train_dir, output_file=frozen), log=quiet)

    aux = bool(spec.aux_logits)  # converted too, and held to the same parity
    meta = convert.convert(convert.ConvertConfig(checkpoint_path=train_dir,
                                                 output_dir=str(tmp_path / "keras"),
                                                 include_aux_logits=aux), log=quiet)
    assert meta["model_name"] == model_name and meta["num_classes"] == 10
    assert meta["image_size"] == size and meta["preprocessing"] == spec.preprocessing
    print(f"{model_name} {size}px convert parity: {meta['parity']}")
    assert meta["parity"]["random"]["max_rel"] <= 1e-5
    assert not aux or meta["parity"]["random aux"]["max_rel"] <= 1e-5
    keras_file = str(tmp_path / "keras" / "model.keras")
    for candidate in (frozen, keras_file):
        report = verify.verify(verify.VerifyConfig(
            reference=train_dir, candidate=candidate, random=4,
            layerwise=candidate == keras_file), log=quiet)
        assert report["passed"], report
    worst = max(row["max_rel"] for row in report["layerwise"])
    print(f"{model_name} layerwise: {len(report['layerwise'])} end points, worst {worst:.3g}")
    assert worst <= 1e-5
    assert [row["end_point"] for row in report["layerwise"]] == [k for k, _ in spec.end_points()]
    found = doctor.diagnose(doctor.DoctorConfig(train_dir=train_dir, keras_model=keras_file))
    print("\n".join(found.lines()))
    assert not found.errors, found.lines()

    recalibrated = str(tmp_path / "recalibrated")
    again = recalibrate.RecalibrateConfig(checkpoint_path=train_dir, dataset_dir=digits_dir,
                                          num_batches=2, batch_size=16, output_dir=recalibrated)
    if spec.batch_norm is None:
        try:
            recalibrate.recalibrate(again, log=quiet)
            raise AssertionError(f"{model_name} has no BatchNorm, yet recalibrate ran")
        except UsageError as error:
            assert "has no BatchNorm layers" in str(error)
    else:
        recalibrate.recalibrate(again, log=quiet)  # a slim checkpoint in, a slim one out
        from slimtune import checkpoint, sources

        before = checkpoint.read_tensors(sources.checkpoint_prefix(train_dir))
        after = checkpoint.read_tensors(sources.checkpoint_prefix(recalibrated))
        means = [n for n in after if n.endswith("/moving_mean")]
        assert means and any(np.abs(after[n] - before[n]).max() > 1e-6 for n in means)

    images = probe.random_images(3, size, seed=1)
    expected = keras.models.load_model(keras_file)(images, training=False)
    expected = np.asarray(expected[0] if aux else expected)  # [logits, aux logits]
    reloaded = reload_without_slimtune(keras_file, images, tmp_path)
    reloaded = reloaded[0] if aux else reloaded
    print(f"{model_name} model.keras reloaded without slimtune: "
          f"{compare.difference(expected, reloaded).line()}")
    assert compare.difference(expected, reloaded).max_rel <= 1e-5

    def keras_run(run_steps):
        return train.train(train.TrainConfig(
            train_dir=str(tmp_path / "keras_run"), dataset_name="digits",
            dataset_dir=digits_dir, model_name=model_name, train_image_size=size,
            batch_size=batch_size, max_number_of_steps=run_steps, weight_decay=4e-5, seed=0,
            engine="keras"), log=quiet)

    first = keras_run(1)
    assert first.global_step == 1 and np.isfinite(first.loss)
    assert keras.models.load_model(first.checkpoint, safe_mode=True).name == spec.scope
    assert keras_run(2).global_step == 2
    return {"train_dir": train_dir, "convert": meta, "keras_file": keras_file}
