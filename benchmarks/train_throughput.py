"""How fast does each training engine train, is the input pipeline fast enough to keep
the train step busy, and what does deterministic training cost?

Measures, in one run and for each image size (--parts picks which):

  engines   images/s of slimtune-train itself on each engine, --engine=slim (the TF1
            graph) and --engine=keras (the Keras 3 mirror), with the same flags: the
            model (resnet_v1_50), batch, --optimizer, --weight_decay, the architecture's
            BatchNorm (--freeze_batch_norm if given), digits with the model's default
            preprocessing, no seed (the command's default), from random weights.  Each
            engine runs in its own child process (so its peak RSS is its own: ru_maxrss
            at its last timed step) and stops at every --engine_block-th step's progress
            line until told to go on; the first block is warm-up (graph building,
            tracing), then the timed blocks alternate slim, keras, slim, keras ... for
            --engine_rounds rounds, so a neighbour's load falls on both.  A block's time
            is the engine's whole loop: input, step, reading the outputs, progress.
            Reported: each engine's median images/s over the rounds, the ratio of the
            medians keras/slim (target >= --min_engine_ratio, default 0.9), the range and
            the median of the per-round ratios (each round's two blocks ran seconds
            apart, so a change of load between rounds cancels out of them), peak RSS and
            the CPU cores each used while timed.
  pipeline  the input pipeline against the train step, each plain (TensorFlow's
            default) and deterministic (what a seeded slimtune-train does by default:
            graph seed, pipeline in order, TensorFlow op determinism on):
    step    images/s of the resnet_v1_50 train step (the op slimtune trains with:
            slim.learning.create_train_op with the BatchNorm UPDATE_OPS, softmax cross
            entropy, momentum) fed from a constant in-memory batch, so no input
            pipeline is involved.  Each mode gets its own tf.Graph and Session; the
            timed steps alternate between the two in --rounds blocks, so a neighbour's
            load on a shared machine falls on both.
    input   images/s of slimtune's tf.data input pipeline alone
            (slimtune.data.pipeline.batches with inception preprocessing, training
            mode) on the built-in digits dataset, iterated eagerly, no model.  With
            op determinism, tf.data runs a map with random ops one element at a time.

  precision images/s of slimtune-train --mixed_precision=float32 and bfloat16 on each
            engine (the engines part's settings and child processes, the two formats'
            blocks alternating for --precision_rounds rounds), with each run's peak RSS,
            the ratio bfloat16/float32 (target >= --min_precision_ratio at 224 px and
            more) and the fraction of this machine's matmul peak each reaches: images/s
            x GFLOP per training image (3 x the TF profiler's float ops of the slim
            forward graph: the gradients with respect to activations and to weights
            each cost a forward pass) / the GFLOP/s of a 2048^2 matmul in the same
            format, measured in the same run.  Needs a CPU with AVX512_BF16 or AMX.
            Not in the default --parts.

and prints a table per part: for engines, PASS if keras/slim >= --min_engine_ratio; for
the pipeline, each mode's step time and their ratio, the ratio pipeline/step, and PASS
if in both modes (plain, deterministic) the pipeline is at least --min_ratio (default 3)
times faster than the step.  Exit code 1 if any size FAILs.
The pipeline and the step are measured one after the other, each using every core; in
real training they share the cores, hence the safety margin.  "cores" is the CPU time
used per second of wall time: well below the core count means other processes were
competing for the CPU and the absolute numbers are low.

Defaults take about 15-25 minutes on 2 busy CPU cores (a 224 px step with batch 8
takes ~2-8 s, so larger sizes get fewer steps unless --steps/--warmup/--engine_block
are given).  The digits dataset is written to $SLIMTUNE_CACHE (default
~/.cache/slimtune) on first use.

  python benchmarks/train_throughput.py
  python benchmarks/train_throughput.py --parts=engines --image_sizes=32 --engine_rounds=3
  python benchmarks/train_throughput.py --image_sizes=96 --batch_size=16 --steps=10
  python benchmarks/train_throughput.py --report_json=/tmp/throughput.json
  python benchmarks/train_throughput.py --parts=precision --batch_size=16
"""

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported

