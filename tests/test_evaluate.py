"""Evaluation builds the network with is_training=False and reads the training metadata."""

import numpy as np
import pytest
import tensorflow as tf

from slim_checkpoints import make_checkpoint
from slimtune import compare, evaluate, forms, metadata
from slimtune.data import pipeline, tfrecord
from slimtune.errors import DataError, UsageError

MODEL = "resnet_v1_50"


@pytest.fixture(scope="module")
def digits_checkpoint(digits_dir, tmp_path_factory):
    """A 10-class checkpoint with randomised BN statistics and a train-style slimtune.json."""
    directory = tmp_path_factory.mktemp("ckpt")
    prefix = make_checkpoint(str(directory / "model.ckpt"), MODEL, 10)
    metadata.write(str(directory), {"model_name": MODEL, "num_classes": 10, "image_size": 32,
                                    "preprocessing": "lenet", "labels_offset": 0,
                                    "batch_norm": {"decay": 0.9, "epsilon": 1e-3,
                                                   "scale": True, "mode": "follow"}})
    return prefix


def test_eval_reads_settings_from_metadata_and_counts_every_image(digits_checkpoint):
    result = evaluate.evaluate(evaluate.EvalConfig(
        checkpoint_path=digits_checkpoint, dataset_name="digits",
        dataset_split_name="validation", batch_size=64), log=print)
    assert result.count == 359  # the whole validation split, last batch short
    assert result.global_step == 1000
    assert 0.0 <= result.top1 <= result.top5 <= 1.0 and np.isfinite(result.loss)
    assert result.correct.shape == (359,) and result.correct.mean() == result.top1


def test_eval_graph_is_inference_mode(digits_checkpoint, digits_dir):
    """Same images, batches of different size: inference-mode logits are per example.

    Batches of 7 and of 100 may run different kernels (float32 rounding apart), so the
    two may name a different class only where the checkpoint's two best logits are
    within rounding (1e-5 of the largest logit) of each other."""
    r1 = evaluate.evaluate(evaluate.EvalConfig(checkpoint_path=digits_checkpoint,
                                               dataset_name="digits",
                                               dataset_split_name="validation", batch_size=7))
    r2 = evaluate.evaluate(evaluate.EvalConfig(checkpoint_path=digits_checkpoint,
                                               dataset_name="digits",
                                               dataset_split_name="validation", batch_size=100))
    assert r1.loss == pytest.approx(r2.loss, rel=1e-5)
    images, _ = pipeline.load_eval_arrays("digits", digits_dir, "validation", "lenet", 32)
    logits = forms.open_form(digits_checkpoint).run(images)
    ties = compare.near_ties(logits, 1e-5 * max(1.0, float(np.abs(logits).max())))
    differ = int(np.sum(r1.correct != r2.correct))  # per image, in split order
    print(f"batches of 7 vs 100: loss {r1.loss:.6g} vs {r2.loss:.6g}, {differ} images "
          f"differ, {ties} near ties")
    assert differ <= ties
    batch_mode = evaluate.evaluate(evaluate.EvalConfig(
        checkpoint_path=digits_checkpoint, dataset_name="digits",
        dataset_split_name="validation", batch_size=100,
        batch_statistics=True))
    assert batch_mode.loss != pytest.approx(r2.loss, rel=1e-3)


def test_model_name_contradicting_metadata_is_refused(digits_checkpoint):
    with pytest.raises(UsageError, match="trained as resnet_v1_50"):
        evaluate.evaluate(evaluate.EvalConfig(checkpoint_path=digits_checkpoint,
                                              dataset_name="digits",
                                              dataset_split_name="validation",
                                              model_name="resnet_v2_50"))


@pytest.mark.slow  # test_data locates bad records by default
def test_label_outside_the_class_range_names_shard_and_record(digits_checkpoint, tmp_path):
    """A dataset whose labels.txt says 3 classes but a record says 7."""
    image = tf.io.encode_png(np.zeros((32, 32, 3), np.uint8)).numpy()
    records = [tfrecord.image_example(image, "png", label, 32, 32) for label in (0, 1, 7, 2)]
    tfrecord.write_split(str(tmp_path), "validation", records, 1)
    tfrecord.write_labels(str(tmp_path), {0: "a", 1: "b", 2: "c"})
    from slimtune import train

    with pytest.raises(DataError, match=r"record 2 of shard .*validation-00000-of-00001 has label 7"):
        train.train(train.TrainConfig(
            train_dir=str(tmp_path / "run"), dataset_name="tiny", dataset_dir=str(tmp_path),
            dataset_split_name="validation", model_name=MODEL, preprocessing_name="lenet",
            train_image_size=32, batch_size=4, max_number_of_steps=2), log=print)


def test_corrupt_image_record_is_named(tmp_path):
    image = tf.io.encode_png(np.zeros((32, 32, 3), np.uint8)).numpy()
    records = [tfrecord.image_example(image, "png", 0, 32, 32),
               tfrecord.image_example(b"not an image", "png", 1, 32, 32)] * 3
    tfrecord.write_split(str(tmp_path), "train", records, 2)
    tfrecord.write_labels(str(tmp_path), {0: "a", 1: "b"})
    from slimtune import train

    with pytest.raises(DataError, match=r"record 1 of shard .*train-00000-of-00002"):
        train.train(train.TrainConfig(
            train_dir=str(tmp_path / "run"), dataset_name="tiny", dataset_dir=str(tmp_path),
            model_name=MODEL, preprocessing_name="lenet", train_image_size=32, batch_size=4,
            max_number_of_steps=2, seed=0), log=print)
