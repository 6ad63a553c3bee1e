"""Why slimtune turns on TensorFlow's oneDNN CPU kernels by default: the train step with and without.

TensorFlow 2.21 enables oneDNN by itself only on CPUs with AVX-512 VNNI/BF16/AMX; on
others (this machine: AVX2) it uses Eigen kernels whose convolution input gradients
are very slow on small feature maps, the usual case when fine-tuning at small sizes.
This script runs ``benchmarks/train_throughput.py`` twice in fresh processes, with
``TF_ENABLE_ONEDNN_OPTS=0`` and ``=1`` (the setting is read when TensorFlow is
imported), and prints the train-step images/s of each and their ratio per size.
Exit code 1 if oneDNN is not at least --min_speedup times faster at every size.

About 3 minutes on 2 CPU cores with the defaults.

  python benchmarks/onednn_speedup.py
  python benchmarks/onednn_speedup.py --image_sizes=32,64,224 --batch_size=16
"""

import json
import os
import subprocess
import sys
import tempfile
import time

from absl import app, flags

flags.DEFINE_list("image_sizes", ["32", "64"], "Square input sizes in pixels.")
flags.DEFINE_integer("batch_size", 16, "Images per train step.", lower_bound=1)
flags.DEFINE_integer("steps", 10, "Timed train steps per size and setting.", lower_bound=1)
flags.DEFINE_float("min_speedup", 1.5, "Target: oneDNN step images/s >= this x Eigen's.")
FLAGS = flags.FLAGS

HERE = os.path.dirname(os.path.abspath(__file__))


def measure(onednn, tmp):
    report = os.path.join(tmp, f"onednn{onednn}.json")
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": str(onednn), "TF_CPP_MIN_LOG_LEVEL": "2"}
    subprocess.run([sys.executable, os.path.join(HERE, "train_throughput.py"),
                    f"--image_sizes={','.join(FLAGS.image_sizes)}",
                    f"--batch_size={FLAGS.batch_size}", f"--steps={FLAGS.steps}",
                    "--pipeline_batches=20", f"--report_json={report}"],
                   env=env, check=False, stdout=sys.stderr)
    with open(report) as f:
        return {row["image_size"]: row for row in json.load(f)["rows"]}


def main(argv):
    del argv
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        eigen = measure(0, tmp)
        onednn = measure(1, tmp)
    print(f"\nresnet_v1_50 train step, batch {FLAGS.batch_size}, {os.cpu_count()} cores: "
          "Eigen (TF_ENABLE_ONEDNN_OPTS=0) vs oneDNN (=1), each in a fresh process")
    print(f"{'size':>6} {'Eigen img/s':>12} {'oneDNN img/s':>13} {'speedup':>8}  "
          f"target >={FLAGS.min_speedup:g}x")
    ok = True
    for size in sorted(eigen):
        a, b = eigen[size]["step_images_per_sec"], onednn[size]["step_images_per_sec"]
        passed = b >= FLAGS.min_speedup * a
        ok &= passed
        print(f"{size:>4}px {a:>12.1f} {b:>13.1f} {b / a:>7.2f}x  {'PASS' if passed else 'FAIL'}")
    print(f"total time {time.perf_counter() - started:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    app.run(main)
