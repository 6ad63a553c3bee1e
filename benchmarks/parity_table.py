"""The parity of every registered architecture, as README's architecture table gives it.

For each network: a random checkpoint at its default input size, with the BatchNorm
statistics, gammas, betas and biases of trained ones (slimtune.testing), converted to
Keras 3 (ModelSpec.keras_from_tensors); the slim inference graph and the Keras model
then run on two seeded random images and four scikit-image photos, and the logits are
compared unsorted: the largest and the median |difference| relative to max(1, max
|logit|).  The published top-1 of each architecture's manifest entries is printed
beside it.  Rows are printed as a markdown table (paste into README); exit 1 if any
network misses the bound (max <= 1e-5, median <= 1e-6).

  python benchmarks/parity_table.py                            # every architecture
  python benchmarks/parity_table.py --models=nasnet_mobile,resnet_v1_50 --image_size=64

Each network runs in its own process (the graphs of 50 networks do not share a heap
well), one after another: about 25 minutes on 2 cores, nasnet_large and pnasnet_large
the longest.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from absl import app, flags  # noqa: E402

flags.DEFINE_list("models", [], "Architectures to measure (default: every registered one).")
flags.DEFINE_integer("image_size", 0, "Input size (default: each network's default size).")
flags.DEFINE_integer("num_classes", 1001, "Classes of the random checkpoints' logits.")
flags.DEFINE_float("max_rel", 1e-5, "Bound on the largest relative difference.")
flags.DEFINE_float("median_rel", 1e-6, "Bound on the median relative difference.")
flags.DEFINE_string("one", None, "Internal: measure this one network and print its JSON.")
FLAGS = flags.FLAGS


def measure(model_name, image_size, num_classes):
    """``{size, max_rel, median_rel, seconds}`` of one network's conversion."""
    import numpy as np

    from slimtune import compare, probe, registry, testing

    start = time.perf_counter()
    spec = registry.get(model_name)
    size = image_size or spec.default_image_size
    images = np.concatenate([probe.random_images(2, size, 0), testing.photos(size)])
    with tempfile.TemporaryDirectory() as tmp:
        prefix, slim_logits, _ = testing.make_checkpoint(
            os.path.join(tmp, "model.ckpt"), model_name, num_classes, image_size=size,
            run_on=images)
        from slimtune import checkpoint

        model = spec.keras_from_tensors(checkpoint.read_tensors(prefix), num_classes,
                                        image_size=size)
        keras_logits = np.asarray(model(images, training=False))
    diff = compare.difference(slim_logits, keras_logits)
    return {"size": size, "max_rel": diff.max_rel, "median_rel": diff.median_rel,
            "seconds": time.perf_counter() - start}


def published_top1(model_name):
    """``"75.2 (v3-large_224_1.0_float)"`` for each manifest entry of ``model_name``."""
    from slimtune import published

    return ", ".join(f"{e.top1:g} ({e.name})" for e in published.manifest().values()
                     if e.architecture == model_name) or "none published"


def main(argv):
    del argv
    if FLAGS.one:
        print(json.dumps(measure(FLAGS.one, FLAGS.image_size, FLAGS.num_classes)))
        return 0
    from slimtune import registry

    names = FLAGS.models or registry.names()
    rows, failed = [], []
    for n, name in enumerate(names, 1):
        command = [sys.executable, os.path.abspath(__file__), f"--one={name}",
                   f"--image_size={FLAGS.image_size}", f"--num_classes={FLAGS.num_classes}"]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            print(f"[{n}/{len(names)}] {name}: failed\n{done.stderr[-2000:]}", flush=True)
            failed.append(name)
            continue
        result = json.loads(done.stdout.strip().splitlines()[-1])
        ok = result["max_rel"] <= FLAGS.max_rel and result["median_rel"] <= FLAGS.median_rel
        if not ok:
            failed.append(name)
        print(f"[{n}/{len(names)}] {name} {result['size']}px: max rel {result['max_rel']:.2g}, "
              f"median rel {result['median_rel']:.2g} ({result['seconds']:.0f} s)"
              + ("" if ok else "  OVER THE BOUND"), flush=True)
        rows.append((name, result, published_top1(name)))
    print("\n| architecture | size | max rel | median rel | published top-1 (checkpoint) |")
    print("| --- | --- | --- | --- | --- |")
    for name, result, top1 in rows:
        print(f"| `{name}` | {result['size']} | {result['max_rel']:.1e} | "
              f"{result['median_rel']:.1e} | {top1} |")
    if failed:
        print(f"\nover the bound or failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