from absl import app, flags  # noqa: E402

from text_table import print_columns  # noqa: E402

flags.DEFINE_list("parts", ["engines", "pipeline"], "What to measure: engines (slimtune-train "
                  "--engine=slim vs --engine=keras), pipeline (input pipeline vs train step, "
                  "plain and deterministic).")
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
flags.DEFINE_integer("engine_rounds", 10, "Engines: timed blocks per engine, alternating "
                     "slim, keras.", lower_bound=1)
flags.DEFINE_integer("engine_block", None, "Engines: steps per block (default: 5 up to 128 "
                     "px, 2 above); one untimed block first.", lower_bound=1)
flags.DEFINE_string("optimizer", "momentum", "Engines: --optimizer of both runs.")
flags.DEFINE_float("weight_decay", 0.00004, "Engines: --weight_decay of both runs.")
flags.DEFINE_bool("freeze_batch_norm", False, "Engines: --freeze_batch_norm for both runs.")
flags.DEFINE_float("min_engine_ratio", 0.9, "Target: keras engine images/s >= this x slim's.")
flags.DEFINE_integer("precision_rounds", 4, "Precision: timed blocks per run, alternating "
                     "float32, bfloat16.", lower_bound=1)
flags.DEFINE_float("min_precision_ratio", 1.4, "Target: bfloat16 images/s >= this x "
                   "float32's, at sizes of 224 px and more (smaller steps are dominated by "
                   "what bfloat16 does not speed up: reported only).")
flags.DEFINE_string("engine_child", None, "Internal: run one engine as a child process, "
                    "with the settings in this JSON.")
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


ENGINES = ("slim", "keras")
CHILD_PREFIX = "train_throughput: "  # the lines of a child's stdout meant for the parent


def _peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_engine_child(settings):
    """Body of an engine's child process: slimtune-train with ``settings``, stopping at
    each progress line to report the block's wall and CPU seconds and waiting for a line
    on stdin before the next block."""
    import slimtune  # noqa: F401  (first, as in the tools: TensorFlow's oneDNN kernels)
    from slimtune import train

    started = {}

    def report(**values):
        print(CHILD_PREFIX + json.dumps(values), flush=True)

    def log(line):
        if not line.startswith("step "):  # Meter.line: the progress line of a block
            return
        now, cpu = time.perf_counter(), time.process_time()
        report(step=int(line.split()[1].split("/")[0]),
               seconds=now - started["wall"] if started else None,
               cpu_seconds=cpu - started["cpu"] if started else None,
               peak_rss_mib=_peak_rss_mib())
        if not sys.stdin.readline():
            raise SystemExit(1)  # the parent went away
        started.update(wall=time.perf_counter(), cpu=time.process_time())

    cfg = train.TrainConfig(**settings)
    train.train(cfg, log=log)
    report(done=True, peak_rss_mib=_peak_rss_mib())


