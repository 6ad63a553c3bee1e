"""The command-line tools as a user runs them: help, errors, and a SIGKILL mid-training."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from slim_checkpoints import make_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = ("train_image_classifier", "eval_image_classifier", "convert_image_folder",
         "quickstart", "convert_checkpoint", "export_inference_graph", "verify_model",
         "bn_doctor", "download_checkpoint", "recalibrate_batch_norm", "verify_training")


def tool(name, *flags, env=None, **kwargs):
    command = [sys.executable, os.path.join(ROOT, "tools", f"{name}.py"), *flags]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT,
                          env=env or os.environ.copy(), timeout=600, **kwargs)


@pytest.mark.parametrize("name", TOOLS)
def test_help_explains_the_tool(name):
    result = tool(name, "--help")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout) > 500 and "--" in result.stdout
    # ``slimtune-x --help`` runs pip's wrapper as ``__main__``, not the tool module; the
    # help must still show the tool's description and flags.
    wrapper = f"from slimtune_tools.{name} import run; run()"
    script = subprocess.run([sys.executable, "-c", wrapper, "--help"], capture_output=True,
                            text=True, cwd=ROOT, timeout=600)
    assert script.returncode == 0, script.stderr
    description = next(line for line in result.stdout.splitlines() if line.strip())
    assert description in script.stdout
    flag_names = re.compile(r"^\s+--(\w+)", re.MULTILINE)
    assert set(flag_names.findall(script.stdout)) == set(flag_names.findall(result.stdout))


# The error comes before either engine starts; the Keras case runs nightly.
@pytest.mark.parametrize("engine", ["slim", pytest.param("keras", marks=pytest.mark.slow)])
def test_unknown_model_lists_the_choices(engine, tmp_path, digits_dir):
    result = tool("train_image_classifier", f"--train_dir={tmp_path / 'run'}",
                  "--dataset_name=digits", "--model_name=resnet_v1_51", f"--engine={engine}")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    first = result.stderr.strip().splitlines()[0]
    assert first.startswith("error: unknown model name 'resnet_v1_51'")
    assert "resnet_v1_50" in first and "inception_v3" in first and "--model_name" in first
    assert os.listdir(tmp_path) == []


# The error comes before either engine starts; the Keras case runs nightly.
@pytest.mark.parametrize("engine", ["slim", pytest.param("keras", marks=pytest.mark.slow)])
def test_missing_dataset_dir_is_named(engine, tmp_path):
    missing = tmp_path / "nowhere"
    result = tool("train_image_classifier", f"--train_dir={tmp_path / 'run'}",
                  "--dataset_name=flowers", f"--dataset_dir={missing}",
                  "--model_name=resnet_v1_50", f"--engine={engine}")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    first = result.stderr.strip().splitlines()[0]
    assert first.startswith(f"error: dataset directory '{missing}' does not exist: pass "
                            "--dataset_dir")
    assert os.listdir(tmp_path) == []


def _train_command(train_dir, warm_start):
    return ["train_image_classifier", f"--train_dir={train_dir}", "--dataset_name=digits",
            "--model_name=resnet_v1_50", "--preprocessing_name=lenet",
            "--train_image_size=32", "--batch_size=4", "--max_number_of_steps=12",
            "--save_interval_steps=2", "--log_every_n_steps=1", "--optimizer=sgd",
            "--learning_rate=0.01", f"--checkpoint_path={warm_start}",
            "--checkpoint_exclude_scopes=resnet_v1_50/logits", "--seed=0"]


@pytest.mark.slow  # a minute of subprocess training; resume itself is tested in test_train
def test_sigkill_then_same_command_resumes(tmp_path, digits_dir):
    """kill -9 after the first checkpoint; rerunning the same command continues from it."""
    warm_start = make_checkpoint(str(tmp_path / "pre" / "model.ckpt"), "resnet_v1_50", 1000)
    train_dir = tmp_path / "run"
    name, *flags = _train_command(train_dir, warm_start)
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, "tools", f"{name}.py"),
                                *flags], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while not tf.train.latest_checkpoint(str(train_dir)) and time.time() < deadline:
        assert process.poll() is None, process.stdout.read()
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = int(tf.train.latest_checkpoint(str(train_dir)).rsplit("-", 1)[1])
    assert 2 <= killed_at < 12

    result = tool(name, *flags)
    assert result.returncode == 0, result.stdout + result.stderr
    log = result.stdout + result.stderr
    assert "--checkpoint_path ignored" in log
    assert "Resuming from" in log and f"model.ckpt-{killed_at}" in log
    final = tf.train.latest_checkpoint(str(train_dir))
    assert final.endswith("model.ckpt-12")
    reader = tf.train.load_checkpoint(final)  # every kept checkpoint is readable
    assert reader.get_tensor("global_step") == 12
    for prefix in tf.train.get_checkpoint_state(str(train_dir)).all_model_checkpoint_paths:
        tf.train.load_checkpoint(prefix).get_tensor("global_step")
