"""Convert a slim checkpoint (moving statistics included) into a Keras 3 model.

The output directory gets model.keras (loads with keras.models.load_model, safe mode,
no slimtune needed), saved_model/ (TF SavedModel with a serving signature) and
slimtune.json (source checkpoint and sha256, architecture, classes, labels,
preprocessing, BatchNorm parameters and the parity figures).

Before anything is written, the slim graph (is_training=False) and the Keras model
(training=False) run on the same images and their logits are compared class by
class; beyond --rtol (relative to max(1, max |logit|)) the command fails and writes
nothing.

The architecture is read from the variable names; BatchNorm parameters come from the
training run's slimtune.json when the checkpoint has one (a fine-tune with
--batch_norm_epsilon=1e-3 converts with that epsilon), else the architecture's
published values; flags override both.

  slimtune-convert --checkpoint_path=runs/quickstart/finetune --output_dir=/tmp/keras_digits
  slimtune-convert --checkpoint_path=inception_v3_2016_08_28.tar.gz \\
      --output_dir=/tmp/iv3 --drop_background --images=cat.jpg,dog.jpg
"""

from absl import flags

from slimtune import cli

F = flags
F.DEFINE_string("checkpoint_path", None, "A checkpoint prefix, a directory (its latest "
                "checkpoint) or a .tar.gz archive of a published slim checkpoint.")
F.DEFINE_string("output_dir", None, "Directory to create for model.keras, saved_model/ and "
                "slimtune.json. Must be new or empty unless --overwrite.")
F.DEFINE_string("model_name", None, "Architecture (default: from the training metadata, else "
                "detected from the variable names; an error lists the candidates).")
F.DEFINE_integer("num_classes", None, "Expected output classes (default: the logits layer's; "
                 "a different value is an error).")
F.DEFINE_boolean("drop_background", False, "Drop class 0 of a 1001-class checkpoint so the "
                 "model has the 1000 ImageNet classes.")
F.DEFINE_boolean("use_moving_averages", None, "Take the ExponentialMovingAverage shadow "
                 "weights (trained with --moving_average_decay) instead of the raw ones. "
                 "Default: yes for research/slim's MobileNet v3 and EdgeTPU checkpoints that "
                 "hold them (published ones are evaluated with them), no otherwise; "
                 "--nouse_moving_averages takes the raw weights.")
F.DEFINE_boolean("include_aux_logits", False, "Keep the auxiliary head of inception_v3, "
                 "inception_v4 or inception_resnet_v2 as a second output (fixes the input "
                 "size to --image_size); the checkpoint must hold it.")
F.DEFINE_float("batch_norm_decay", None, "Override the BN decay (Keras momentum).")
F.DEFINE_float("batch_norm_epsilon", None, "Override the BN epsilon.")
F.DEFINE_boolean("batch_norm_scale", None, "Override whether BN has gamma.")
F.DEFINE_integer("image_size", None, "Input size of the parity check (default: as trained, "
                 "else the architecture's).")
F.DEFINE_boolean("fixed_input_size", False, "Give the Keras model a fixed --image_size input "
                 "(default: open height and width where the architecture allows it).")
F.DEFINE_list("images", [], "Image files to add to the parity check (comma-separated).")
F.DEFINE_integer("random_images", 4, "Seeded random images in the parity check.",
                 lower_bound=1)
F.DEFINE_integer("seed", 0, "Seed of the random images.")
F.DEFINE_float("rtol", 1e-5, "Largest accepted |slim - keras| / max(1, max |slim logit|).")
F.DEFINE_boolean("overwrite", False, "Replace a non-empty --output_dir.")
flags.mark_flags_as_required(["checkpoint_path", "output_dir"])


def main(argv):
    from slimtune import convert

    convert.convert(cli.config_from_flags(convert.ConvertConfig))


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
