"""research/slim's flags that slimtune now honours or refuses (issue 24 parts 1, 4, 5):
slimtune-eval's --eval_dir, --master, --quantize, --num_preprocessing_threads and default
split; the training's --num_readers, --num_preprocessing_threads, --clone_on_cpu,
--quantize_delay; research/slim's per-clone learning-rate schedule."""

import dataclasses
import os
import types

import pytest
import tensorflow as tf

from slimtune import distribute, evaluate, optim, train
from slimtune.data import pipeline
from slimtune.errors import DataError, UsageError
from test_register_architecture import NAME, _register
from test_tools import tool


@pytest.fixture(scope="module")
def tiny_run(digits_dir, tmp_path_factory):
    """A 2-step tiny_convnet run on the digits, and its log lines."""
    _register()
    lines = []
    train_dir = str(tmp_path_factory.mktemp("tiny") / "run")
    train.train(train.TrainConfig(
        train_dir=train_dir, dataset_name="digits", model_name=NAME, train_image_size=32,
        batch_size=8, max_number_of_steps=2, num_epochs_per_decay=0.5,
        num_readers=2, num_preprocessing_threads=1), log=lines.append)
    return train_dir, lines


def _placement(clones=1, workers=1):
    return types.SimpleNamespace(num_workers=workers, num_clones=clones,
                                 num_replicas=clones * workers)


def _cfg(placement, **flags):
    cfg = dataclasses.replace(train.TrainConfig(batch_size=32, num_epochs_per_decay=2.0),
                              **flags)
    return dataclasses.replace(cfg, decay_batch_size=optim.decay_batch_size(cfg, placement))


def test_decay_steps_count_one_clones_batch_unless_asked_for_the_global_batch():
    """research/slim: int(1000 / 32 * 2) = 62 whatever --num_clones; the opt-in counts
    the global batch (4 clones: 128 images, 15 steps); an engine handing its step a cfg
    with the global batch keeps the per-clone count."""
    four = _placement(clones=4)
    assert optim.decay_steps(_cfg(four), 1000) == 62
    global_batch = dataclasses.replace(_cfg(four), batch_size=128)
    assert optim.decay_steps(global_batch, 1000) == 62
    assert optim.decay_steps(_cfg(four, decay_per_global_batch=True), 1000) == 15
    # --sync_replicas divides by --replicas_to_aggregate (a float, as research/slim's /=)
    two_workers = _placement(workers=2)
    assert optim.decay_steps(_cfg(two_workers, sync_replicas=True, replicas_to_aggregate=2),
                             1000) == 31
    assert optim.decay_steps(_cfg(two_workers, sync_replicas=True, replicas_to_aggregate=2,
                                  num_epochs_per_decay=1.0), 1000) == 15.5
    line = optim.describe_decay(_cfg(four), 1000)
    assert "every 62 steps" in line and "batch 32 (one clone's batch" in line


@pytest.mark.parametrize("flags,message", [
    (dict(replicas_to_aggregate=2), "without --sync_replicas does nothing"),
    (dict(sync_replicas=True, replicas_to_aggregate=3), "number of workers \\(2\\)"),
    (dict(sync_replicas=True, replicas_to_aggregate=2, decay_per_global_batch=True),
     "drop one of the two flags"),
])
def test_replica_schedule_flags_slimtune_cannot_honour_are_refused(flags, message):
    with pytest.raises(UsageError, match=message):
        _cfg(_placement(workers=2), **flags)


def test_the_start_prints_the_effective_decay_steps(tiny_run):
    """int(1438 training digits / batch 8 x 0.5 epochs) = 89 steps."""
    _, lines = tiny_run
    decay = [line for line in lines if "decay steps" in line]
    assert decay and "every 89 steps" in decay[0] and "one clone's batch" in decay[0], lines


def _parallel_calls(data):
    """``{dataset class name: (cycle length or None, parallel calls)}`` of every
    parallel stage ``data`` reads from."""
    found, todo = {}, [data]
    while todo:
        d = todo.pop()
        if hasattr(d, "_num_parallel_calls"):
            cycle = getattr(d, "_cycle_length", None)
            found[type(d).__name__] = (None if cycle is None else int(cycle),
                                       int(d._num_parallel_calls))
        todo.extend([d._input_dataset] if getattr(d, "_input_dataset", None) is not None
                    else [])
        todo.extend(getattr(d, "_datasets", ()) or ())
    return found


def test_readers_and_threads_set_the_pipelines_parallelism(digits_dir):
    """--num_readers: the interleave's cycle length and parallel reads (digits' train
    split has 2 shards); --num_preprocessing_threads: the map's parallel calls."""
    split = pipeline.open_split("digits", digits_dir, "train")

    def stages(**flags):
        with pipeline.parallelism(**flags):
            return _parallel_calls(pipeline.batches(split, "lenet", 32, 4, True, 10, seed=1))

    assert stages(num_readers=1, num_threads=3) == {
        "_ParallelInterleaveDataset": (1, 1), "_ParallelMapDataset": (None, 3)}
    assert stages() == {"_ParallelInterleaveDataset": (2, tf.data.AUTOTUNE),
                        "_ParallelMapDataset": (None, tf.data.AUTOTUNE)}
    with pytest.raises(UsageError, match="--num_preprocessing_threads=0 must be 1 or more"):
        with pipeline.parallelism(num_threads=0):
            pass


