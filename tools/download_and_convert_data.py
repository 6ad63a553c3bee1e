"""Write research/slim's datasets in research/slim's own layout (its
download_and_convert_data.py, same flags), for the command lines written for it.

  flowers  -> flowers_{train,validation}_0000N-of-00005.tfrecord (350 validation images)
  cifar10  -> cifar10_{train,test}.tfrecord                       (50,000 / 10,000)
  mnist    -> mnist_{train,test}.tfrecord                         (60,000 / 10,000)
  and labels.txt

The archive is downloaded into --dataset_dir from research/slim's URL unless it is
already there or given with --archive (for mnist: the folder holding the four .gz
files). Files appear only when all are complete; a dataset already there is left alone.

Example:
  slimtune-download-data --dataset_name=flowers --dataset_dir=/data/flowers
  slimtune-train --dataset_name=flowers --dataset_dir=/data/flowers --model_name=inception_v3 ...
"""

from absl import flags

from slimtune import cli

flags.DEFINE_string("dataset_name", None, "flowers, cifar10 or mnist.")
flags.DEFINE_string("dataset_dir", None, "Folder to write the TFRecords and labels.txt into.")
flags.DEFINE_string("archive", None, "The archive fetched by hand (flower_photos.tgz, "
                    "cifar-10-python.tar.gz; mnist: the folder of its four .gz files), "
                    "instead of downloading.")
flags.mark_flags_as_required(["dataset_name", "dataset_dir"])


def main(argv):
    from slimtune.data import upstream

    F = flags.FLAGS
    upstream.prepare(F.dataset_name, F.dataset_dir, F.archive)


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
