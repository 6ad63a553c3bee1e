"""Check that the Keras engine trains a model as the slim engine does, step by step.

Runs slimtune-train twice from one slim checkpoint, --training_steps steps each: once
with --engine=slim (the TF1 graph of the slim network, research/slim's way) and once
with --engine=keras (its Keras 3 mirror), with the same flags and on the same batches
(seeded: --seed, default 0).  Then prints

  * the total loss of every step on each engine and their relative difference;
  * layer by layer, in network order, how far apart the trained weights, the BatchNorm
    moving statistics (and with --moving_average_decay, the averages) ended:
    max|keras - slim| / max|slim| of each tensor;

and passes when the losses are within --loss_rtol, every tensor within --weight_rtol,
and the trained weights moved at least 10 x --weight_rtol (else the comparison cannot
tell an engine that trains from one that does not).

Every slimtune-train flag is accepted and means the same on both engines.  Dropout is
off unless --dropout_keep_prob is given (the two engines draw different random masks).
--checkpoint_path (a slim checkpoint: prefix, train dir, manifest name or .tar.gz) is
required.  --train_dir keeps both runs (<train_dir>/slim and <train_dir>/keras);
without it they go to a temporary directory that is removed.

At small image sizes, training the whole network with BatchNorm in training mode is
chaotic even for two slim runs (README, "Training equivalence"): compare the heads
(--trainable_scopes=<the logits scopes>) or with --freeze_batch_norm to test the
arithmetic.

Exit code: 0 when the engines agree, 1 when they do not, 2 on unusable input (a
flag, the data or the checkpoint; or a run that failed, such as a NaN loss).

  slimtune-verify-training --checkpoint_path=runs/quickstart/finetune \\
      --dataset_name=digits --model_name=resnet_v1_50 --preprocessing_name=lenet \\
      --train_image_size=32 --batch_size=4 --optimizer=momentum --learning_rate=0.001 \\
      --trainable_scopes=resnet_v1_50/logits --training_steps=5
"""

import sys

from absl import flags

from slimtune import cli
from slimtune_tools import train_image_classifier

flags.adopt_module_key_flags(train_image_classifier)
flags.DEFINE_integer("training_steps", 5, "Steps each engine trains before the comparison.")
flags.DEFINE_float("weight_rtol", 1e-4, "Pass when every trained weight, BatchNorm statistic "
                   "and average is within this relative difference.")
flags.DEFINE_float("loss_rtol", 1e-5, "Pass when every step's total loss is within this "
                   "relative difference.")
flags.DEFINE_string("report_json", None, "Also write the figures to this JSON file.")


def main(argv):
    from slimtune import train, training_parity

    cli.check_compat_flags(supported=())
    cli.refuse_set_flags()
    train_dir = flags.FLAGS.train_dir if flags.FLAGS["train_dir"].present else None
    parity = training_parity.verify_training(
        cli.config_from_flags(train.TrainConfig, train_dir=train_dir),
        cli.config_from_flags(training_parity.ParityConfig))
    sys.exit(0 if not parity.problems else 1)


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
