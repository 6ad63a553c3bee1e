"""research/slim's scripts/*.sh run as written (issue 24 part 6).

Each script's train and eval command lines are listed below as data: the tool and the
flags the script passes, with the script's values.  Only what the issue allows changes
when they run: the paths (``{train_dir}``, ``{dataset_dir}``, ``{checkpoint_dir}``),
``--max_number_of_steps``, and the image sizes (``--train_image_size`` /
``--eval_image_size``, added for the flowers fine-tunes so the deep nets run at their
smallest size on CPU).  The tools run as the scripts call them, ``python
train_image_classifier.py ...`` (``tools/`` here, see :func:`test_tools.tool`).

The data is research/slim's layout written by slimtune's conversion of tiny archives in
the real formats (see test_upstream_datasets); the fine-tunes start from stand-ins of
the published checkpoints: random weights of the published class count (1001 for
Inception, 1000 for ResNet v1) saved in TF1's V1 format under the published file name.
Every eval must write ``eval/Accuracy`` to its ``--eval_dir``.

lenet on mnist runs in the default run; the others are nightly (``-m slow``).
"""

import glob
import os
import time

import numpy as np
import pytest
import tensorflow as tf

from slim_checkpoints import make_checkpoint, read, write_v1
from test_tools import tool
from test_upstream_datasets import _cifar_archive, _mnist_files, flower_photos  # noqa: F401

from slimtune import registry
from slimtune.data import upstream

TRAIN, EVAL = "train_image_classifier", "eval_image_classifier"


def _flowers_finetune(model, scopes, phase1, phase2):
    """The four commands of finetune_<model>_on_flowers.sh: the new layers from the
    published checkpoint, eval, every layer from that run (into ``{train_dir}/all``),
    eval.  ``phase1`` / ``phase2``: the flags that differ between the scripts."""
    data = ["--dataset_name=flowers", "--dataset_split_name=train",
            "--dataset_dir={dataset_dir}", f"--model_name={model}"]
    common = ["--batch_size=32", "--save_interval_secs=60", "--save_summaries_secs=60"]
    tail = ["--optimizer=rmsprop", "--weight_decay=0.00004"]

    def evaluate(train_dir):
        return (EVAL, [f"--checkpoint_path={train_dir}", f"--eval_dir={train_dir}",
                       "--dataset_name=flowers", "--dataset_split_name=validation",
                       "--dataset_dir={dataset_dir}", f"--model_name={model}"])

    return [
        (TRAIN, ["--train_dir={train_dir}", *data,
                 f"--checkpoint_path={{checkpoint_dir}}/{model}.ckpt",
                 f"--checkpoint_exclude_scopes={scopes}", f"--trainable_scopes={scopes}",
                 "--max_number_of_steps=%d" % phase1["steps"], *common,
                 *phase1["flags"], *tail]),
        evaluate("{train_dir}"),
        (TRAIN, ["--train_dir={train_dir}/all", *data, "--checkpoint_path={train_dir}",
                 "--max_number_of_steps=%d" % phase2["steps"], *common,
                 *phase2["flags"], *tail]),
        evaluate("{train_dir}/all"),
    ]


