"""Convert a folder of class sub-folders into slim TFRecord shards for slimtune-train.

  images/
    cat/ 001.jpg 002.png ...
    dog/ ...

becomes OUTPUT/train-0000N-of-0000M, OUTPUT/validation-..., OUTPUT/labels.txt
(class ids follow the sorted folder names).  Broken images are reported by name.

Example:
  slimtune-convert-images --image_dir=images --output_dir=/data/pets
  slimtune-train --dataset_name=pets --dataset_dir=/data/pets ...
"""

from absl import flags

from slimtune import cli

flags.DEFINE_string("image_dir", None, "Folder with one sub-folder of images per class.")
flags.DEFINE_string("output_dir", None, "New (or empty) folder for the shards.")
flags.DEFINE_float("validation_fraction", 0.1, "Share of each class held out for validation.")
flags.DEFINE_integer("num_shards", 4, "Shards per split.")
flags.DEFINE_integer("seed", 0, "Seed of the split and shuffle.")
flags.mark_flags_as_required(["image_dir", "output_dir"])


def main(argv):
    from slimtune.data import image_folder

    F = flags.FLAGS
    image_folder.convert(F.image_dir, F.output_dir, F.validation_fraction, F.num_shards, F.seed)


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
