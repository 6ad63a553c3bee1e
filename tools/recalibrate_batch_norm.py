"""Re-estimate a model's BatchNorm moving statistics for its final weights ("precise BN").

Served accuracy (is_training=False) trails training accuracy when the moving mean and
variance do not describe the final weights: the update ops never ran (statistics still
0/1), or the decay was too slow for the run's length (decay**steps still large), or
they are an average over steps whose weights kept changing.  This command measures
them instead: it runs --num_batches batches of --batch_size images through the network
with the weights frozen and BatchNorm in training mode (each layer normalised with its
batch's statistics, as in training; dropout stays off), and averages each layer's input
mean and variance exactly over all the batches, not as a moving average.  The variance
is the one slim's fused BatchNorm uses: unbiased (n/(n-1)), here over every value of
every batch.

It writes a new checkpoint (same name, a `checkpoint` file, the .meta when there is
one) with those statistics and every other tensor unchanged (global_step, optimizer
slots; ExponentialMovingAverage shadows of the statistics are left as they are and
slimtune.json says so), plus slimtune.json: the source's, with a record of the
recalibration (data, batches, batch size, preprocessing, date).  It never writes in
place: --output_dir must be new or empty.  A converted .keras (slimtune-convert's
output directory or its model.keras) gets a new model.keras the same way.

Preprocessing: evaluation preprocessing (central crop, no flips or colour changes) by
default, on the training split.  The moving statistics are used only at inference,
where every image is evaluation-preprocessed; training normalised each layer's input
to mean 0 / variance 1 with its batch's own statistics, and serving reproduces that
only with statistics of the inputs it actually gets.  Statistics of augmented images
describe another input distribution (random crops enlarge objects, colour jitter
changes the first layers' inputs), so serving would normalise with slightly wrong
values.  --train_preprocessing measures the augmented distribution instead (what the
moving averages estimated during training).  The training split is the default
because statistics fitted on the images you evaluate on would flatter the evaluation.

A run trained with --freeze_batch_norm (slimtune.json batch_norm.mode = frozen), and
Keras BatchNormalization layers with trainable=False, are left alone: training
normalised with their moving statistics, so serving already matches it.
--include_frozen re-estimates them anyway.

  slimtune-recalibrate --checkpoint_path=/tmp/run --output_dir=/tmp/run_precise
  slimtune-recalibrate --checkpoint_path=/tmp/seed001/model.ckpt-100 \\
      --model_name=resnet_v1_50 --image_size=32 --dataset_name=digits \\
      --output_dir=/tmp/seed001_recalibrated
  slimtune-recalibrate --checkpoint_path=/tmp/keras_digits --dataset_name=digits \\
      --output_dir=/tmp/keras_digits_precise

Then evaluate (slimtune-eval) or convert (slimtune-convert) the output directory.
"""

from absl import flags

from slimtune import cli

F = flags
F.DEFINE_string("checkpoint_path", None, "What to recalibrate: a checkpoint prefix, a train "
                "dir (its latest checkpoint), a published checkpoint's name, a .tar.gz, or a "
                ".keras file (or slimtune-convert's output directory).")
F.DEFINE_string("output_dir", None, "A new (or empty) directory for the recalibrated "
                "checkpoint or model.keras and slimtune.json; never the source's directory.")
F.DEFINE_string("dataset_name", None, "'digits' or a TFRecord dataset name (default: the "
                "data the run was trained on, from its slimtune.json).")
F.DEFINE_string("dataset_dir", None, "Folder of TFRecord shards and labels.txt (default: "
                "the training run's, for its dataset).")
F.DEFINE_string("dataset_split_name", "train", "Split to measure on (default: train; see "
                "above for why not the split you evaluate on).")
F.DEFINE_string("dataset_file_pattern", None, "Shard file pattern, %s = split.")
F.DEFINE_integer("num_batches", 50, "Batches to average over; statistics of N batches are "
                 "those of all N*batch_size images together. The split is shuffled (with "
                 "--seed) and repeated if it holds fewer images.")
F.DEFINE_integer("batch_size", 32, "Images per batch: BatchNorm normalises each layer with "
                 "its batch's statistics, as in training, so use a training-like size (16 or "
                 "more); at least 2.")
F.DEFINE_string("model_name", None, "Architecture (default: slimtune.json, else read from "
                "the checkpoint's variable names).")
F.DEFINE_string("preprocessing_name", None, "inception, vgg, densenet or lenet (default: as "
                "trained or converted).")
F.DEFINE_integer("image_size", None, "Input size (default: as trained or converted).")
F.DEFINE_boolean("train_preprocessing", False, "Measure on training-preprocessed (randomly "
                 "cropped, flipped) images instead of evaluation-preprocessed ones. The crops "
                 "and flips differ from run to run (drawn in parallel); the order of images "
                 "still follows --seed.")
F.DEFINE_boolean("include_frozen", False, "Also re-estimate BatchNorm that training kept "
                 "frozen (--freeze_batch_norm runs, Keras layers with trainable=False).")
F.DEFINE_integer("seed", 0, "Seed of the shuffled order of images: the same seed gives the "
                 "same batches.")
flags.mark_flag_as_required("checkpoint_path")
flags.mark_flag_as_required("output_dir")


def main(argv):
    from slimtune import recalibrate

    recalibrate.recalibrate(cli.config_from_flags(recalibrate.RecalibrateConfig))


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
