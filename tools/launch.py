"""Train on several workers on this machine: slimtune-launch starts them for you.

  slimtune-launch --num_workers=2 -- --train_dir=/tmp/run --dataset_name=digits \\
      --model_name=mobilenet_v1_025 --train_image_size=32 --batch_size=16 \\
      --max_number_of_steps=200

Everything after "--" is given to slimtune-train, the same for every worker.  The
launcher picks a free port on 127.0.0.1 for each worker, sets each worker's TF_CONFIG
(its place in the cluster), starts them, and prints their output line by line,
prefixed "[worker i]".  If one worker fails, the others are stopped and the launcher
exits with that worker's exit code.  SIGTERM or Ctrl-C to the launcher is forwarded to
every worker: they stop after the same step, save it and exit; the launcher waits up to
25 s for them and exits 143 (SIGTERM) or 130 (Ctrl-C).  Run the same command again to
resume.

Each worker takes --batch_size images per step: the global batch is
batch_size x num_workers.  Worker 0 writes --train_dir, worker i writes
<train_dir>/worker_i.  Running the same command again resumes from the last checkpoint.
On several machines, start slimtune-train on each with TF_CONFIG (or --worker_hosts and
--task) instead; see the README, "Training on several machines".
"""

import sys

from absl import flags

from slimtune import cli

flags.DEFINE_integer("num_workers", 2, "Worker processes to start on this machine.")


def main(argv):
    from slimtune import launch

    sys.exit(launch.launch(flags.FLAGS.num_workers, argv[1:]))


def run():
    cli.run(main, pass_through=True)


if __name__ == "__main__":
    run()
