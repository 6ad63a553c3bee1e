"""Export a slim checkpoint for serving: a frozen GraphDef (.pb) and/or a SavedModel.

The network is built with is_training=False (BatchNorm on its moving statistics,
dropout off) and its variables are folded into constants.  Input node 'input'
(float32 [batch, size, size, 3], preprocessed as in training), output nodes 'logits'
and 'probabilities'; these names are printed and stored in <output_file>.json.  The
SavedModel has a 'serving_default' signature (images -> logits, probabilities) that
TF2's tf.saved_model.load opens.

Settings the run's slimtune.json knows (architecture, classes, image size, BN
parameters) are taken from it; flags override.

  slimtune-export --checkpoint_path=runs/quickstart/finetune --output_file=/tmp/digits.pb \\
      --output_dir=/tmp/digits_savedmodel
  slimtune-export --model_name=inception_v3 --checkpoint_path=inception_v3.ckpt \\
      --output_file=/tmp/inception_v3_frozen.pb --batch_size=1
"""

from absl import flags

from slimtune import cli

F = flags
F.DEFINE_string("checkpoint_path", None, "A checkpoint prefix or a directory (its latest).")
F.DEFINE_string("output_file", None, "Frozen GraphDef to write (.pb), plus <file>.json.")
F.DEFINE_string("output_dir", None, "SavedModel directory to create.")
F.DEFINE_string("model_name", None, "Architecture (default: from slimtune.json).")
F.DEFINE_integer("image_size", None, "Input height and width (default: as trained, else the "
                 "architecture's).")
F.DEFINE_integer("batch_size", None, "Fixed batch size (default: dynamic).")
F.DEFINE_integer("num_classes", None, "Classes (default: as trained, else the checkpoint's "
                 "logits).")
F.DEFINE_integer("labels_offset", None, "Recorded in the sidecar JSON for consumers (1 for a "
                 "1000-class net served against 1001-class labels; default: as trained, "
                 "else 0).")
flags.mark_flag_as_required("checkpoint_path")


def main(argv):
    from slimtune import export

    export.export(cli.config_from_flags(export.ExportConfig))


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
