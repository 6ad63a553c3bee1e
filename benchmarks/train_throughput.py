"""Is the input pipeline fast enough to keep the ResNet train step busy?

Measures, in one run and for each image size:

  step      images/s of the resnet_v1_50 train step (the op slimtune trains with:
            slim.learning.create_train_op with the BatchNorm UPDATE_OPS, softmax cross
            entropy, momentum) fed from a constant in-memory batch, so no input
            pipeline is involved.  Each size gets its own tf.Graph and Session.
  pipeline  images/s of slimtune's tf.data input pipeline alone
            (slimtune.data.pipeline.batches with inception preprocessing, training
            mode) on the built-in digits dataset, iterated eagerly, no model.

and prints a table with the ratio pipeline/step and PASS if the pipeline is at least
--min_ratio (default 3) times faster than the step.  Exit code 1 if any size FAILs.
The two are measured one after the other, each using every core; in real training
they share the cores, hence the safety margin.  "step cores" is the CPU time the step
used per second of wall time: well below the core count means other processes were
competing for the CPU and the absolute numbers are low.

Defaults take about 3-4 minutes on 2 CPU cores (a 224 px step with batch 8 takes
~1.8 s, so larger sizes get fewer steps unless --steps/--warmup are given).  The
digits dataset is written to $SLIMTUNE_CACHE (default ~/.cache/slimtune) on first use.

  python benchmarks/train_throughput.py
  python benchmarks/train_throughput.py --image_sizes=96 --batch_size=16 --steps=10
  python benchmarks/train_throughput.py --report_json=/tmp/throughput.json
"""

import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported

from absl import app, flags  # noqa: E402

flags.DEFINE_list("image_sizes", ["64", "224"], "Square input sizes in pixels.")
flags.DEFINE_integer("batch_size", 8, "Images per train step and per pipeline batch.",
                     lower_bound=1)
flags.DEFINE_integer("steps", None, "Timed train steps per size (default: 15 up to 128 px, "
                     "5 above).", lower_bound=1)
flags.DEFINE_integer("warmup", None, "Untimed train steps first (default: 3 up to 128 px, "
                     "2 above).", lower_bound=0)
flags.DEFINE_integer("pipeline_batches", 200, "Timed pipeline batches per size.",
                     lower_bound=1)
flags.DEFINE_integer("pipeline_warmup", 10, "Untimed pipeline batches first.",
                     lower_bound=0)
flags.DEFINE_string("model_name", "resnet_v1_50", "Architecture of the train step.")
flags.DEFINE_float("min_ratio", 3.0, "Target: pipeline images/s >= this x step images/s.")
flags.DEFINE_string("report_json", None, "Also write the results to this JSON file.")
FLAGS = flags.FLAGS

NUM_CLASSES = 10
SMALL_MAX = 128  # sizes up to this get the larger default step counts


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def step_images_per_sec(size, batch, warmup, steps):
    """Train-step images/s, s/step and cores used, on a constant batch in a variable."""
    import numpy as np
    import tensorflow as tf

    from slimtune import compat, registry

    slim = compat.apply()
    v1 = tf.compat.v1
    start = time.perf_counter()
    with tf.Graph().as_default():
        rng = np.random.RandomState(0)
        images = v1.Variable(rng.uniform(-1, 1, [batch, size, size, 3]).astype(np.float32),
                             trainable=False, name="images")
        labels = tf.constant(rng.randint(0, NUM_CLASSES, batch))
        global_step = v1.train.get_or_create_global_step()
        logits, _ = registry.get(FLAGS.model_name).build(
            images, NUM_CLASSES, is_training=True, weight_decay=0.00004)
        v1.losses.softmax_cross_entropy(tf.one_hot(labels, NUM_CLASSES), logits)
        train_op = slim.learning.create_train_op(
            v1.losses.get_total_loss(), v1.train.MomentumOptimizer(0.01, 0.9),
            global_step=global_step,
            update_ops=v1.get_collection(v1.GraphKeys.UPDATE_OPS))
        init = v1.global_variables_initializer()
        with v1.Session() as sess:
            sess.run(init)
            log(f"  {size}px step: graph built in {time.perf_counter() - start:.1f} s; "
                f"{warmup} warm-up + {steps} timed steps")
            for _ in range(warmup):
                sess.run(train_op)
            start, cpu_start = time.perf_counter(), time.process_time()
            for _ in range(steps):
                sess.run(train_op)
            elapsed = time.perf_counter() - start
            cores = (time.process_time() - cpu_start) / elapsed
    return batch * steps / elapsed, elapsed / steps, cores