# Each script: its dataset, the published checkpoint it fine-tunes from (named as the
# script moves it into PRETRAINED_CHECKPOINT_DIR, <model>.ckpt: inception_resnet_v2's
# archive holds inception_resnet_v2_2016_08_30.ckpt; and its class count), the flags of
# each command with the script's values.  In the flowers scripts, flags whose values
# differ between them (steps, rate, decay type, log interval) are given per script.
SCRIPTS = {
    "finetune_inception_v1_on_flowers.sh": dict(
        dataset="flowers", checkpoint=("inception_v1", 1001), commands=_flowers_finetune(
            "inception_v1", "InceptionV1/Logits",
            dict(steps=3000, flags=["--learning_rate=0.01", "--log_every_n_steps=100"]),
            dict(steps=1000, flags=["--learning_rate=0.001", "--log_every_n_steps=100"]))),
    "finetune_inception_v3_on_flowers.sh": dict(
        dataset="flowers", checkpoint=("inception_v3", 1001), commands=_flowers_finetune(
            "inception_v3", "InceptionV3/Logits,InceptionV3/AuxLogits",
            dict(steps=1000, flags=["--learning_rate=0.01", "--learning_rate_decay_type=fixed",
                                    "--log_every_n_steps=100"]),
            dict(steps=500, flags=["--learning_rate=0.0001", "--learning_rate_decay_type=fixed",
                                   "--log_every_n_steps=10"]))),
    "finetune_resnet_v1_50_on_flowers.sh": dict(
        dataset="flowers", checkpoint=("resnet_v1_50", 1000), commands=_flowers_finetune(
            "resnet_v1_50", "resnet_v1_50/logits",
            dict(steps=3000, flags=["--learning_rate=0.01", "--log_every_n_steps=100"]),
            dict(steps=1000, flags=["--learning_rate=0.001", "--log_every_n_steps=100"]))),
    "finetune_inception_resnet_v2_on_flowers.sh": dict(
        dataset="flowers", checkpoint=("inception_resnet_v2", 1001),
        commands=_flowers_finetune(
            "inception_resnet_v2", "InceptionResnetV2/Logits,InceptionResnetV2/AuxLogits",
            dict(steps=1000, flags=["--learning_rate=0.01", "--learning_rate_decay_type=fixed",
                                    "--log_every_n_steps=10"]),
            dict(steps=500, flags=["--learning_rate=0.0001", "--learning_rate_decay_type=fixed",
                                   "--log_every_n_steps=10"]))),
    "train_cifarnet_on_cifar10.sh": dict(dataset="cifar10", checkpoint=None, commands=[
        (TRAIN, ["--train_dir={train_dir}", "--dataset_name=cifar10",
                 "--dataset_split_name=train", "--dataset_dir={dataset_dir}",
                 "--model_name=cifarnet", "--preprocessing_name=cifarnet",
                 "--max_number_of_steps=100000", "--batch_size=128",
                 "--save_interval_secs=120", "--save_summaries_secs=120",
                 "--log_every_n_steps=100", "--optimizer=sgd", "--learning_rate=0.1",
                 "--learning_rate_decay_factor=0.1", "--num_epochs_per_decay=200",
                 "--weight_decay=0.004"]),
        (EVAL, ["--checkpoint_path={train_dir}", "--eval_dir={train_dir}",
                "--dataset_name=cifar10", "--dataset_split_name=test",
                "--dataset_dir={dataset_dir}", "--model_name=cifarnet"]),
    ]),
    "train_lenet_on_mnist.sh": dict(dataset="mnist", checkpoint=None, commands=[
        (TRAIN, ["--train_dir={train_dir}", "--dataset_name=mnist",
                 "--dataset_split_name=train", "--dataset_dir={dataset_dir}",
                 "--model_name=lenet", "--preprocessing_name=lenet",
                 "--max_number_of_steps=20000", "--batch_size=50", "--learning_rate=0.01",
                 "--save_interval_secs=60", "--save_summaries_secs=60",
                 "--log_every_n_steps=100", "--optimizer=sgd",
                 "--learning_rate_decay_type=fixed", "--weight_decay=0"]),
        (EVAL, ["--checkpoint_path={train_dir}", "--eval_dir={train_dir}",
                "--dataset_name=mnist", "--dataset_split_name=test",
                "--dataset_dir={dataset_dir}", "--model_name=lenet"]),
    ]),
}

STEPS = 2  # every training command's --max_number_of_steps here


def _model(commands):
    flag = next(f for f in commands[0][1] if f.startswith("--model_name="))
    return flag.split("=", 1)[1]


def _image_size(model):
    """The smallest size the architecture takes, for the deep nets (lenet and cifarnet
    run at their own 28 and 32 px, the scripts' sizes: no flag added)."""
    spec = registry.get(model)
    return None if spec.min_image_size <= 8 else spec.min_image_size


def command_lines(script, train_dir, dataset_dir, checkpoint_dir, steps=STEPS):
    """``[(tool, flags)]`` of ``script`` with the allowed substitutions made."""
    commands = SCRIPTS[script]["commands"]
    size = _image_size(_model(commands))
    paths = dict(train_dir=train_dir, dataset_dir=dataset_dir, checkpoint_dir=checkpoint_dir)
    lines = []
    for name, flags in commands:
        flags = [f.format(**paths) for f in flags]
        flags = [f"--max_number_of_steps={steps}" if f.startswith("--max_number_of_steps=")
                 else f for f in flags]
        if size:
            flags.append(f"--{'train' if name == TRAIN else 'eval'}_image_size={size}")
        lines.append((name, flags))
    return lines


def _quiet(line):
    pass