class _EngineChild:
    """One run's child process (``name``: its label, ``settings``: its TrainConfig
    fields), stepped a block at a time."""

    def __init__(self, name, settings, tmp):
        self.engine = name
        settings = dict(settings, train_dir=os.path.join(tmp, name))
        self.stderr = open(os.path.join(tmp, f"{name}.log"), "w+")
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__),
             f"--engine_child={json.dumps(settings)}"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True)

    def read(self):
        for line in self.process.stdout:
            if line.startswith(CHILD_PREFIX):
                return json.loads(line[len(CHILD_PREFIX):])
        self.process.wait()
        self.stderr.seek(0)
        raise RuntimeError(f"the {self.engine} engine's run failed (exit code "
                           f"{self.process.returncode}):\n{self.stderr.read()[-3000:]}")

    def block(self):
        """Run the next block; returns its report."""
        self.process.stdin.write("go\n")
        self.process.stdin.flush()
        return self.read()

    def close(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.stderr.close()


def engines_images_per_sec(size, batch, block, rounds,
                           runs={engine: {"engine": engine} for engine in ENGINES}):
    """Per run (``runs``: label -> TrainConfig fields over the common settings; by
    default the two engines): median images/s over the rounds, per-round images/s,
    cores used and peak RSS; each run in its own process, blocks alternating."""
    settings = dict(dataset_name="digits", model_name=FLAGS.model_name,
                    train_image_size=size, batch_size=batch,
                    max_number_of_steps=block * (rounds + 1), optimizer=FLAGS.optimizer,
                    learning_rate=0.01, learning_rate_decay_type="fixed",
                    weight_decay=FLAGS.weight_decay, freeze_batch_norm=FLAGS.freeze_batch_norm,
                    log_every_n_steps=block, save_interval_secs=10**9,
                    save_summaries_secs=10**9)
    tmp = tempfile.mkdtemp(prefix="train_throughput_")
    children = {}
    try:
        start = time.perf_counter()
        for name, own in runs.items():  # all build and warm up at once; nothing is timed
            children[name] = _EngineChild(name, {**settings, **own}, tmp)
        for child in children.values():
            child.read()
        log(f"  {size}px: {', '.join(runs)} built and warmed up ({block} steps) in "
            f"{time.perf_counter() - start:.0f} s; {rounds} rounds of {block} steps each")
        speed = {name: [] for name in runs}
        cores = dict.fromkeys(runs, 0.0)
        wall = dict.fromkeys(runs, 0.0)
        peak = {}
        for r in range(rounds):
            for engine, child in children.items():
                out = child.block()
                speed[engine].append(batch * block / out["seconds"])
                wall[engine] += out["seconds"]
                cores[engine] += out["cpu_seconds"]
                peak[engine] = out["peak_rss_mib"]
            log(f"  round {r + 1}: " + ", ".join(
                f"{name} {speed[name][-1]:.2f} images/s" for name in runs))
        for child in children.values():
            child.block()  # past the last progress line: the run saves and ends
            child.process.wait()
    finally:
        for child in children.values():
            child.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return {engine: {"images_per_sec": statistics.median(speed[engine]),
                     "rounds": speed[engine], "cores_used": cores[engine] / wall[engine],
                     "peak_rss_mib": peak[engine]} for engine in runs}


def print_engine_table(rows, target):
    header = ("size", "slim img/s", "keras img/s", "keras/slim", "per round", "median",
              "slim cores",
              "keras cores", "slim peak RSS", "keras peak RSS", f"target >={target:g}x")
    lines = [header] + [
        (f"{r['image_size']}px", f"{r['slim']['images_per_sec']:.2f}",
         f"{r['keras']['images_per_sec']:.2f}", f"{r['ratio']:.3f}x",
         f"{min(r['round_ratios']):.2f}-{max(r['round_ratios']):.2f}x",
         f"{statistics.median(r['round_ratios']):.2f}x",
         f"{r['slim']['cores_used']:.1f}/{os.cpu_count()}",
         f"{r['keras']['cores_used']:.1f}/{os.cpu_count()}",
         f"{r['slim']['peak_rss_mib']:.0f} MiB", f"{r['keras']['peak_rss_mib']:.0f} MiB",
         "PASS" if r["pass"] else "FAIL")
        for r in rows]
    print_columns(lines)


def measure_engines(sizes, batch):
    rows = []
    for size in sizes:
        block = FLAGS.engine_block or (5 if size <= SMALL_MAX else 2)
        log(f"{size}px {FLAGS.model_name}, batch {batch}: slimtune-train --engine=slim and "
            "--engine=keras, each in its own process")
        figures = engines_images_per_sec(size, batch, block, FLAGS.engine_rounds)
        ratio = figures["keras"]["images_per_sec"] / figures["slim"]["images_per_sec"]
        rows.append({"image_size": size, "batch_size": batch, "block_steps": block,
                     "rounds": FLAGS.engine_rounds, **figures, "ratio": ratio,
                     "round_ratios": [k / s for k, s in zip(figures["keras"]["rounds"],
                                                            figures["slim"]["rounds"])],
                     "pass": ratio >= FLAGS.min_engine_ratio})
        log(f"  keras/slim {ratio:.2f}x (medians: slim {figures['slim']['images_per_sec']:.2f},"
            f" keras {figures['keras']['images_per_sec']:.2f} images/s)")
    return rows


PRECISIONS = ("float32", "bfloat16")
# A training step computes the forward pass, then the gradients with respect to the
# activations and to the weights: each a pass of the same multiply-adds as the forward.
TRAINING_FLOPS_PER_FORWARD = 3
MATMUL_SIZE = 2048


def matmul_gflops(dtype, repeats=30):
    """GFLOP/s of a square MATMUL_SIZE matmul in ``dtype`` on this machine (oneDNN, every
    core): the peak the training steps are measured against."""
    import tensorflow as tf

    a = tf.cast(tf.random.stateless_normal([MATMUL_SIZE] * 2, seed=[SEED, 0]), dtype)
    matmul = tf.function(lambda x: tf.linalg.matmul(x, x))
    matmul(a).numpy()  # trace, warm up
    start = time.perf_counter()
    for _ in range(repeats):
        out = matmul(a)
    out.numpy()
    return 2 * MATMUL_SIZE ** 3 * repeats / (time.perf_counter() - start) / 1e9


def training_gflop_per_image(size):
    """GFLOP of one training image at ``size``: TensorFlow's profiler's float-op count of
    the slim network's forward graph (one image, NUM_CLASSES outputs) times
    TRAINING_FLOPS_PER_FORWARD."""
    import tensorflow as tf

    from slimtune import compat, registry

    compat.apply()
    v1 = tf.compat.v1
    spec = registry.get(FLAGS.model_name)
    graph = tf.Graph()
    with graph.as_default():
        images = v1.placeholder(tf.float32, [1, size, size, 3])
        spec.build(images, NUM_CLASSES, is_training=False, batch_norm=spec.batch_norm)
        options = (v1.profiler.ProfileOptionBuilder(
            v1.profiler.ProfileOptionBuilder.float_operation()).with_empty_output().build())
        forward = v1.profiler.profile(graph, options=options).total_float_ops
    return TRAINING_FLOPS_PER_FORWARD * forward / 1e9


def measure_precision(sizes, batch):
    """Per size and engine: float32 and bfloat16 runs of slimtune-train, alternating."""
    from slimtune import precision

    precision.check_available(precision.BFLOAT16)
    peak = {dtype: matmul_gflops(dtype) for dtype in PRECISIONS}
    log("matmul peak: " + ", ".join(f"{d} {peak[d]:.0f} GFLOP/s" for d in PRECISIONS))
    rows = []
    for size in sizes:
        gflop = training_gflop_per_image(size)
        block = FLAGS.engine_block or (5 if size <= SMALL_MAX else 2)
        for engine in ENGINES:
            log(f"{size}px {FLAGS.model_name}, batch {batch}, --engine={engine}: "
                f"--mixed_precision=float32 and bfloat16 ({gflop:.2f} GFLOP per image)")
            runs = {mode: {"engine": engine, "mixed_precision": mode} for mode in PRECISIONS}
            figures = engines_images_per_sec(size, batch, block, FLAGS.precision_rounds, runs)
            ratio = figures["bfloat16"]["images_per_sec"] / figures["float32"]["images_per_sec"]
            for mode in PRECISIONS:
                figures[mode]["peak_fraction"] = (figures[mode]["images_per_sec"] * gflop
                                                  / peak[mode])
            rows.append({"engine": engine, "image_size": size, "batch_size": batch,
                         "gflop_per_image": gflop, "matmul_gflops": peak, **figures,
                         "ratio": ratio, "round_ratios": [
                             b / f for b, f in zip(figures["bfloat16"]["rounds"],
                                                   figures["float32"]["rounds"])],
                         "pass": ratio >= FLAGS.min_precision_ratio if size >= 224 else None})
            log(f"  bfloat16/float32 {ratio:.2f}x")
    return rows


def print_precision_table(rows, target):
    header = ("engine", "size", "GFLOP/img", "f32 img/s", "bf16 img/s", "bf16/f32",
              "per round", "f32 of peak", "bf16 of peak", "cores f32/bf16", "f32 peak RSS",
              "bf16 peak RSS", f"target >={target:g}x")
    lines = [header] + [
        (r["engine"], f"{r['image_size']}px", f"{r['gflop_per_image']:.2f}",
         f"{r['float32']['images_per_sec']:.2f}", f"{r['bfloat16']['images_per_sec']:.2f}",
         f"{r['ratio']:.2f}x",
         f"{min(r['round_ratios']):.2f}-{max(r['round_ratios']):.2f}x",
         f"{r['float32']['peak_fraction']:.0%}", f"{r['bfloat16']['peak_fraction']:.0%}",
         f"{r['float32']['cores_used']:.1f}/{r['bfloat16']['cores_used']:.1f}",
         f"{r['float32']['peak_rss_mib']:.0f} MiB", f"{r['bfloat16']['peak_rss_mib']:.0f} MiB",
         "-" if r["pass"] is None else "PASS" if r["pass"] else "FAIL")
        for r in rows]
    print_columns(lines)


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
    print_columns(lines)


def measure_pipeline(sizes, batch):
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
    return rows


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.engine_child:
        run_engine_child(json.loads(FLAGS.engine_child))
        return 0
    try:
        sizes = [int(s) for s in FLAGS.image_sizes]
    except ValueError:
        raise app.UsageError(f"--image_sizes must be integers, got {FLAGS.image_sizes}")
    unknown = set(FLAGS.parts) - {"engines", "pipeline", "precision"}
    if unknown or not FLAGS.parts:
        raise app.UsageError(f"--parts takes engines, pipeline and/or precision, got "
                             f"{FLAGS.parts}")
    batch = FLAGS.batch_size
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    results = {}
    if "engines" in FLAGS.parts:
        results["engines"] = measure_engines(sizes, batch)
    if "pipeline" in FLAGS.parts:
        log("importing TensorFlow and opening the digits dataset")
        results["pipeline"] = measure_pipeline(sizes, batch)
    if "precision" in FLAGS.parts:
        results["precision"] = measure_precision(sizes, batch)
    total = time.perf_counter() - started
    load = (load_before, os.getloadavg()[0])
    if "engines" in results:
        print()
        print(f"slimtune-train --engine=keras vs --engine=slim: {FLAGS.model_name}, batch "
              f"{batch}, --optimizer={FLAGS.optimizer} --weight_decay={FLAGS.weight_decay:g}"
              + (" --freeze_batch_norm" if FLAGS.freeze_batch_norm else "")
              + "; medians over the rounds, engines alternating")
        print_engine_table(results["engines"], FLAGS.min_engine_ratio)
    if "pipeline" in results:
        print()
        print(f"{FLAGS.model_name} train step vs input pipeline (digits, inception "
              f"preprocessing), batch {batch}; plain and deterministic (seed, pipeline in "
              "order, op determinism)")
        print_table(results["pipeline"], FLAGS.min_ratio)
    if "precision" in results:
        rows = results["precision"]
        print()
        print(f"slimtune-train --mixed_precision=bfloat16 vs float32: {FLAGS.model_name}, "
              f"batch {batch}, --optimizer={FLAGS.optimizer}; medians over the rounds, "
              f"runs alternating; of peak: images/s x GFLOP/img over the matmul peak of "
              f"its format (float32 {rows[0]['matmul_gflops']['float32']:.0f}, bfloat16 "
              f"{rows[0]['matmul_gflops']['bfloat16']:.0f} GFLOP/s, {MATMUL_SIZE}^2 "
              f"matmul); GFLOP/img: {TRAINING_FLOPS_PER_FORWARD} x the profiler's forward "
              "float ops")
        print_precision_table(rows, FLAGS.min_precision_ratio)
    print(f"total time {total:.0f} s; load average (1 min) {load[0]:.1f} at the start, "
          f"{load[1]:.1f} at the end, on {os.cpu_count()} cores")
    if FLAGS.report_json:
        with open(FLAGS.report_json, "w") as f:
            json.dump({"model_name": FLAGS.model_name, "min_ratio": FLAGS.min_ratio,
                       "min_engine_ratio": FLAGS.min_engine_ratio,
                       "cpu_count": os.cpu_count(), "load_average": load,
                       "total_seconds": total, **results},
                      f, indent=2)
        log(f"wrote {FLAGS.report_json}")
    return 0 if all(r["pass"] is not False for rows in results.values() for r in rows) else 1


if __name__ == "__main__":
    app.run(main)
