"""metadata.RunInfo: what a run is, resolved as flags > slimtune.json > registry defaults.

Cheap: no TensorFlow graph; the registry entries are read for their defaults only.
"""

import json

import pytest

from slimtune import metadata, registry
from slimtune.errors import UsageError
from slimtune.nets import batch_norm as bn_lib

RESNET = registry.get("resnet_v1_50")  # BN 0.997 / 1e-5 / scale, 224 px, vgg preprocessing
INCEPTION = registry.get("inception_v3")  # BN without gamma
VGG = registry.get("vgg_16")  # no BatchNorm

# What slimtune-train writes for a 10-class resnet_v1_50 fine-tune at 32 px.
TRAINED = {
    "format": metadata.TRAIN_FORMAT, "model_name": "resnet_v1_50", "num_classes": 10,
    "labels_offset": 1, "labels": {"0": "zero", "10": "ten", "2": "two"},
    "batch_norm": {"decay": 0.9, "epsilon": 1e-3, "scale": True, "mode": "frozen"},
    "preprocessing": "lenet", "image_size": 32, "weight_decay": 4e-5,
    "moving_average_decay": None,
    "dataset": {"name": "digits", "dir": "/data/digits", "split": "train"},
    "checkpoint_path": "/ckpt/resnet_v1_50.ckpt", "checkpoint_exclude_scopes": [],
    "seed": 0, "deterministic": True,
}


def on_file(document=TRAINED):
    return metadata.from_dict(document)


def test_a_flag_wins_over_the_file_and_the_file_over_the_registry():
    flags = metadata.RunInfo(image_size=64, preprocessing="inception", labels_offset=0,
                             num_classes=7)
    run = metadata.resolve(flags, on_file())
    assert (run.image_size, run.preprocessing, run.labels_offset, run.num_classes) == \
        (64, "inception", 0, 7)  # 0 is an explicit flag, not "unset"
    run = metadata.resolve(metadata.RunInfo(), on_file())
    assert (run.image_size, run.preprocessing, run.labels_offset, run.num_classes) == \
        (32, "lenet", 1, 10)
    assert run.labels == {0: "zero", 2: "two", 10: "ten"}


def test_without_flags_or_file_the_registry_defaults_hold():
    run = metadata.resolve(metadata.RunInfo(model_name="resnet_v1_50"))
    assert run.image_size == RESNET.default_image_size
    assert run.preprocessing == RESNET.preprocessing
    assert run.batch_norm == RESNET.batch_norm and run.labels_offset == 0
    assert run.engine == metadata.SLIM_ENGINE
    # The class count and labels are no architecture default: the command finds them.
    assert run.num_classes is None and run.labels is None


def test_batch_norm_is_registry_then_file_then_flags_field_by_field():
    run = metadata.resolve(metadata.RunInfo(), on_file())
    assert (run.batch_norm.decay, run.batch_norm.epsilon, run.batch_norm.scale) == \
        (0.9, 1e-3, True)
    # The file's mode says how training ran; the command builds BatchNorm to follow.
    assert run.batch_norm.mode == bn_lib.FOLLOW
    flags = metadata.RunInfo(batch_norm=metadata.batch_norm_flags(
        epsilon=2e-3, mode=bn_lib.BATCH_STATS))
    run = metadata.resolve(flags, on_file())
    assert run.batch_norm == bn_lib.BatchNormConfig(0.9, 2e-3, True, bn_lib.BATCH_STATS)
    # A hand-written file saying only the epsilon keeps the architecture's others.
    partial = on_file({"model_name": "inception_v3", "batch_norm": {"epsilon": 0.01}})
    run = metadata.resolve(metadata.RunInfo(), partial)
    assert run.batch_norm == INCEPTION.batch_norm.replace(epsilon=0.01)
    assert partial.batch_norm.decay is None and partial.batch_norm.mode is None


def test_model_name_comes_from_the_flag_or_the_file_and_they_must_agree():
    assert metadata.resolve(metadata.RunInfo(), on_file()).model_name == "resnet_v1_50"
    same = metadata.resolve(metadata.RunInfo(model_name="resnet_v1_50"), on_file())
    assert same.spec is RESNET
    with pytest.raises(UsageError, match="^--model_name=resnet_v2_50 but the checkpoint was "
                                         "trained as resnet_v1_50"):
        metadata.resolve(metadata.RunInfo(model_name="resnet_v2_50"), on_file())
    with pytest.raises(UsageError, match="^no --model_name given.*pass --model_name"):
        metadata.resolve(metadata.RunInfo(), metadata.RunInfo())


def test_identify_finds_the_architecture_and_none_leaves_the_registry_out():
    asked = []

    def identify(name):
        asked.append(name)
        return registry.get("resnet_v1_50")

    run = metadata.resolve(metadata.RunInfo(), metadata.RunInfo(), identify=identify)
    assert asked == [None] and run.model_name == "resnet_v1_50"  # read from elsewhere
    # A .keras model is no registry architecture: only flags and file count.
    keras_file = on_file({"format": metadata.KERAS_FORMAT, "preprocessing": "lenet"})
    run = metadata.resolve(metadata.RunInfo(image_size=40), keras_file,
                           identify=lambda name: None)
    assert (run.image_size, run.preprocessing, run.batch_norm) == (40, "lenet", None)


