"""What does a second worker cost?  1 worker against 2 workers on this machine, for each
training engine, and the all-reduce of one step's gradients.

Measures, in one run:

  workers     images/s per worker of slimtune-train itself (the same flags: the model,
              --image_size, --batch_size per worker, momentum, weight decay 4e-5, the
              architecture's BatchNorm, digits, seed 0), as 1 worker and as 2 workers
              started by slimtune-launch's pieces (slimtune.launch: free 127.0.0.1 ports,
              each worker's TF_CONFIG; the engines' MultiWorkerMirroredStrategy), for
              --engine=slim and --engine=keras.  Every worker process runs with --threads
              intra-op and inter-op threads (default 1, as the distributed tests), so one
              worker could hold its speed beside another on 2 free cores.  Each run logs
              every --block steps; the first block is warm-up (graph building, tracing,
              the workers finding each other), the next --blocks are timed, from one
              progress line to the last: input, step, the Keras engine's averaging of
              the BatchNorm copies at its log steps, progress.  The runs go one after
              the other: the all-reduce, then slim 1 worker, slim 2 workers, keras 1
              worker, keras 2 workers.
  all-reduce  seconds of one all-reduce (sum) of a list of float32 tensors shaped as the
              model's trainable weights (its gradients: the bytes a step sums over the
              workers), between 2 worker processes in the same setup (slimtune.launch,
              TF_CONFIG, --threads, tf.distribute.MultiWorkerMirroredStrategy,
              ReplicaContext.all_reduce inside strategy.run in a tf.function: the call the
              Keras 3 optimizer makes for the Keras engine; the slim engine's
              tf.compat.v1 strategy runs the same collective ops).  Measured as the same
              call with and without the collective (both copy the tensors into the
              replica, which the collective needs): the difference of their medians over
              --allreduce_reps timed calls each, after 2 warm-up calls; the slower
              worker's.  Runs first, while nothing else of this benchmark runs.

and prints a table: per engine, images/s of 1 worker, images/s per worker of 2 workers,
their ratio (2 workers / 1 worker, per worker; 1.0 = the second worker cost nothing),
the 2-worker step time, the all-reduce time and its share of that step, and the
gradient bytes with the loopback bandwidth they imply.  On a machine whose cores are
shared (here 2, with other processes), 2 workers cannot train faster in total than 1:
the ratio says how much of one worker's speed each keeps; the README's Benchmarks
section says what the figures mean on several machines.  "cores" is the
CPU time a worker used per second of wall time.  Always exit code 0 (no target).

  python benchmarks/distributed_throughput.py
  python benchmarks/distributed_throughput.py --model_name=mobilenet_v1_025 --image_size=32
  python benchmarks/distributed_throughput.py --engines=keras --block=5 --blocks=3
"""

import io
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported
os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the workers share this machine's CPU

from absl import app, flags  # noqa: E402

from text_table import print_columns  # noqa: E402

flags.DEFINE_list("engines", ["slim", "keras"], "Training engines to measure.")
flags.DEFINE_string("model_name", "resnet_v1_50", "Registered architecture to train.")
flags.DEFINE_integer("image_size", 64, "Square input size in pixels.", lower_bound=16)
flags.DEFINE_integer("batch_size", 8, "Images per step and worker.", lower_bound=1)
flags.DEFINE_integer("block", 3, "Steps between progress lines; the first block is "
                     "warm-up.", lower_bound=1)
flags.DEFINE_integer("blocks", 2, "Timed blocks per run.", lower_bound=1)
flags.DEFINE_integer("threads", 1, "Intra-op and inter-op threads of each worker process.",
                     lower_bound=1)
flags.DEFINE_integer("allreduce_reps", 5, "Timed all-reduce calls.", lower_bound=1)
flags.DEFINE_integer("timeout", 1800, "Seconds a run of workers may take before they are "
                     "stopped (only this benchmark's own worker processes).", lower_bound=1)
flags.DEFINE_string("train_child", None, "Internal: run as one training worker with the "
                    "settings in this JSON.")
flags.DEFINE_string("allreduce_child", None, "Internal: run as one all-reduce worker with "
                    "the settings in this JSON.")
flags.DEFINE_string("report_json", None, "Also write the results to this JSON file.")
FLAGS = flags.FLAGS

