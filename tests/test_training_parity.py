"""slimtune-verify-training: both engines K steps from one checkpoint, compared step by
step and layer by layer; exit 0 when they agree, 1 when they do not, 2 on bad input.

The figures of the larger architectures are test_keras_engine_equivalence's; here the
command itself: what it prints, what it writes, and that a wrong engine fails it."""

import json
import os
import subprocess
import sys

import pytest

from test_register_architecture import NAME as TINY, SCOPE as TINY_SCOPE
from test_register_architecture import _register as register_tiny_net

from slimtune import train, training_parity
from slimtune.errors import UnusableInput
from slimtune.testing import make_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 3


@pytest.fixture(scope="module")
def tiny_start(tmp_path_factory):
    register_tiny_net()
    return make_checkpoint(str(tmp_path_factory.mktemp("tiny") / "model.ckpt"), TINY,
                           num_classes=10, image_size=32)


def _config(tmp_path, start, digits_dir, **overrides):
    settings = dict(train_dir=str(tmp_path / "runs"), dataset_name="digits",
                    dataset_dir=digits_dir, model_name=TINY, preprocessing_name="lenet",
                    train_image_size=32, batch_size=4, checkpoint_path=start,
                    optimizer="momentum", learning_rate=1e-2, learning_rate_decay_type="fixed",
                    weight_decay=4e-4, label_smoothing=0.1)
    settings.update(overrides)
    return train.TrainConfig(**settings)


def test_the_engines_agree_and_every_step_and_layer_is_printed(tiny_start, digits_dir,
                                                               tmp_path):
    """The whole tiny network (BatchNorm in training mode), three steps: each step's loss
    on both engines, a row per layer in network order, PASS, and the JSON report."""
    lines = []
    report = tmp_path / "parity.json"
    parity = training_parity.verify_training(
        _config(tmp_path, tiny_start, digits_dir),
        training_parity.ParityConfig(training_steps=STEPS, report_json=str(report)),
        log=lines.append)
    text = "\n".join(lines)
    print(text)
    assert parity.problems == [] and lines[-1].startswith("PASS")
    steps = [line.split() for line in lines if line.split()[:1] in (["1"], ["2"], ["3"])]
    assert [row[0] for row in steps] == ["1", "2", "3"]
    assert [row.layer for row in parity.layers] == [
        f"{TINY_SCOPE}/conv1", f"{TINY_SCOPE}/conv2", f"{TINY_SCOPE}/logits"]
    assert any(line.startswith(f"{TINY_SCOPE}/logits ") for line in lines)
    assert parity.moved >= 10 * parity.weight_rtol and parity.compared > 2
    written = json.loads(report.read_text())
    assert written["passed"] is True and len(written["slim_losses"]) == STEPS
    assert sorted(os.listdir(tmp_path / "runs")) == ["keras", "slim"]


def test_an_engine_that_drops_label_smoothing_fails(tiny_start, digits_dir, tmp_path,
                                                    monkeypatch):
    """A Keras engine that ignores --label_smoothing: the losses differ from step 1 and
    the weights from the first layer on; both are named and the check fails."""
    from slimtune.keras_engine import step

    honest = step.cross_entropy
    monkeypatch.setattr(step, "cross_entropy",
                        lambda one_hot, logits, label_smoothing, *args:
                        honest(one_hot, logits, 0.0, *args))
    parity = training_parity.verify_training(
        _config(tmp_path, tiny_start, digits_dir, train_dir=None),
        training_parity.ParityConfig(training_steps=2), log=lambda line: None)
    problems = parity.problems
    print(problems)
    assert problems[0].startswith("per-step loss") and "first at step 1 " in problems[0]
    assert any(p.startswith("trained weights") and f"first in {parity.layers[0].layer}" in p
               for p in problems)


def test_bad_input_is_refused_before_training(tiny_start, digits_dir, tmp_path):
    options = training_parity.ParityConfig(training_steps=STEPS)
    with pytest.raises(UnusableInput, match="^--checkpoint_path is required"):
        training_parity.verify_training(_config(tmp_path, None, digits_dir), options)
    with pytest.raises(UnusableInput, match=r"^--checkpoint_path=.*model\.keras is a \.keras"):
        training_parity.verify_training(
            _config(tmp_path, str(tmp_path / "model.keras"), digits_dir), options)
    (tmp_path / "runs" / "slim").mkdir(parents=True)
    (tmp_path / "runs" / "slim" / "checkpoint").write_text("")
    with pytest.raises(UnusableInput, match="runs/slim is not empty"):
        training_parity.verify_training(_config(tmp_path, tiny_start, digits_dir), options)
    with pytest.raises(UnusableInput, match="^unknown model name"):  # a train error: exit 2
        training_parity.verify_training(
            _config(tmp_path, tiny_start, digits_dir, train_dir=None, model_name="nope"),
            options)


def test_the_command_compares_mobilenet_v1_with_dropout_turned_off(digits_dir, tmp_path):
    """As a user runs it: slimtune-verify-training on a MobileNet v1 checkpoint (it has
    dropout, turned off for the comparison), its head trained three steps with Adam:
    the losses and the layers printed, PASS, exit 0; the runs in a temporary directory,
    removed."""
    start = make_checkpoint(str(tmp_path / "start" / "model.ckpt"), "mobilenet_v1_025",
                            num_classes=10, image_size=32)
    command = [sys.executable, os.path.join(ROOT, "tools", "verify_training.py"),
               f"--checkpoint_path={start}", "--dataset_name=digits",
               f"--dataset_dir={digits_dir}", "--model_name=mobilenet_v1_025",
               "--preprocessing_name=lenet", "--train_image_size=32", "--batch_size=4",
               "--optimizer=adam", "--learning_rate=0.001", "--opt_epsilon=1e-3",
               "--trainable_scopes=MobilenetV1/Logits", f"--training_steps={STEPS}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900,
                            env={**os.environ, "TMPDIR": str(tmp_path)})
    print(result.stdout[-3000:])
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "PASS: the Keras engine trains like the slim engine" in out
    assert "MobilenetV1/Logits/Conv2d_1c_1x1 " in out and "MobilenetV1/Conv2d_0 " in out
    # The runs went to a temporary directory (under TMPDIR), removed at the end.
    assert not [n for n in os.listdir(tmp_path) if n.startswith("slimtune_verify_training")]
    assert "--engine=keras: 3 steps in " + str(tmp_path) in out