def test_flags_that_cannot_apply_are_refused_naming_the_flag():
    with pytest.raises(UsageError, match="^vgg_16 has no BatchNorm layers: drop "
                                         "--batch_norm_epsilon and --freeze_batch_norm"):
        metadata.resolve(metadata.RunInfo(model_name="vgg_16", batch_norm=metadata.batch_norm_flags(
            epsilon=1e-3, mode=bn_lib.FROZEN)), mode_flag="--freeze_batch_norm")
    # A file's BatchNorm for a network without it is simply not used.
    vgg = metadata.resolve(metadata.RunInfo(model_name="vgg_16"), on_file(
        {"batch_norm": {"decay": 0.9}}))
    assert vgg.batch_norm is None
    with pytest.raises(UsageError, match=r"^--batch_norm_decay=1.0 must be in \[0, 1\)"):
        metadata.resolve(metadata.RunInfo(model_name="resnet_v1_50",
                                          batch_norm=metadata.batch_norm_flags(decay=1.0)))
    with pytest.raises(UsageError, match="^--batch_norm_epsilon=0.0 must be positive"):
        metadata.resolve(metadata.RunInfo(model_name="resnet_v1_50",
                                          batch_norm=metadata.batch_norm_flags(epsilon=0.0)))
    with pytest.raises(UsageError, match=f"^--eval_image_size=8 is too small for resnet_v1_50: "
                                         f"use at least {RESNET.min_image_size}"):
        metadata.resolve(metadata.RunInfo(image_size=8), on_file(),
                         size_flag="--eval_image_size")


def test_dataset_directory_is_recorded_only_for_the_same_dataset():
    flags = metadata.RunInfo(dataset=metadata.Dataset(None, None, "validation"))
    run = metadata.resolve(flags, on_file())
    assert run.dataset == metadata.Dataset("digits", "/data/digits", "validation")
    flags = metadata.RunInfo(dataset=metadata.Dataset("flowers", None, "train"))
    assert metadata.resolve(flags, on_file()).dataset == metadata.Dataset("flowers", None,
                                                                          "train")
    flags = metadata.RunInfo(dataset=metadata.Dataset("digits", "/elsewhere", "train"))
    assert metadata.resolve(flags, on_file()).dataset.dir == "/elsewhere"


def test_what_verify_and_the_doctor_read_is_typed():
    """verify opens a checkpoint with the file's name, BN and preprocessing, knows the size
    it was trained at, and an exported graph's nodes; the doctor reads the run's decay and
    mode, its warm start and labels offset."""
    found = on_file()
    assert found.image_size == 32 and found.warm_start == "/ckpt/resnet_v1_50.ckpt"
    assert found.batch_norm.mode == bn_lib.FROZEN and found.batch_norm.decay == 0.9
    assert metadata.from_dict({}).labels_offset is None  # not said: commands default to 0
    run = metadata.resolve(metadata.RunInfo(), found)
    sidecar = metadata.export_document(run, checkpoint="/run/model.ckpt-3",
                                       serving=metadata.Serving("input", ("logits", "p"),
                                                                (None, 32, 32, 3)))
    assert "image_size" not in sidecar and sidecar["format"] == metadata.EXPORT_FORMAT
    exported = metadata.from_dict(json.loads(json.dumps(sidecar)))
    assert exported.serving == metadata.Serving("input", ("logits", "p"), (None, 32, 32, 3))
    assert exported.model_name == "resnet_v1_50" and exported.preprocessing == "lenet"


def test_documents_round_trip_through_json():
    run = metadata.resolve(metadata.RunInfo(), on_file())
    document = metadata.training_document(
        run, weight_decay=4e-5, moving_average_decay=None, exclude_scopes=[], seed=0,
        deterministic=True)
    assert json.loads(json.dumps(document)) == {**TRAINED, "batch_norm": {
        "decay": 0.9, "epsilon": 1e-3, "scale": True, "mode": "follow"}}
    # Read back, the file resolves to the run that wrote it.
    assert metadata.resolve(metadata.RunInfo(),
                            metadata.from_dict(json.loads(json.dumps(document)))) == run
    # A slim run's file says no engine (files stay as they were); another engine's does.
    assert "engine" not in document
    keras_run = metadata.from_dict({"engine": "keras"})
    assert keras_run.as_dict()["engine"] == "keras"


def test_a_derived_file_is_completed_not_rewritten():
    found = on_file({"preprocessing": "lenet", "custom": [1, 2], "batch_norm": None})
    run = metadata.resolve(metadata.RunInfo(model_name="resnet_v1_50", num_classes=5), found)
    out = metadata.completed(found, run, files={"keras": "model.keras"})
    assert out == {"preprocessing": "lenet", "custom": [1, 2], "batch_norm": None,
                   "model_name": "resnet_v1_50", "num_classes": 5, "image_size": 224,
                   "files": {"keras": "model.keras"}}


def test_recorded_reads_a_directory_or_a_prefix_and_names_a_broken_file(tmp_path):
    assert metadata.recorded(str(tmp_path)) == metadata.RunInfo()
    metadata.write(str(tmp_path), TRAINED)
    assert metadata.recorded(str(tmp_path / "model.ckpt-3")).num_classes == 10
    (tmp_path / metadata.FILENAME).write_text("{not json")
    with pytest.raises(UsageError, match=f"^{tmp_path / metadata.FILENAME} is not a valid "):
        metadata.recorded(str(tmp_path))