def test_eval_dir_gets_research_slims_summary_names(tiny_run, tmp_path):
    train_dir, _ = tiny_run
    eval_dir = str(tmp_path / "eval")
    result = evaluate.evaluate(evaluate.EvalConfig(
        checkpoint_path=train_dir, dataset_name="digits", dataset_split_name="validation",
        batch_size=60, max_num_batches=1, eval_dir=eval_dir, num_preprocessing_threads=2),
        log=lambda line: None)
    values = {}
    for name in os.listdir(eval_dir):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(eval_dir, name)):
            for value in event.summary.value:
                values[value.tag] = (event.step, value.simple_value)
    assert values == {"eval/Accuracy": (2, pytest.approx(result.top1)),
                      "eval/Recall_5": (2, pytest.approx(result.top5)),
                      "eval/Loss": (2, pytest.approx(result.loss))}


def test_eval_defaults_to_the_test_split_and_names_the_splits_a_dataset_has(tiny_run):
    with pytest.raises(DataError, match="no shards of split 'test' .*its splits are "
                                        "train, validation: pass one with"):
        evaluate.evaluate(evaluate.EvalConfig(checkpoint_path=tiny_run[0],
                                              dataset_name="digits"), log=lambda line: None)


@pytest.mark.parametrize("name,flags,refused", [
    ("eval_image_classifier", ["--quantize"], "--quantize=True is not supported: TF 2"),
    ("eval_image_classifier", ["--master=grpc://h:1"], "--master=grpc://h:1 is not supported"),
    ("train_image_classifier", ["--quantize_delay=100"], "--quantize_delay=100 is not "
                                                        "supported: TF 2 has no rewrite"),
])
def test_flags_slimtune_cannot_honour_are_refused_in_one_line(name, flags, refused, tmp_path):
    result = tool(name, "--checkpoint_path=/nonexistent", "--dataset_name=digits",
                  f"--train_dir={tmp_path / 'run'}", *flags) if name.startswith("train") else \
        tool(name, "--checkpoint_path=/nonexistent", "--dataset_name=digits", *flags)
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and refused in errors[0], result.stderr
    assert not os.path.exists(tmp_path / "run")


@pytest.mark.parametrize("model_name", ["i3d", "s3dg"])
def test_research_slim_s_video_models_are_refused_in_one_line(model_name, tmp_path):
    """research/slim's nets_factory also names i3d and s3dg, which take clips of frames."""
    result = tool("train_image_classifier", "--dataset_name=digits",
                  f"--model_name={model_name}", f"--train_dir={tmp_path / 'run'}")
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and (
        f"{model_name} is a video model (research/slim's i3d/s3dg take clips of frames), "
        "not an image classifier: slimtune trains and converts image classifiers"
    ) in errors[0], result.stderr
    assert "choose one of" not in result.stderr
    assert not os.path.exists(tmp_path / "run")


def test_use_grayscale_is_taken_by_eval_and_checked_against_the_model(tiny_run):
    """research/slim's --use_grayscale is no longer refused (tests/test_grayscale.py runs
    it end to end); on a model trained on RGB images it is one clear error."""
    result = tool("eval_image_classifier", "--checkpoint_path=/nonexistent",
                  "--dataset_name=digits", "--use_grayscale")
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode != 0 and errors, result.stderr
    assert "use_grayscale" not in errors[0] and "/nonexistent" in errors[0], result.stderr
    with pytest.raises(UsageError, match="--use_grayscale, but the checkpoint's first "
                                         "convolution takes 3 channels"):
        evaluate.evaluate(evaluate.EvalConfig(
            checkpoint_path=tiny_run[0], dataset_name="digits", dataset_split_name="train",
            use_grayscale=True), log=lambda line: None)


def test_clone_on_cpu_hides_the_gpus_from_the_run(monkeypatch):
    """Even one clone: research/slim's --clone_on_cpu put the clone on the CPU."""
    hidden = []
    monkeypatch.setattr(tf.config, "list_physical_devices",
                        lambda kind=None: ["GPU:0"] if kind == "GPU" else ["CPU:0"])
    monkeypatch.setattr(tf.config, "set_visible_devices",
                        lambda devices, kind=None: hidden.append((devices, kind)))
    assert distribute.slim_strategy(distribute.Placement(clone_on_cpu=True)) is None
    assert distribute.keras_strategy(distribute.Placement(clone_on_cpu=True)) is None
    assert hidden == [([], "GPU"), ([], "GPU")]
    hidden.clear()
    distribute.slim_strategy(distribute.Placement())
    assert hidden == []
