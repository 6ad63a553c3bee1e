"""Time to the first training step on an ImageNet-layout folder of 1024 shards against 8.

research/slim knows each of its datasets' split sizes; counting ImageNet's 1,281,167
training records before step 1 would be a pass over about 140 GB.  slimtune takes
research/slim's sizes for its datasets (``--dataset_name=imagenet``) and counts any
other folder once, keeping the count in the cache.  This script writes two synthetic
ImageNet-layout folders (``train-NNNNN-of-01024`` and ``train-NNNNN-of-00008``, the
same 8x8 images in total, ``labels.txt``), runs one ``slimtune-train`` step on each in a
fresh process, alternating, and prints the median seconds from start to the end of the
first step and their ratio (target <= --max_ratio).  It also times a folder under a name
research/slim does not know: counted on the first run, read from the cache after.

About 2 minutes on 2 CPU cores with the defaults.

  python benchmarks/first_step.py
  python benchmarks/first_step.py --images_per_shard=128 --rounds=3
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

flags.DEFINE_integer("images_per_shard", 64, "Images in each of the 1024 shards (ImageNet's "
                     "hold about 1250; the shuffle buffer of 2048 records is filled from "
                     "2048 / this many shards before the first step).", lower_bound=1)
flags.DEFINE_integer("rounds", 2, "Timed runs per folder (alternating).", lower_bound=1)
flags.DEFINE_float("max_ratio", 1.2, "Target: 1024 shards take at most this x 8 shards' time.")
flags.DEFINE_string("model_name", "mobilenet_v1_025", "Network trained for one step.")
FLAGS = flags.FLAGS

CLASSES = 10


def write_folder(root, num_shards, total, seed=0):
    """An ImageNet-layout folder: ``total`` 32x32 PNGs in ``num_shards`` train shards."""
    import tensorflow as tf

    from slimtune.data import tfrecord

    rng = np.random.default_rng(seed)
    os.makedirs(root)
    # A few distinct small images, each written many times: the cost measured is the
    # shards', not the decoding.
    pngs = [tf.io.encode_png(rng.integers(0, 256, (8, 8, 3), np.uint8)).numpy()
            for _ in range(CLASSES)]
    per_shard = total // num_shards
    for index in range(num_shards):
        path = os.path.join(root, tfrecord.shard_name("train", index, num_shards))
        with tf.io.TFRecordWriter(path) as writer:
            for _ in range(per_shard):
                label = int(rng.integers(CLASSES))
                writer.write(tfrecord.image_example(pngs[label], "png", label, 8, 8))
    tfrecord.write_labels(root, {i: f"class{i}" for i in range(CLASSES)})
    return root


def first_step_seconds(dataset_dir, train_dir, dataset_name, cache):
    """Seconds from starting ``slimtune-train`` to its first step's progress line."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "SLIMTUNE_CACHE": cache}
    command = [sys.executable, "-m", "slimtune_tools.train_image_classifier",
               f"--train_dir={train_dir}", f"--dataset_name={dataset_name}",
               f"--dataset_dir={dataset_dir}", f"--model_name={FLAGS.model_name}",
               "--train_image_size=32", "--batch_size=4", "--max_number_of_steps=1",
               "--log_every_n_steps=1", "--seed=0", "--precise_bn_batches=0"]
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    seen = None
    for line in process.stdout:
        if seen is None and line.lstrip().startswith("step 1"):
            seen = time.perf_counter() - started
    process.wait()
    if process.returncode != 0 or seen is None:
        raise SystemExit(f"slimtune-train failed on {dataset_dir} (exit {process.returncode})")
    return seen


def main(argv):
    del argv
    total = 1024 * FLAGS.images_per_shard
    with tempfile.TemporaryDirectory() as tmp:
        folders = {shards: write_folder(os.path.join(tmp, f"s{shards}"), shards, total)
                   for shards in (1024, 8)}
        times = {1024: [], 8: []}
        for round_ in range(FLAGS.rounds):
            for shards, folder in folders.items():
                run = os.path.join(tmp, f"run{shards}_{round_}")
                times[shards].append(first_step_seconds(folder, run, "imagenet",
                                                         os.path.join(tmp, "cache")))
        counted = [first_step_seconds(folders[1024], os.path.join(tmp, f"other{i}"), "other",
                                      os.path.join(tmp, "cache_other")) for i in range(2)]
    big, small = statistics.median(times[1024]), statistics.median(times[8])
    ratio = big / small
    print(f"images {total}; seconds to the first step (median of {FLAGS.rounds}):")
    print(f"  --dataset_name=imagenet, 1024 shards: {big:.1f} s  {times[1024]}")
    print(f"  --dataset_name=imagenet,    8 shards: {small:.1f} s  {times[8]}")
    print(f"  ratio 1024/8 shards: {ratio:.2f}x (target <= {FLAGS.max_ratio}x) "
          f"{'PASS' if ratio <= FLAGS.max_ratio else 'FAIL'}")
    print(f"  unknown name, 1024 shards: counted {counted[0]:.1f} s, then cached "
          f"{counted[1]:.1f} s")
    return 0 if ratio <= FLAGS.max_ratio else 1


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
