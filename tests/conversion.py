"""The parity check every converter test runs: slim graph vs Keras mirror, same inputs.

A checkpoint with random weights, biases and BatchNorm statistics is converted; the
slim graph (``is_training=False``) and the Keras model (``training=False``) then run on
one seeded batch, and the logits and every matching end point are compared unsorted.
With ``forms=True`` the shipped forms are checked too: the frozen ``.pb`` and the
SavedModel written by slimtune-export and the ``.keras`` file, each reopened from disk
the way slimtune-verify opens it (which also runs each twice, so a form that is not a
pure function of its input fails).
"""

import keras
import numpy as np

from slimtune import compare, export, forms, probe, registry, verify
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


def photos(size):
    """Four scikit-image photos, whole, resized to ``size`` and scaled to [-1, 1]."""
    from skimage import data, transform

    pictures = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    return np.stack([transform.resize(p, (size, size), anti_aliasing=True) * 2.0 - 1.0
                     for p in pictures]).astype(np.float32)


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


def verify_frozen_and_keras(train_dir, frozen, keras_file, random=4):
    """slimtune-verify of a train dir's frozen graph, then of its converted ``.keras``
    layer by layer; returns the layerwise rows, each asserted within 1e-5."""
    from slimtune import verify

    for candidate in (frozen, keras_file):
        report = verify.verify(verify.VerifyConfig(
            reference=train_dir, candidate=candidate, random=random,
            layerwise=candidate == keras_file), log=lambda line: None)
        assert report["passed"], report
    print(f"layerwise: {report['layerwise']}")
    assert all(row["max_rel"] <= 1e-5 for row in report["layerwise"])
    return report["layerwise"]


def check_tools_path(tmp_path, model_name, pretrained_classes, image_size=32, aux=False):
    """What the tools do with a new architecture: fine-tune a random "published"
    checkpoint on digits with a new head (3 steps), evaluate in inference mode, and
    convert the train dir with no flags (``aux``: with the auxiliary head, which the
    parity check then covers too)."""
    import os

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
