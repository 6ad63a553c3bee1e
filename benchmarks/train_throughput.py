"""Is the input pipeline fast enough to keep the ResNet train step busy, and what does
deterministic training cost?

Measures, in one run and for each image size, each twice: plain (TensorFlow's default)
and deterministic (what a seeded slimtune-train does by default: graph seed, pipeline
in order, TensorFlow op determinism on):

  step      images/s of the resnet_v1_50 train step (the op slimtune trains with:
            slim.learning.create_train_op with the BatchNorm UPDATE_OPS, softmax cross
            entropy, momentum) fed from a constant in-memory batch, so no input
            pipeline is involved.  Each mode gets its own tf.Graph and Session; the
            timed steps alternate between the two in --rounds blocks, so a neighbour's
            load on a shared machine falls on both.
  pipeline  images/s of slimtune's tf.data input pipeline alone
            (slimtune.data.pipeline.batches with inception preprocessing, training
            mode) on the built-in digits dataset, iterated eagerly, no model.  With
            op determinism, tf.data runs a map with random ops one element at a time.

and prints a table with the step time of each mode and their ratio, the ratio
pipeline/step, and PASS if in both modes the pipeline is at least --min_ratio
(default 3) times faster than the step.  Exit code 1 if any size FAILs.
The two are measured one after the other, each using every core; in real training
they share the cores, hence the safety margin.  "step cores" is the CPU time the step
used per second of wall time: well below the core count means other processes were
competing for the CPU and the absolute numbers are low.

Defaults take about 5-8 minutes on 2 CPU cores (two graphs per size; a 224 px step
with batch 8 takes ~1.8 s, so larger sizes get fewer steps unless --steps/--warmup are
given).  The
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
flags.DEFINE_integer("steps", None, "Timed train steps per size and mode (default: 15 up to "
                     "128 px, 6 above).", lower_bound=1)
flags.DEFINE_integer("rounds", 3, "Blocks the timed steps of each mode are split into, "
                     "alternating plain and deterministic.", lower_bound=1)
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
SEED = 0
MODES = ("plain", "deterministic")


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _train_step(size, batch, seed):
    """A Session running the train op on a constant batch in a variable, and its op."""
    import numpy as np
    import tensorflow as tf

    from slimtune import compat, registry

    slim = compat.apply()
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        if seed is not None:
            v1.set_random_seed(seed)
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
    sess = v1.Session(graph=graph)
    sess.run(init)
    return sess, train_op


def step_images_per_sec(size, batch, warmup, steps, rounds):
    """Per mode: train-step images/s, s/step and cores used, on a constant batch."""
    from slimtune import compat

    start = time.perf_counter()
    runs = {}
    for mode in MODES:
        with compat.op_determinism(mode == "deterministic"):
            runs[mode] = _train_step(size, batch, SEED if mode == "deterministic" else None)
    log(f"  {size}px step: graphs built in {time.perf_counter() - start:.1f} s; {warmup} "
        f"warm-up + {steps} timed steps per mode, in {rounds} alternating blocks")
    wall = dict.fromkeys(MODES, 0.0)
    cpu = dict.fromkeys(MODES, 0.0)

    def block(count, timed):
        for mode in MODES:
            sess, train_op = runs[mode]
            with compat.op_determinism(mode == "deterministic"):
                start, cpu_start = time.perf_counter(), time.process_time()
                for _ in range(count):
                    sess.run(train_op)
            if timed:
                wall[mode] += time.perf_counter() - start
                cpu[mode] += time.process_time() - cpu_start

    block(warmup, False)
    for r in range(rounds):
        block(steps // rounds + (r < steps % rounds), True)
    for sess, _ in runs.values():
        sess.close()
    return {mode: (batch * steps / wall[mode], wall[mode] / steps, cpu[mode] / wall[mode])
            for mode in MODES}


def pipeline_images_per_sec(split, size, batch, warmup, count, deterministic):
    """Input-pipeline throughput: batches pulled eagerly, nothing else computed."""
    import tensorflow as tf

    from slimtune import compat
    from slimtune.data import pipeline

    if deterministic:
        tf.random.set_seed(SEED)  # eager random ops take the global seed, as a graph's
    with compat.op_determinism(deterministic):
        batches = iter(pipeline.batches(split, "inception", size, batch, is_training=True,
                                        num_classes=NUM_CLASSES,
                                        seed=SEED if deterministic else None))
        for _ in range(warmup):
            next(batches)
        start = time.perf_counter()
        for _ in range(count):
            next(batches)
        return batch * count / (time.perf_counter() - start)


def print_table(rows, min_ratio):
    header = ("size", "step img/s", "s/step", "s/step determ.", "determ./plain", "step cores",
              "pipeline img/s", "determ.", "pipeline/step", "determ.", f"target >={min_ratio:g}x")
    lines = [header] + [
        (f"{r['image_size']}px", f"{r['step_images_per_sec']:.1f}", f"{r['step_seconds']:.3f}",
         f"{r['deterministic']['step_seconds']:.3f}", f"{r['step_cost']:.2f}x",
         f"{r['step_cores_used']:.1f}/{os.cpu_count()}",
         f"{r['pipeline_images_per_sec']:.0f}",
         f"{r['deterministic']['pipeline_images_per_sec']:.0f}", f"{r['ratio']:.1f}x",
         f"{r['deterministic']['ratio']:.1f}x", "PASS" if r["pass"] else "FAIL")
        for r in rows]
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
        steps = FLAGS.steps if FLAGS.steps is not None else (15 if small else 6)
        pipe = {}
        for mode in MODES:
            log(f"{size}px pipeline, {mode}: {FLAGS.pipeline_warmup} warm-up + "
                f"{FLAGS.pipeline_batches} timed batches of {batch}")
            pipe[mode] = pipeline_images_per_sec(split, size, batch, FLAGS.pipeline_warmup,
                                                 FLAGS.pipeline_batches, mode != "plain")
            log(f"  {pipe[mode]:.0f} images/s")
        log(f"{size}px {FLAGS.model_name} train step, batch {batch}: building graphs")
        step = step_images_per_sec(size, batch, warmup, steps, FLAGS.rounds)
        for mode in MODES:
            log(f"  {mode}: {step[mode][0]:.1f} images/s ({step[mode][1]:.3f} s/step, "
                f"{step[mode][2]:.1f} cores busy)")
        figures = {mode: {"step_images_per_sec": step[mode][0], "step_seconds": step[mode][1],
                          "step_cores_used": step[mode][2],
                          "pipeline_images_per_sec": pipe[mode],
                          "ratio": pipe[mode] / step[mode][0]} for mode in MODES}
        row = {"image_size": size, "batch_size": batch, "warmup": warmup, "steps": steps,
               "rounds": FLAGS.rounds, **figures["plain"],
               "deterministic": figures["deterministic"],
               "step_cost": step["deterministic"][1] / step["plain"][1]}
        row["pass"] = all(f["ratio"] >= FLAGS.min_ratio for f in figures.values())
        rows.append(row)
    total = time.perf_counter() - started
    print()
    print(f"{FLAGS.model_name} train step vs input pipeline (digits, inception "
          f"preprocessing), batch {batch}; plain and deterministic (seed, pipeline in "
          "order, op determinism)")
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
