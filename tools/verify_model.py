"""Verify that two forms of a model compute the same function, class by class.

--reference and --candidate are each any of: a slim checkpoint (prefix or train dir;
needs --model_name unless it has slimtune.json), a frozen .pb, a SavedModel directory
(TF1 or TF2) or a .keras file.  Both run on the same preprocessed inputs: --images
(files), a dataset split, or --random N seeded images.  Prints max abs, max relative
and mean abs difference, cosine similarity, top-1/top-5 agreement, and names a class
misalignment (1001 vs 1000 classes, an off-by-one) in words.

--layerwise (a slim checkpoint against a converted .keras) compares every block's
output in network order and names the first one beyond --rtol.

Exit code: 0 within --atol or --rtol, 1 beyond, 2 on unusable input.

  slimtune-verify --reference=runs/quickstart/train --candidate=/tmp/digits_keras/model.keras \\
      --dataset_name=digits --max_images=200
  slimtune-verify --reference=model.ckpt --model_name=inception_v3 \\
      --candidate=frozen.pb --random=8 --image_size=299
"""

import json
import sys

from absl import flags

from slimtune import cli

F = flags
F.DEFINE_string("reference", None, "The model taken as correct (usually the checkpoint).")
F.DEFINE_string("candidate", None, "The model under test.")
F.DEFINE_string("model_name", None, "Architecture of a slim checkpoint without slimtune.json.")
F.DEFINE_list("images", [], "Image files (comma-separated).")
F.DEFINE_string("dataset_name", None, "Dataset for inputs ('digits' or a TFRecord name).")
F.DEFINE_string("dataset_dir", None, "Folder of TFRecord shards.")
F.DEFINE_string("dataset_split_name", "validation", "Split to take inputs from.")
F.DEFINE_integer("max_images", 100, "Images taken from the dataset split.")
F.DEFINE_integer("random", 0, "Seeded random images to add.")
F.DEFINE_integer("seed", 0, "Seed of the random images.")
F.DEFINE_integer("image_size", None, "Input size (default: a fixed size of either model, "
                 "else as trained, else the architecture's).")
F.DEFINE_string("preprocessing_name", None, "inception, vgg or lenet (default: as trained).")
F.DEFINE_float("atol", 1e-4, "Pass when max abs difference <= atol ...")
F.DEFINE_float("rtol", 1e-5, "... or max abs / max(1, max |reference|) <= rtol.")
F.DEFINE_boolean("layerwise", False, "Checkpoint vs .keras: compare every end point.")
F.DEFINE_string("input_node", None, "Input node of a frozen .pb (default: its JSON, 'input').")
F.DEFINE_string("output_node", None, "Output node of a frozen .pb (default: 'logits').")
F.DEFINE_string("signature", "serving_default", "SavedModel signature to call.")
F.DEFINE_string("report_json", None, "Also write the report to this JSON file.")
flags.mark_flags_as_required(["reference", "candidate"])


def main(argv):
    import dataclasses

    from slimtune import registry, verify

    v = flags.FLAGS
    ref = verify.open_form(v.reference, v.model_name, v.input_node, v.output_node, v.signature)
    cand = verify.open_form(v.candidate, v.model_name, v.input_node, v.output_node, v.signature)
    fixed = {f.image_size for f in (ref, cand) if f.image_size}
    if len(fixed) > 1:
        raise verify.UnusableInput(f"the two models take different input sizes ({sorted(fixed)})")
    name = ref.model_name or cand.model_name
    size = v.image_size or (fixed.pop() if fixed else None)
    if v.image_size and ({ref.image_size, cand.image_size} - {None, v.image_size}):
        raise verify.UnusableInput(f"--image_size={v.image_size} but a model has a fixed input "
                                   f"size of {ref.image_size or cand.image_size}")
    if size is None:
        size = registry.get(name).default_image_size if name else 224
    preprocessing = (v.preprocessing_name or ref.preprocessing or cand.preprocessing
                     or "inception")
    dataset = ((v.dataset_name, v.dataset_dir, v.dataset_split_name, v.max_images)
               if v.dataset_name else None)
    images = verify.inputs(v.images, v.random, v.seed, size, preprocessing, dataset)
    print(f"reference {ref.kind} {ref.path}\ncandidate {cand.kind} {cand.path}\n"
          f"{len(images)} images at {size}px, {preprocessing} preprocessing")
    report = verify.compare(ref.run(images), cand.run(images), v.atol, v.rtol)
    for line in report.lines():
        print(line)
    result = {"reference": ref.path, "candidate": cand.path, **dataclasses.asdict(report)}
    if v.layerwise:
        rows, bad = verify.layerwise(v.reference, v.candidate, images, v.model_name, v.rtol)
        print(f"\n{'end point':<55} {'max rel':>10}")
        for key, layer, diff in rows:
            print(f"{key:<55} {diff.max_rel:>10.3g}{'  <- first beyond --rtol' if (key, layer, diff) == bad else ''}")
        result["layerwise"] = [{"end_point": k, "keras_layer": n, "max_rel": d.max_rel}
                               for k, n, d in rows]
        result["first_divergence"] = bad[0] if bad else None
        print(f"first divergence: {bad[0]} (Keras layer {bad[1]}): {bad[2].line()}" if bad
              else "every end point within --rtol")
    if v.report_json:
        with open(v.report_json, "w") as f:
            json.dump(result, f, indent=2)
    sys.exit(0 if report.passed else 1)


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
