"""slimtune's main job on built-in data: base model, fine-tune, evaluate, export, convert,
verify, and keep training in both engines.

Plays out the life of a slim checkpoint on scikit-learn's handwritten digits (shipped
with the package, no download):

  1. train a base model from scratch on digits 0-4 (standing in for a published
     checkpoint);
  2. fine-tune it on digits 5-9 with a new head (--checkpoint_exclude_scopes) and a
     BatchNorm decay suited to few steps;
  3. evaluate the held-out digits with is_training=False and with batch statistics;
  4. export a frozen .pb and a SavedModel; convert to a Keras 3 .keras;
  5. verify every form against the checkpoint graph;
  6. keep training: the checkpoint in the slim engine and the converted .keras in the
     Keras 3 engine (--engine=keras), --continue_steps each on the same batches, and
     print a summary table.

About 6-9 minutes on 2 CPU cores with the defaults.  Training is seeded and
deterministic: a fresh run prints the same summary table every time on the same
machine.  Exits 1 if the fine-tuned top-1 is below --min_top1, batch statistics beat
it beyond chance (a one-sided sign test on the images the two BatchNorm modes
classify differently, p < 0.01, as slimtune-doctor judges it), any form differs
from the checkpoint beyond --rtol, or the two engines' served accuracies after training
on differ beyond chance (the two-sided sign test, p < 0.01).  Outputs go to --work_dir; running again resumes
training and redoes export, conversion and verification.

  slimtune-quickstart                                     # defaults
  slimtune-quickstart --model_name=inception_v1 --image_size=64 --work_dir=/tmp/qs
"""

from absl import flags

from slimtune import cli


def _define():
    from slimtune.quickstart import QuickstartConfig

    d = QuickstartConfig()
    f = flags
    f.DEFINE_string("work_dir", d.work_dir, "Where every output goes (data, base, finetune, "
                    "export, keras); an existing run is resumed.")
    f.DEFINE_string("model_name", d.model_name, "Architecture (see slimtune-train --help).")
    f.DEFINE_integer("image_size", d.image_size, "Input size in pixels (digits are 32x32).")
    f.DEFINE_integer("batch_size", d.batch_size, "Images per training step.")
    f.DEFINE_string("base_classes", d.base_classes, "Digits the base model learns.")
    f.DEFINE_string("new_classes", d.new_classes, "Digits the fine-tuned model learns.")
    f.DEFINE_integer("base_steps", d.base_steps, "Training steps of the base model.")
    f.DEFINE_integer("finetune_steps", d.finetune_steps, "Fine-tuning steps.")
    f.DEFINE_integer("continue_steps", d.continue_steps, "Steps both engines train on after "
                     "the conversion: the slim engine from the fine-tuned checkpoint, the "
                     "Keras 3 engine from the converted .keras.")
    f.DEFINE_boolean("bfloat16_finetune", d.bfloat16_finetune, "Fine-tune again with "
                     "--mixed_precision=bfloat16 (on a CPU with AVX512_BF16 or AMX; said and "
                     "skipped elsewhere) and compare its served top-1 with float32's by the "
                     "sign test.")
    f.DEFINE_float("learning_rate", d.learning_rate, "Base model's Adam learning rate "
                   "(polynomial decay to 1/100 of it).")
    f.DEFINE_float("finetune_learning_rate", d.finetune_learning_rate, "Fine-tuning's Adam "
                   "learning rate.")
    f.DEFINE_float("batch_norm_decay", d.batch_norm_decay, "BatchNorm moving-average decay of "
                   "both runs (0.9 suits a few hundred steps; 0.997 would barely move).")
    f.DEFINE_float("weight_decay", d.weight_decay, "L2 weight decay.")
    f.DEFINE_integer("verify_images", d.verify_images, "Held-out images every form is verified on.")
    f.DEFINE_integer("seed", d.seed, "Random seed of both training runs; they are "
                     "deterministic, so the same seed gives the same table.")
    f.DEFINE_float("min_top1", d.min_top1, "Required fine-tuned top-1 (is_training=False).")
    f.DEFINE_float("rtol", d.rtol, "Parity tolerance of every form, relative to max |logit|.")


_define()


def main(argv):
    from slimtune import quickstart

    quickstart.run(cli.config_from_flags(quickstart.QuickstartConfig))


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
