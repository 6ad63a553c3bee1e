"""Evaluate a slim checkpoint: top-1, top-5, mean loss, with is_training=False.

BatchNorm uses its moving statistics and dropout is off, as when serving.  With a
checkpoint written by slimtune-train, the architecture, image size, preprocessing
and BatchNorm parameters come from its slimtune.json; flags override them.

Example:

  slimtune-eval --checkpoint_path=/tmp/digits_run --dataset_name=digits \\
      --dataset_split_name=validation --eval_dir=/tmp/digits_run/eval

The split defaults to research/slim's 'test'; a dataset without it is refused with the
splits it has.

Add --batch_statistics to normalise every batch with its own statistics instead:
if that scores much higher, the moving statistics do not describe your data (the
update ops never ran, or the BatchNorm decay was too slow for the run's length).
"""

from absl import flags

from slimtune import cli

F = flags
F.DEFINE_string("checkpoint_path", None, "Checkpoint prefix, or a directory (its latest).")
F.DEFINE_string("dataset_name", "imagenet", "'digits' or a TFRecord dataset name (see "
                "slimtune-train --help).")
F.DEFINE_string("dataset_split_name", "test", "Split to evaluate (research/slim's default "
                "'test'; the built-in digits and ImageNet have 'validation').")
F.DEFINE_string("dataset_dir", None, "Folder of TFRecord shards and labels.txt.")
F.DEFINE_string("dataset_file_pattern", None, "Shard file pattern, %s = split.")
F.DEFINE_string("model_name", None, "Architecture (default: from the checkpoint's slimtune.json).")
F.DEFINE_string("preprocessing_name", None, "inception, vgg, densenet or lenet (default: as trained).")
F.DEFINE_integer("eval_image_size", None, "Input size (default: as trained).")
F.DEFINE_integer("batch_size", 100, "Images per batch.")
F.DEFINE_integer("labels_offset", None, "Subtract this from every label (default: as trained).")
F.DEFINE_integer("max_num_batches", None, "Stop after this many batches (default: whole split).")
F.DEFINE_float("moving_average_decay", None, "Evaluate the weights' moving averages kept by "
               "training with the same flag.")
F.DEFINE_boolean("batch_statistics", False, "Diagnosis: BatchNorm on each batch's statistics "
                 "(what is_training=True does), dropout still off.")
F.DEFINE_string("eval_dir", None, "Also write the metrics here as TensorBoard events, under "
                "research/slim's names eval/Accuracy and eval/Recall_5 and slimtune's "
                "eval/Loss, at the checkpoint's global step (default: none written; "
                "research/slim's was /tmp/tfmodel/).")
F.DEFINE_integer("num_preprocessing_threads", None, "Images decoded and preprocessed at once "
                 "(the tf.data map's parallel calls). Default: tf.data's AUTOTUNE.")
cli.define_refused_flag("master", "", "Accepted at its default '' for research/slim flag "
                        "files; slimtune runs its own session.")
F.DEFINE_boolean("use_grayscale", False, "Whether to convert input images to grayscale "
                 "(default: as trained: slimtune.json, else the checkpoint's first "
                 "convolution taking 1 channel).")
cli.define_refused_flag("quantize", False, "Refused: TF 2 has no quantize rewrite for TF1 "
                        "graphs.")
flags.mark_flag_as_required("checkpoint_path")


def main(argv):
    from slimtune import evaluate

    cli.refuse_set_flags()
    evaluate.evaluate(cli.config_from_flags(evaluate.EvalConfig))


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
