"""Verify that two forms of a model compute the same function, class by class.

--reference and --candidate are each any of: a slim checkpoint (prefix or train dir;
needs --model_name unless it has slimtune.json), a frozen .pb, a SavedModel directory
(TF1 or TF2) or a .keras file.  Both run on the same preprocessed inputs: --images
(files), a dataset split, or --random N seeded images.  Prints max abs, max relative
and mean abs difference, cosine similarity, top-1/top-5 agreement, and names a class
misalignment (1001 vs 1000 classes, an off-by-one) in words.  Each form is also run
twice: different answers to the same images (dropout left active) fail the check and
the random ops are named; BatchNorm ops in training mode in a graph, and moving
statistics at their initial 0/1 values, are named too.

--layerwise (a slim checkpoint against a converted .keras) compares every block's
output in network order and names the first one beyond --rtol.

Exit code: 0 within --atol or --rtol, 1 beyond, 2 on unusable input.

  slimtune-verify --reference=runs/quickstart/finetune --candidate=/tmp/digits_keras/model.keras \\
      --dataset_name=digits --max_images=200
  slimtune-verify --reference=model.ckpt --model_name=inception_v3 \\
      --candidate=frozen.pb --random=8 --image_size=299
"""

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
F.DEFINE_string("preprocessing_name", None, "inception, vgg, densenet or lenet (default: as trained).")
F.DEFINE_float("atol", 1e-4, "Pass when max abs difference <= atol ...")
F.DEFINE_float("rtol", 1e-5, "... or max abs / max(1, max |reference|) <= rtol.")
F.DEFINE_boolean("layerwise", False, "Checkpoint vs .keras: compare every end point.")
F.DEFINE_string("input_node", None, "Input node of a frozen .pb (default: its JSON, 'input').")
F.DEFINE_string("output_node", None, "Output node of a frozen .pb (default: its JSON's, else "
                "'logits', else the graph's only classifier output, e.g. research/slim's "
                "<Scope>/Predictions/Reshape_1). Probabilities are walked back to the "
                "logits behind their Softmax; [B,1,1,C] is squeezed.")
F.DEFINE_string("signature", "serving_default", "SavedModel signature to call.")
F.DEFINE_string("report_json", None, "Also write the report to this JSON file.")
flags.mark_flags_as_required(["reference", "candidate"])


def main(argv):
    from slimtune import verify

    result = verify.verify(cli.config_from_flags(verify.VerifyConfig))
    sys.exit(0 if result["passed"] else 1)


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