NUM_CLASSES = 10
CHILD_PREFIX = "distributed_throughput: "  # a worker's lines meant for the parent


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _child_start(threads):
    """First thing in a worker: its thread counts (before any TensorFlow op)."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def _report(**values):
    print(CHILD_PREFIX + json.dumps(values), flush=True)


def run_train_child(settings):
    """One worker: slimtune-train with ``settings``; reports the wall and CPU clock at
    each progress line."""
    _child_start(settings.pop("threads"))
    import slimtune  # noqa: F401  (first, as in the tools: TensorFlow's oneDNN kernels)
    from slimtune import train

    marks = []

    def on_line(line):
        if line.startswith("step "):  # Meter.line: the progress line of a block
            marks.append((int(line.split()[1].split("/")[0]), time.perf_counter(),
                          time.process_time()))
        print(line, flush=True)

    train.train(train.TrainConfig(**settings), log=on_line)
    _report(marks=marks, peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def run_allreduce_child(settings):
    """One worker of the all-reduce timing (see the module docstring)."""
    _child_start(settings["threads"])
    from slimtune import distribute

    strategy = distribute.keras_strategy(distribute.Placement(distribute.cluster_from()))
    import numpy as np
    import tensorflow as tf

    from slimtune import registry
    from slimtune.keras_engine import model as model_lib

    spec = registry.get(settings["model_name"])
    model = model_lib.training_model(spec, NUM_CLASSES, spec.batch_norm,
                                     bool(spec.aux_logits), settings["image_size"], 0.0,
                                     False)
    shapes = [tuple(w.shape) for w in model.trainable_weights]
    gradients = strategy.experimental_distribute_values_from_function(
        lambda context: [tf.ones(shape) for shape in shapes])

    def replica_fn(tensors, reduce):
        # tf.identity: a value from outside the replica has no device to reduce to.
        local = [tf.identity(t) for t in tensors]
        if reduce:
            local = tf.distribute.get_replica_context().all_reduce(
                tf.distribute.ReduceOp.SUM, local)
        return tf.add_n([tf.reshape(t, [-1])[0] for t in local])

    def timed(reduce):
        fn = tf.function(lambda tensors: strategy.run(replica_fn, args=(tensors, reduce)))
        seconds = []
        for rep in range(2 + settings["reps"]):
            start = time.perf_counter()
            out = strategy.experimental_local_results(fn(gradients))[0].numpy()
            if rep >= 2:
                seconds.append(time.perf_counter() - start)
        # Every tensor's first element is 1 on each worker: summed over 2, or local.
        assert out == (2 if reduce else 1) * len(shapes), out
        return seconds

    local, seconds = timed(False), timed(True)
    _report(seconds=seconds, local_seconds=local, tensors=len(shapes),
            bytes=int(sum(np.prod(shape) for shape in shapes)) * 4)


class _Tee(io.StringIO):
    """The workers' prefixed lines: kept, and shown as they come."""

    def write(self, text):
        sys.stdout.write(text)
        return super().write(text)

    def flush(self):
        sys.stdout.flush()


def run_workers(count, child_flag, settings):
    """Start ``count`` workers of this script (slimtune.launch: TF_CONFIG on free
    127.0.0.1 ports), each a child with ``--<child_flag>=settings``; stop them after
    --timeout.  Returns each worker's report."""
    from slimtune import launch

    processes = launch.start_workers(
        count, [f"--{child_flag}={json.dumps(settings)}"], program=os.path.abspath(__file__))
    timer = threading.Timer(FLAGS.timeout, launch.stop, args=(processes, 1.0))
    timer.start()
    out = _Tee()
    try:
        code = launch.supervise(processes, out)
    finally:
        timer.cancel()
    text = out.getvalue()
    if code:
        raise RuntimeError(f"{count} worker(s) of {child_flag} failed (exit code {code}, "
                           f"stopped after --timeout={FLAGS.timeout} s if negative):\n"
                           + text[-3000:])
    reports = {}
    for line in text.splitlines():
        head, _, rest = line.partition("] ")
        if rest.startswith(CHILD_PREFIX):
            reports[int(head.split()[-1])] = json.loads(rest[len(CHILD_PREFIX):])
    return [reports[i] for i in range(count)]


def _per_worker(report, batch):
    """images/s, s/step and cores of one worker over its timed blocks."""
    (first, wall0, cpu0), (last, wall1, cpu1) = report["marks"][0], report["marks"][-1]
    wall = wall1 - wall0
    return {"images_per_sec": batch * (last - first) / wall, "step_seconds": wall / (last - first),
            "cores_used": (cpu1 - cpu0) / wall, "peak_rss_mib": report["peak_rss_mib"]}


