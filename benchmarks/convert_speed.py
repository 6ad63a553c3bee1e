"""How much does converting a big slim checkpoint cost beyond what cannot be avoided?

Measures, in one run, each phase in a fresh Python process (so peak memory is its own):

  baseline   import TensorFlow, Keras and tf-slim; peak RSS = the baseline for memory
  floor      import + read every checkpoint tensor + build the Keras model (random
             weights): the work no converter can skip
  port       import + read + build + port every tensor with its shape checks
             (ModelSpec.keras_from_tensors): the conversion proper
  reference  import + build the slim graph, restore the checkpoint and run it once on
             the parity check's images (slimtune.slim_run.slim_outputs): the
             price of checking parity at all
  command    the whole slimtune-convert run: port, parity check against the slim graph,
             model.keras, SavedModel and metadata; its own log gives the time of each
             step, printed below the table

Targets: port wall time <= 1.5 x floor and port peak RSS above the baseline <= 2 x the
checkpoint's size on disk (issue 3); the whole command <= 2 x (floor + the reference's
work after its imports) and its peak RSS above the baseline <= 3 x the checkpoint
(issue 12).  Prints a table; exit 1 if a target is missed.

  python benchmarks/convert_speed.py                       # resnet_v1_152, 1001 classes
  python benchmarks/convert_speed.py --model_name=resnet_v1_50 --report_json=/tmp/c.json
"""

import json
import os
import resource
import subprocess
import sys
import tempfile
import time

START = time.perf_counter()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from absl import app, flags  # noqa: E402

flags.DEFINE_string("model_name", "resnet_v1_152", "Architecture to convert.")
flags.DEFINE_integer("num_classes", 1001, "Classes of the checkpoint's logits.")
flags.DEFINE_integer("image_size", 224, "Input size of the parity check (reference, command).")
flags.DEFINE_float("max_time_ratio", 1.5, "Target: port time <= this x floor time.")
flags.DEFINE_float("max_memory_ratio", 2.0, "Target: port peak RSS above baseline <= this x "
                   "checkpoint size.")
flags.DEFINE_float("max_command_time_ratio", 2.0, "Target: command time <= this x (floor "
                   "time + reference work).")
flags.DEFINE_float("max_command_memory_ratio", 3.0, "Target: command peak RSS above baseline "
                   "<= this x checkpoint size.")
flags.DEFINE_string("report_json", None, "Also write the results to this JSON file.")
flags.DEFINE_string("phase", None, "Internal: run one phase and print its JSON.")
flags.DEFINE_string("prefix", None, "Internal: checkpoint prefix for --phase.")
FLAGS = flags.FLAGS

