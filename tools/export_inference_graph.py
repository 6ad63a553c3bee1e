"""Export a model for serving, or research/slim's architecture-only GraphDef.

With --checkpoint_path: a frozen GraphDef (.pb) and/or a SavedModel.  The network is
built with is_training=False (BatchNorm on its moving statistics, dropout off) and its
variables are folded into constants.  Input node 'input' (float32 [batch, size, size,
3], preprocessed as in training), output nodes 'logits' and 'probabilities'; these names
are printed and stored in <output_file>.json.  The SavedModel has a 'serving_default'
signature (images -> logits, probabilities) that TF2's tf.saved_model.load opens.
Settings the run's slimtune.json knows (architecture, classes, image size, BN
parameters) are taken from it; flags override.

Without --checkpoint_path: what research/slim's export_inference_graph.py writes, with
its flags and defaults: the architecture only (no weights), placeholder 'input', the
class count of --dataset_name (imagenet: 1001) minus --labels_offset, upstream's node
names.  TF's freeze_graph then freezes it at <Scope>/Predictions/Reshape_1 (the command
is printed), and slimtune-verify compares the result with the checkpoint.

  slimtune-export --checkpoint_path=runs/quickstart/finetune --output_file=/tmp/digits.pb \\
      --output_dir=/tmp/digits_savedmodel
  slimtune-export --model_name=inception_v3 --output_file=/tmp/inception_v3_inf_graph.pb
  python -m tensorflow.python.tools.freeze_graph \\
      --input_graph=/tmp/inception_v3_inf_graph.pb --input_binary=true \\
      --input_checkpoint=inception_v3.ckpt --output_graph=/tmp/inception_v3_frozen.pb \\
      --output_node_names=InceptionV3/Predictions/Reshape_1
"""

from absl import flags

from slimtune import cli

F = flags
F.DEFINE_string("checkpoint_path", None, "A checkpoint prefix or a directory (its latest); "
                "without it, the architecture-only GraphDef research/slim's "
                "export_inference_graph.py writes.")
F.DEFINE_string("output_file", None, "GraphDef to write (.pb): frozen, plus <file>.json, "
                "with --checkpoint_path; else the architecture only.")
F.DEFINE_string("output_dir", None, "SavedModel directory to create (needs "
                "--checkpoint_path).")
F.DEFINE_string("model_name", None, "Architecture (default: from slimtune.json; without "
                "--checkpoint_path, inception_v3 as upstream).")
F.DEFINE_integer("image_size", None, "Input height and width (default: as trained, else the "
                 "architecture's).")
F.DEFINE_integer("batch_size", None, "Fixed batch size (default: dynamic).")
F.DEFINE_integer("num_classes", None, "Classes (default: --dataset_name's, else as trained, "
                 "else the checkpoint's logits).")
F.DEFINE_integer("labels_offset", None, "Subtracted from the dataset's class count (1 for a "
                 "1000-class net and the 1001 ImageNet labels); recorded in the sidecar JSON "
                 "(default: as trained, else 0).")
F.DEFINE_boolean("is_training", False, "Architecture-only graph in training mode (BatchNorm "
                 "on batch statistics, dropout on), as upstream's flag.")
F.DEFINE_string("dataset_name", None, "Dataset whose class count the net gets (default: "
                "imagenet, 1001, without --checkpoint_path).")
F.DEFINE_string("dataset_dir", None, "Its directory: a labels.txt there gives the count.")
F.DEFINE_boolean("write_text_graphdef", False, "Write the GraphDef as text.")
F.DEFINE_boolean("quantize", False, "Refused: TF 2 has no quantize rewrite for TF1 graphs.")
F.DEFINE_boolean("use_grayscale", False, "A 1-channel 'input' (a network trained on "
                 "grayscale images). With --checkpoint_path, default: as trained "
                 "(slimtune.json, else the checkpoint's first convolution).")


def main(argv):
    from slimtune import export

    export.export(cli.config_from_flags(export.ExportConfig))


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