def _converted(root, name, source):
    """research/slim's TFRecords of ``name`` written by the conversion
    (slimtune-download-data's) from ``source``, a tiny archive in the real format."""
    upstream.prepare(name, str(root / name), archive=source, log=_quiet)
    return str(root / name)


@pytest.fixture(scope="module")
def flowers_dir(flower_photos, tmp_path_factory):
    return _converted(tmp_path_factory.mktemp("flowers"), "flowers", flower_photos)


@pytest.fixture(scope="module")
def cifar10_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar10")
    _cifar_archive(str(root / "cifar-10-python.tar.gz"), np.random.default_rng(24))
    return _converted(root, "cifar10", str(root / "cifar-10-python.tar.gz"))


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("mnist")
    _mnist_files(root / "downloads", np.random.default_rng(24))
    return _converted(root, "mnist", str(root / "downloads"))


def stand_in_checkpoint(checkpoint_dir, model, num_classes, image_size):
    """``<checkpoint_dir>/<model>.ckpt``: random weights of the published class count in
    TF1's V1 format, the one file the script moves out of the published archive."""
    os.makedirs(checkpoint_dir, exist_ok=True)
    v2 = make_checkpoint(os.path.join(checkpoint_dir, "v2", "model.ckpt"), model, num_classes,
                         image_size=image_size)
    return write_v1(os.path.join(checkpoint_dir, f"{model}.ckpt"), read(v2))


def eval_steps(eval_dir):
    """``{tag: global step}`` of the summaries in the event files directly in
    ``eval_dir`` (not in a subfolder: ``{train_dir}/all`` is one)."""
    steps = {}
    for path in glob.glob(os.path.join(eval_dir, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            steps.update((value.tag, event.step) for value in event.summary.value)
    return steps


def run_script(script, tmp_path, dataset_dir):
    checkpoint_dir = str(tmp_path / "checkpoints")
    if SCRIPTS[script]["checkpoint"]:
        model, num_classes = SCRIPTS[script]["checkpoint"]
        stand_in_checkpoint(checkpoint_dir, model, num_classes,
                            _image_size(model) or registry.get(model).default_image_size)
    train_dir = str(tmp_path / "train")
    timings = []
    for name, flags in command_lines(script, train_dir, dataset_dir, checkpoint_dir):
        started = time.monotonic()
        result = tool(name, *flags)
        timings.append((name, round(time.monotonic() - started, 1)))
        log = result.stdout + result.stderr
        assert result.returncode == 0, f"{name} {' '.join(flags)}\n{log[-4000:]}"
        value = dict(f[2:].split("=", 1) for f in flags)
        if name == TRAIN:
            # A fine-tune restarts the step count in its new train dir, as upstream's.
            latest = tf.train.latest_checkpoint(value["train_dir"])
            assert latest and latest.endswith(f"model.ckpt-{STEPS}"), (latest, log[-2000:])
            if "checkpoint_path" in value:
                assert f"Fine-tuning from {value['checkpoint_path']}" in log, log[-2000:]
        else:
            steps = eval_steps(value["eval_dir"])
            assert steps.get("eval/Accuracy") == STEPS, (steps, log[-2000:])
            assert "eval/Recall_5" in steps
    print(script, timings)
    return timings


def test_the_command_lines_are_the_scripts_with_only_the_allowed_changes(tmp_path):
    """What changes: paths, --max_number_of_steps, and an image-size flag per command for
    the deep nets; every other flag keeps the script's value."""
    for script, entry in SCRIPTS.items():
        lines = command_lines(script, "T", "D", "C")
        assert len(lines) == len(entry["commands"])
        for (name, original), (_, flags) in zip(entry["commands"], lines):
            added = flags[len(original):]
            assert len(added) == (1 if _image_size(_model(entry["commands"])) else 0)
            for before, after in zip(original, flags):
                if "{" in before or before.startswith("--max_number_of_steps="):
                    assert before.split("=")[0] == after.split("=")[0]
                else:
                    assert before == after
    assert command_lines("finetune_inception_v1_on_flowers.sh", "T", "D", "C")[2][1][-1] == \
        "--train_image_size=193"


CASES = [pytest.param(script, marks=() if script == "train_lenet_on_mnist.sh"
                      else pytest.mark.slow) for script in SCRIPTS]


@pytest.mark.parametrize("script", CASES)
def test_the_script_runs_as_written(script, tmp_path, request):
    dataset_dir = request.getfixturevalue(f"{SCRIPTS[script]['dataset']}_dir")
    run_script(script, tmp_path, dataset_dir)