PHASES = ("baseline", "floor", "port", "reference", "command")


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def run_phase(phase, prefix):
    """Body of one child process; returns its measurements."""
    import slimtune  # noqa: F401  (first, as in the tools: TensorFlow's oneDNN kernels)
    import keras  # noqa: F401
    import tensorflow as tf  # noqa: F401

    from slimtune import compat, probe, registry, slim_run
    from slimtune import convert

    compat.apply()
    spec = registry.get(FLAGS.model_name)
    result = {"imported_at": time.perf_counter() - START}
    if phase in ("floor", "port"):
        tensors = convert.read_source(prefix).tensors
        if phase == "floor":
            spec.build_keras(FLAGS.num_classes, spec.batch_norm)
        else:
            spec.keras_from_tensors(tensors, FLAGS.num_classes, spec.batch_norm)
    elif phase == "reference":
        count = convert.ConvertConfig("", "").random_images  # the command's default
        slim_run.slim_outputs(spec, prefix, probe.random_images(count, FLAGS.image_size),
                              FLAGS.num_classes, spec.batch_norm)
    elif phase == "command":
        steps = []

        def note(message):
            with open("/proc/self/status") as status:  # Linux; the benchmark's platform
                rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
            steps.append((round(time.perf_counter() - START, 1), message, rss // 1024,
                          resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024))

        with tempfile.TemporaryDirectory() as out:
            meta = convert.convert(convert.ConvertConfig(
                checkpoint_path=prefix, output_dir=os.path.join(out, "keras"),
                image_size=FLAGS.image_size), log=note)
        result["parity_max_rel"] = meta["parity"]["random"]["max_rel"]
        result["log"] = steps
    result["seconds"] = time.perf_counter() - START
    result["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return result


def child(phase, prefix):
    command = [sys.executable, os.path.abspath(__file__), f"--phase={phase}",
               f"--prefix={prefix}", f"--model_name={FLAGS.model_name}",
               f"--num_classes={FLAGS.num_classes}", f"--image_size={FLAGS.image_size}"]
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"phase {phase} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def verdict(name, ratio, target):
    ok = ratio <= target
    print(f"{name}: {ratio:.2f}x (target <= {target:g}x) {'PASS' if ok else 'FAIL'}")
    return ok


def main(argv):
    if FLAGS.phase:
        print(json.dumps(run_phase(FLAGS.phase, FLAGS.prefix)))
        return 0
    from slimtune.testing import make_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        log(f"writing a {FLAGS.model_name} checkpoint ({FLAGS.num_classes} classes, random "
            "weights and BN statistics)")
        prefix = make_checkpoint(os.path.join(tmp, "model.ckpt"), FLAGS.model_name,
                                 FLAGS.num_classes, image_size=64)
        size = sum(os.path.getsize(os.path.join(tmp, f)) for f in os.listdir(tmp)
                   if f.startswith("model.ckpt"))
        log(f"checkpoint: {size / 2**20:.0f} MiB")
        rows = {}
        for phase in PHASES:
            log(f"phase {phase} ...")
            rows[phase] = child(phase, prefix)
            log(f"  {rows[phase]['seconds']:.1f} s, peak RSS "
                f"{rows[phase]['peak_rss_bytes'] / 2**20:.0f} MiB")
    base = rows["baseline"]["peak_rss_bytes"]
    reference_work = rows["reference"]["seconds"] - rows["reference"]["imported_at"]
    ratios = {
        "time_ratio": rows["port"]["seconds"] / rows["floor"]["seconds"],
        "memory_ratio": (rows["port"]["peak_rss_bytes"] - base) / size,
        "command_time_ratio": rows["command"]["seconds"] / (rows["floor"]["seconds"]
                                                            + reference_work),
        "command_memory_ratio": (rows["command"]["peak_rss_bytes"] - base) / size,
    }
    print()
    print(f"{FLAGS.model_name} ({FLAGS.num_classes} classes), checkpoint {size / 2**20:.0f} MiB, "
          f"parity at {FLAGS.image_size} px, {os.cpu_count()} CPUs")
    print(f"{'phase':<10} {'wall s':>7} {'after imports s':>16} {'peak RSS MiB':>13} "
          f"{'above baseline MiB':>19}")
    for phase, r in rows.items():
        print(f"{phase:<10} {r['seconds']:>7.1f} {r['seconds'] - r['imported_at']:>16.1f} "
              f"{r['peak_rss_bytes'] / 2**20:>13.0f} "
              f"{(r['peak_rss_bytes'] - base) / 2**20:>19.0f}")
    print("command log (seconds since the process started, RSS MiB, peak RSS so far MiB, "
          "message):")
    for at, message, rss, peak in rows["command"]["log"]:
        print(f"  {at:>6.1f} {rss:>6} {peak:>6}  {message[:100]}")
    ok = [verdict("port / floor time", ratios["time_ratio"], FLAGS.max_time_ratio),
          verdict("port memory above baseline / checkpoint size", ratios["memory_ratio"],
                  FLAGS.max_memory_ratio),
          verdict(f"command / (floor + reference {reference_work:.1f} s) time",
                  ratios["command_time_ratio"], FLAGS.max_command_time_ratio),
          verdict("command memory above baseline / checkpoint size",
                  ratios["command_memory_ratio"], FLAGS.max_command_memory_ratio)]
    print(f"command parity max rel: {rows['command']['parity_max_rel']:.2g}")
    if FLAGS.report_json:
        with open(FLAGS.report_json, "w") as f:
            json.dump({"model_name": FLAGS.model_name, "checkpoint_bytes": size, "phases": rows,
                       "reference_work_seconds": reference_work, **ratios}, f, indent=2)
    return 0 if all(ok) else 1


if __name__ == "__main__":
    app.run(main)
