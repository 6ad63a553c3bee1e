"""One Keras-engine step on 8 fixed images whose two halves have different statistics,
in one process: as 2 replicas x 4 images (--num_clones=2: MirroredStrategy over 2
logical CPUs, replica r its half) with and without --sync_batch_norm, and as one replica
on all 8; all from the same slim checkpoint.  Also each half alone through the
one-replica model in training mode (the BatchNorm statistics a replica computes on its
own).  Prints, as JSON, each run's loss, trained weights and every BatchNorm layer's
moving statistics (each replica's copy for the 2-replica runs).

Run as ``python keras_sync_bn_check.py <digits dir>``; a subprocess, because the logical
devices must be set before any TensorFlow op of the process runs.
"""

import dataclasses
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)

from slimtune import bn_layers, distribute, train  # noqa: E402

import test_register_architecture  # noqa: E402
from slim_checkpoints import make_checkpoint  # noqa: E402


def statistics(model, strategy=None):
    """``{layer: [[moving mean, moving variance] of each replica]}``."""
    local = (strategy or tf.distribute.get_strategy()).experimental_local_results
    return {layer.name: [[m.numpy().tolist(), v.numpy().tolist()] for m, v in zip(
        local(layer.moving_mean.value), local(layer.moving_variance.value))]
        for layer in bn_layers.keras_layers(model)}


def weights(model):
    return {w.path: w.numpy().tolist() for w in model.trainable_weights}


def step(trainer, images, labels):
    out = trainer.step_fn(images, labels, tf.constant(0.0))
    return {"loss": float(out["total_loss"]), "weights": weights(trainer.model),
            "statistics": statistics(trainer.model, trainer.strategy)}


def main(dataset_dir):
    two = distribute.Placement(num_clones=2, clone_on_cpu=True)
    strategy = distribute.keras_strategy(two)  # 2 logical CPUs, before any op
    test_register_architecture._register()
    start = make_checkpoint(os.path.join(tempfile.mkdtemp(), "model.ckpt"), "tiny_convnet",
                            10)
    cfg = train.TrainConfig(
        dataset_name="digits", dataset_dir=dataset_dir, model_name="tiny_convnet",
        train_image_size=32, batch_size=4, seed=1, optimizer="sgd", learning_rate=0.5,
        learning_rate_decay_type="fixed", weight_decay=1e-3, checkpoint_path=start,
        engine="keras", num_clones=2, clone_on_cpu=True)
    rng = np.random.RandomState(0)
    images = rng.uniform(-1, 1, [8, 32, 32, 3]).astype(np.float32)
    images[4:] = 0.3 * images[4:] + 0.5  # the second half: another mean and variance
    labels = rng.randint(0, 10, [8]).astype(np.int64)
    halves = [(images[:4], labels[:4]), (images[4:], labels[4:])]
    report = {}
    for name, sync in (("plain", False), ("sync", True)):
        trainer = train._open(dataclasses.replace(cfg, train_dir=tempfile.mkdtemp(),
                                                  sync_batch_norm=sync),
                              lambda line: None, two, strategy)[0]
        images_, labels_ = (strategy.experimental_distribute_values_from_function(
            lambda context, part=part: tf.constant(
                halves[context.replica_id_in_sync_group][part])) for part in (0, 1))
        report[name] = step(trainer, images_, labels_)
    one = train._open(dataclasses.replace(cfg, train_dir=tempfile.mkdtemp(), batch_size=8,
                                          num_clones=1), lambda line: None)[0]
    initial = one.model.get_weights()
    report["halves"] = []
    for half, _ in halves:
        one.model(tf.constant(half), training=True)  # a replica's own batch statistics
        report["halves"].append(statistics(one.model))
        one.model.set_weights(initial)
    report["one"] = step(one, tf.constant(images), tf.constant(labels))
    print(json.dumps(report))


if __name__ == "__main__":
    main(*sys.argv[1:])
