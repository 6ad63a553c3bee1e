"""One step of the slim engine's replica function on a fixed batch of 8 images, in one
process: as one replica (no strategy) and as 2 replicas x 4 images (MirroredStrategy over
2 logical CPUs, each replica its half), from the same starting weights, without and
with --clip_gradient_norm.  Prints, as JSON, each run's loss, regularization total and
weights after the step.

BatchNorm is frozen so that each image's outputs do not depend on the others in its
batch.  Run as ``python replica_step_check.py <digits dir> <weight decay> <clip
norm>``; a subprocess, because the logical devices must be
set before any TensorFlow op of the process runs.
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

from slimtune import compat, distribute, train  # noqa: E402
from slimtune.data import pipeline  # noqa: E402
from slimtune.slim_engine import graph  # noqa: E402

import test_register_architecture  # noqa: E402


def one_step(cfg, run, split, placement, strategy, images, labels, start):
    """``(loss, regularization, {name: value})`` after one step from checkpoint ``start``
    (None: initialise, save there)."""
    v1 = tf.compat.v1
    g = tf.Graph()
    with g.as_default(), (strategy or tf.distribute.get_strategy()).scope():
        v1.set_random_seed(1)
        global_step = v1.train.get_or_create_global_step()
        halves = [(tf.constant(images[i::2]), tf.constant(labels[i::2])) for i in range(2)]
        if strategy is None:
            def inputs():
                return tf.constant(images), tf.constant(labels)
        else:
            def inputs():
                return graph._local_batch(strategy, halves)
        wish = tf.zeros([2])
        out = (strategy or tf.distribute.get_strategy()).run(
            lambda: graph._replica_step(cfg, run, split, False, global_step, placement,
                                        inputs, wish))
        if strategy is None:
            loss, regularization = out[0], out[1]
        else:
            total = lambda x: strategy.reduce(tf.distribute.ReduceOp.SUM, x, axis=None)  # noqa
            loss, regularization = total(out[0]), total(out[1])
        saver = v1.train.Saver()
        config = compat.session_config()
        if strategy is not None:
            config = strategy.update_config_proto(config)
        with v1.Session(graph=g, config=config) as sess:
            if start is None:
                sess.run(v1.global_variables_initializer())
                start = saver.save(sess, os.path.join(tempfile.mkdtemp(), "start"))
            else:
                saver.restore(sess, start)
            loss, regularization = sess.run([loss, regularization])
            weights = {v.op.name: sess.run(v).tolist() for v in v1.trainable_variables()}
    return float(loss), float(regularization), weights, start


def main(dataset_dir, weight_decay, clip_norm):
    two_replicas = distribute.Placement(num_clones=2, clone_on_cpu=True)
    strategy = distribute.slim_strategy(two_replicas)  # 2 logical CPUs, before any op
    test_register_architecture._register()
    cfg = train.TrainConfig(
        train_dir=tempfile.mkdtemp(), dataset_name="digits", dataset_dir=dataset_dir,
        model_name="tiny_convnet", train_image_size=32, batch_size=4, seed=1,
        optimizer="sgd", learning_rate=0.5, weight_decay=float(weight_decay),
        freeze_batch_norm=True)
    run = train._resolve(cfg)
    split = pipeline.open_split(cfg.dataset_name, cfg.dataset_dir, cfg.dataset_split_name,
                                cfg.dataset_file_pattern)
    run = train._on_split(cfg, run, split)
    rng = np.random.RandomState(0)
    images = rng.uniform(-1, 1, [8, 32, 32, 3]).astype(np.float32)
    labels = rng.randint(0, run.num_classes, [8]).astype(np.int64)
    start, report = None, {}
    for name, clip in (("plain", 0.0), ("clipped", float(clip_norm))):
        cfg = dataclasses.replace(cfg, clip_gradient_norm=clip)
        one = one_step(cfg, run, split, distribute.Placement(), None, images, labels, start)
        start = one[3]
        two = one_step(cfg, run, split, two_replicas, strategy, images, labels, start)
        report[name] = {"one": dict(zip(("loss", "regularization", "weights"), one[:3])),
                        "two": dict(zip(("loss", "regularization", "weights"), two[:3]))}
    reader = tf.train.load_checkpoint(start)
    report["start"] = {name: reader.get_tensor(name).tolist()
                       for name in report["plain"]["one"]["weights"]}
    print(json.dumps(report))


if __name__ == "__main__":
    main(*sys.argv[1:])