def pipeline_images_per_sec(split, size, batch, warmup, count):
    """Input-pipeline throughput: batches pulled eagerly, nothing else computed."""
    from slimtune.data import pipeline

    batches = iter(pipeline.batches(split, "inception", size, batch, is_training=True,
                                    num_classes=NUM_CLASSES))
    for _ in range(warmup):
        next(batches)
    start = time.perf_counter()
    for _ in range(count):
        next(batches)
    return batch * count / (time.perf_counter() - start)


def print_table(rows, min_ratio):
    header = ("size", "step img/s", "s/step", "step cores", "pipeline img/s", "pipeline/step",
              f"target >={min_ratio:g}x")
    lines = [header] + [
        (f"{r['image_size']}px", f"{r['step_images_per_sec']:.1f}", f"{r['step_seconds']:.3f}",
         f"{r['step_cores_used']:.1f}/{os.cpu_count()}",
         f"{r['pipeline_images_per_sec']:.0f}", f"{r['ratio']:.1f}x",
         "PASS" if r["pass"] else "FAIL") for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for n, line in enumerate(lines):
        print("  ".join(cell.rjust(w) for cell, w in zip(line, widths)))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        sizes = [int(s) for s in FLAGS.image_sizes]
    except ValueError:
        raise app.UsageError(f"--image_sizes must be integers, got {FLAGS.image_sizes}")
    batch = FLAGS.batch_size
    started = time.perf_counter()
    log("importing TensorFlow and opening the digits dataset")
    from slimtune.data import pipeline

    split = pipeline.open_split("digits", None, "train")
    rows = []
    for size in sizes:
        small = size <= SMALL_MAX
        warmup = FLAGS.warmup if FLAGS.warmup is not None else (3 if small else 2)
        steps = FLAGS.steps if FLAGS.steps is not None else (15 if small else 5)
        log(f"{size}px pipeline: {FLAGS.pipeline_warmup} warm-up + "
            f"{FLAGS.pipeline_batches} timed batches of {batch}")
        pipe = pipeline_images_per_sec(split, size, batch, FLAGS.pipeline_warmup,
                                       FLAGS.pipeline_batches)
        log(f"  {pipe:.0f} images/s")
        log(f"{size}px {FLAGS.model_name} train step, batch {batch}: building graph")
        step, seconds, cores = step_images_per_sec(size, batch, warmup, steps)
        log(f"  {step:.1f} images/s ({seconds:.3f} s/step, {cores:.1f} cores busy)")
        rows.append({"image_size": size, "batch_size": batch, "warmup": warmup,
                     "steps": steps, "step_images_per_sec": step, "step_seconds": seconds,
                     "step_cores_used": cores,
                     "pipeline_images_per_sec": pipe, "ratio": pipe / step,
                     "pass": pipe >= FLAGS.min_ratio * step})
    total = time.perf_counter() - started
    print()
    print(f"{FLAGS.model_name} train step vs input pipeline (digits, inception "
          f"preprocessing), batch {batch}")
    print_table(rows, FLAGS.min_ratio)
    print(f"total time {total:.0f} s")
    if FLAGS.report_json:
        with open(FLAGS.report_json, "w") as f:
            json.dump({"model_name": FLAGS.model_name, "min_ratio": FLAGS.min_ratio,
                       "cpu_count": os.cpu_count(), "total_seconds": total, "rows": rows},
                      f, indent=2)
        log(f"wrote {FLAGS.report_json}")
    return 0 if all(r["pass"] for r in rows) else 1


if __name__ == "__main__":
    app.run(main)
