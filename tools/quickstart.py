"""slimtune's main job on built-in data: train, evaluate with is_training=False, report.

Trains ResNet v1 50 from scratch on scikit-learn's handwritten digits (shipped with
the package, no download), then evaluates the held-out split with the BatchNorm
moving statistics (as served) and with batch statistics, and prints both.  Takes
about 6-8 minutes on 2 CPU cores.  Exits 1 if top-1 is below --min_top1 or the two
evaluations differ by more than --max_gap.

  slimtune-quickstart                      # defaults
  slimtune-quickstart --steps=100 --work_dir=/tmp/qs
"""

from absl import flags

from slimtune import cli



def _define():
    from slimtune.quickstart import QuickstartConfig

    d = QuickstartConfig()
    flags.DEFINE_string("work_dir", d.work_dir, "Where the run's train_dir goes (resumed if "
                        "it already holds a finished run).")
    flags.DEFINE_string("model_name", d.model_name, "Architecture to train.")
    flags.DEFINE_integer("image_size", d.image_size, "Input size in pixels.")
    flags.DEFINE_integer("batch_size", d.batch_size, "Images per step.")
    flags.DEFINE_integer("steps", d.steps, "Training steps.")
    flags.DEFINE_float("learning_rate", d.learning_rate, "Adam learning rate (polynomial "
                       "decay to 1/100 of it).")
    flags.DEFINE_float("batch_norm_decay", d.batch_norm_decay, "BatchNorm moving-average decay.")
    flags.DEFINE_float("weight_decay", d.weight_decay, "L2 weight decay.")
    flags.DEFINE_integer("seed", d.seed, "Random seed.")
    flags.DEFINE_float("min_top1", d.min_top1, "Required held-out top-1 (is_training=False).")
    flags.DEFINE_float("max_gap", d.max_gap, "Largest allowed gap between batch-statistics "
                       "and inference-mode top-1.")


_define()


def main(argv):
    from slimtune import quickstart

    quickstart.run(cli.config_from_flags(quickstart.QuickstartConfig))


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