def measure_engine(engine, tmp):
    batch, block = FLAGS.batch_size, FLAGS.block
    out = {}
    for count in (1, 2):
        settings = dict(
            engine=engine, train_dir=os.path.join(tmp, f"{engine}_{count}"),
            dataset_name="digits", model_name=FLAGS.model_name,
            train_image_size=FLAGS.image_size, batch_size=batch,
            max_number_of_steps=block * (FLAGS.blocks + 1), optimizer="momentum",
            learning_rate=0.01, learning_rate_decay_type="fixed", weight_decay=0.00004,
            seed=0, log_every_n_steps=block, save_interval_secs=10**9,
            save_summaries_secs=10**9, threads=FLAGS.threads)
        log(f"{engine} engine, {count} worker(s): {FLAGS.model_name} {FLAGS.image_size}px, "
            f"batch {batch} per worker, {block} warm-up + {block * FLAGS.blocks} timed steps")
        started = time.perf_counter()
        workers = [_per_worker(r, batch) for r in run_workers(count, "train_child", settings)]
        out[count] = {"workers": workers,
                      "images_per_sec": statistics.mean(w["images_per_sec"] for w in workers),
                      "step_seconds": statistics.mean(w["step_seconds"] for w in workers)}
        log(f"  {out[count]['images_per_sec']:.2f} images/s per worker, "
            f"{out[count]['step_seconds']:.3f} s/step ({time.perf_counter() - started:.0f} s "
            "in all)")
    return {"one_worker": out[1], "two_workers": out[2],
            "ratio": out[2]["images_per_sec"] / out[1]["images_per_sec"]}


def measure_all_reduce():
    log(f"all-reduce of {FLAGS.model_name}'s gradients between 2 workers: 2 warm-up + "
        f"{FLAGS.allreduce_reps} timed calls")
    reports = run_workers(2, "allreduce_child", {
        "model_name": FLAGS.model_name, "image_size": FLAGS.image_size,
        "threads": FLAGS.threads, "reps": FLAGS.allreduce_reps})
    # The collective's share: the call with it less the same call without (its copies).
    seconds = max(statistics.median(r["seconds"]) - statistics.median(r["local_seconds"])
                  for r in reports)
    size = reports[0]["bytes"]
    # A ring all-reduce over N workers sends 2 (N-1)/N times the bytes from each: 1x at N=2.
    result = {"seconds": seconds, "tensors": reports[0]["tensors"], "bytes": size,
              "sent_mb_per_sec": size / seconds / 1e6,
              "calls": [{"with": r["seconds"], "without": r["local_seconds"]}
                        for r in reports]}
    log(f"  {seconds:.3f} s for {reports[0]['tensors']} tensors, {size / 1e6:.1f} MB")
    return result


def print_table(engines, reduce):
    header = ("engine", "1 worker img/s", "cores", "2 workers img/s each", "2w/1w", "cores each",
              "2w s/step", "all-reduce s", "all-reduce/step", "gradients", "loopback")
    lines = [header]
    for engine, r in engines.items():
        two = r["two_workers"]
        lines.append((
            engine, f"{r['one_worker']['images_per_sec']:.2f}",
            f"{r['one_worker']['workers'][0]['cores_used']:.1f}",
            f"{two['images_per_sec']:.2f}", f"{r['ratio']:.2f}x",
            "/".join(f"{w['cores_used']:.1f}" for w in two["workers"]),
            f"{two['step_seconds']:.3f}", f"{reduce['seconds']:.3f}",
            f"{reduce['seconds'] / two['step_seconds']:.2f}", f"{reduce['bytes'] / 1e6:.1f} MB",
            f"{reduce['sent_mb_per_sec']:.0f} MB/s"))
    print_columns(lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.train_child:
        run_train_child(json.loads(FLAGS.train_child))
        return 0
    if FLAGS.allreduce_child:
        run_allreduce_child(json.loads(FLAGS.allreduce_child))
        return 0
    unknown = set(FLAGS.engines) - {"slim", "keras"}
    if unknown or not FLAGS.engines:
        raise app.UsageError(f"--engines takes slim and/or keras, got {FLAGS.engines}")
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    tmp = tempfile.mkdtemp(prefix="distributed_throughput_")
    try:
        reduce = measure_all_reduce()
        engines = {engine: measure_engine(engine, tmp) for engine in FLAGS.engines}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    total, load = time.perf_counter() - started, (load_before, os.getloadavg()[0])
    print()
    print(f"1 worker vs 2 workers on this machine: {FLAGS.model_name} {FLAGS.image_size}px, "
          f"batch {FLAGS.batch_size} per worker, {FLAGS.threads} intra/inter-op thread(s) "
          f"per worker, {FLAGS.block * FLAGS.blocks} timed steps; all-reduce: median of "
          f"{FLAGS.allreduce_reps}")
    print_table(engines, reduce)
    print(f"total time {total:.0f} s; load average (1 min) {load[0]:.1f} at the start, "
          f"{load[1]:.1f} at the end, on {os.cpu_count()} cores")
    if FLAGS.report_json:
        with open(FLAGS.report_json, "w") as f:
            json.dump({"model_name": FLAGS.model_name, "image_size": FLAGS.image_size,
                       "batch_size": FLAGS.batch_size, "threads": FLAGS.threads,
                       "cpu_count": os.cpu_count(), "load_average": load,
                       "total_seconds": total, "engines": engines, "all_reduce": reduce},
                      f, indent=2)
        log(f"wrote {FLAGS.report_json}")
    return 0


if __name__ == "__main__":
    app.run(main)
