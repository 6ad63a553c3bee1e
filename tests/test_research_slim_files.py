"""What research/slim users already hold opens as it is.

A published 2016 archive holds one checkpoint file in TF1's V1 format (no ``.index`` or
``.data``), e.g. ``resnet_v1_50_2016_08_28.tar.gz`` -> ``resnet_v1_50.ckpt``.  Made here
by a V1 ``Saver`` from a checkpoint with randomised BatchNorm statistics, it goes through
slimtune-download --archive, convert, a warm start, eval, verify and the doctor.
"""

import os
import tarfile

import pytest

from slim_checkpoints import make_checkpoint, read, write_v1

from slimtune import convert, doctor, evaluate, published, sources, train, verify

MODEL = "resnet_v1_50"
SIZE = 32


def _quiet(line):
    pass


@pytest.fixture(scope="module")
def v1_archive(tmp_path_factory):
    """resnet_v1_50_2016_08_28.tar.gz as published: the one V1 file resnet_v1_50.ckpt."""
    root = tmp_path_factory.mktemp("v1")
    saved = make_checkpoint(str(root / "v2" / "model.ckpt"), MODEL, 1000, image_size=SIZE)
    v1_file = write_v1(str(root / "resnet_v1_50.ckpt"), read(saved))
    archive = root / "resnet_v1_50_2016_08_28.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(v1_file, arcname="resnet_v1_50.ckpt")
    return str(archive)


def test_a_v1_archive_goes_through_every_command(v1_archive, digits_dir, tmp_path,
                                                  monkeypatch):
    monkeypatch.setenv("SLIMTUNE_CHECKPOINTS", str(tmp_path / "cache"))
    prefix = published.ensure(MODEL, archive=v1_archive, log=_quiet)
    assert os.path.basename(prefix) == "resnet_v1_50.ckpt" and os.path.isfile(prefix)

    out = tmp_path / "keras"
    meta = convert.convert(convert.ConvertConfig(checkpoint_path=prefix, output_dir=str(out),
                                                 image_size=SIZE), log=_quiet)
    print("convert parity:", meta["parity"])
    report = verify.verify(verify.VerifyConfig(reference=prefix, candidate=str(out / "model.keras"),
                                               random=2, image_size=SIZE), log=_quiet)
    assert report["passed"], report

    scores = evaluate.evaluate(evaluate.EvalConfig(
        checkpoint_path=prefix, dataset_name="digits",
        dataset_split_name="validation", dataset_dir=digits_dir,
        eval_image_size=SIZE, batch_size=60, max_num_batches=1), log=_quiet)
    assert scores.count == 60

    result = train.train(train.TrainConfig(
        train_dir=str(tmp_path / "warm"), dataset_name="digits", dataset_dir=digits_dir,
        model_name=MODEL, train_image_size=SIZE, batch_size=4, max_number_of_steps=1,
        checkpoint_path=prefix, checkpoint_exclude_scopes=f"{MODEL}/logits", seed=0),
        log=_quiet)
    assert result.global_step == 1

    found = doctor.diagnose(doctor.DoctorConfig(checkpoint_path=prefix, model_name=MODEL))
    assert any(prefix in checked for checked in found.checked), found.checked
    assert not [f for f in found.errors if "read" in f.text.lower()], found.errors


def test_a_train_dir_copied_from_another_machine(digits_dir, tmp_path):
    """TF1's Saver wrote absolute paths into the ``checkpoint`` state file, so a train dir
    copied elsewhere named files that are not there.  Every command takes the same file
    names in the given dir (one line says so), and training on resumes at the saved
    step; slimtune's own saves write relative paths."""
    import shutil

    from test_register_architecture import NAME as TINY, _register as register_tiny_net

    from slimtune import checkpoint, export, recalibrate

    register_tiny_net()
    old, moved = tmp_path / "home" / "old" / "run", tmp_path / "elsewhere" / "run"

    def config(**overrides):
        return train.TrainConfig(**{**dict(
            train_dir=str(moved), dataset_name="digits", dataset_dir=digits_dir,
            model_name=TINY, preprocessing_name="lenet", train_image_size=32, batch_size=4,
            max_number_of_steps=2, seed=0), **overrides})

    train.train(config(train_dir=str(old)), log=_quiet)
    state = (old / "checkpoint").read_text()
    assert str(old) not in state, "slimtune's saves write relative paths"
    # As research/slim's (and TF1's default) Saver writes it: absolute paths.
    checkpoint.write_state(str(old), str(old / "model.ckpt-2"), [str(old / "model.ckpt-2")])
    (old / "checkpoint").write_text((old / "checkpoint").read_text().replace(
        '"model.ckpt-2"', f'"{old}/model.ckpt-2"'))
    shutil.move(str(old), str(moved))

    lines = []
    assert sources.checkpoint_prefix(str(moved), log=lines.append) == str(moved / "model.ckpt-2")
    assert lines == [f"{moved}/checkpoint names {old}/model.ckpt-2, which does not exist; "
                     f"using {moved}/model.ckpt-2, the same file name in this directory "
                     "(the train dir was moved)"]
    scores = evaluate.evaluate(evaluate.EvalConfig(
        checkpoint_path=str(moved), dataset_name="digits",
        dataset_split_name="validation", dataset_dir=digits_dir,
        batch_size=60, max_num_batches=1), log=_quiet)
    assert scores.global_step == 2
    convert.convert(convert.ConvertConfig(checkpoint_path=str(moved),
                                          output_dir=str(tmp_path / "keras")), log=_quiet)
    export.export(export.ExportConfig(checkpoint_path=str(moved),
                                      output_file=str(tmp_path / "frozen.pb")), log=_quiet)
    assert verify.verify(verify.VerifyConfig(reference=str(moved),
                                             candidate=str(tmp_path / "frozen.pb"), random=2),
                         log=_quiet)["passed"]
    report = doctor.diagnose(doctor.DoctorConfig(train_dir=str(moved)))
    assert any(str(moved / "model.ckpt-2") in checked for checked in report.checked)
    recalibrate.recalibrate(recalibrate.RecalibrateConfig(
        checkpoint_path=str(moved), output_dir=str(tmp_path / "recalibrated"), num_batches=2,
        batch_size=8), log=_quiet)

    lines = []
    result = train.train(config(max_number_of_steps=4), log=lines.append)
    assert result.global_step == 4
    assert any("the train dir was moved" in line for line in lines)
    assert str(tmp_path / "home") not in (moved / "checkpoint").read_text()
