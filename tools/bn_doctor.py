"""Diagnose the BatchNorm and Dropout pitfalls that make served accuracy collapse.

Examines any of:
  --train_dir        a training run: its latest checkpoint, slimtune.json and MetaGraph
  --checkpoint_path  a checkpoint (prefix or dir); its .meta too when beside it
  --graph            a training MetaGraph (.meta) or a frozen inference graph (.pb)
  --saved_model      a SavedModel directory (every serving signature)
  --keras_model      a .keras file (and the slimtune.json beside it)

and prints each finding with its severity (error, warning, note), what was seen
(layer names, numbers), what it means and the fix.  Checks include: BatchNorm update
ops the train op never runs; moving statistics still exactly 0/1 after training; a
BN decay too slow for the steps trained (decay**steps still large); gamma/beta without
moving statistics; BatchNorm in training mode, dropout or a keras_learning_phase
placeholder in a serving graph; BatchNorm in training mode over one value per channel
(rank-2 input at batch 1); a Keras model whose BN epsilon/scale differ from its source
checkpoint's, or whose nested base model's BN is called without training=False.

With data (--dataset_name/--dataset_dir or --images) every model given is also run:
the same images twice (dropout left on), an image alone and in a batch (BatchNorm on
batch statistics at inference), one class for nearly every image; per BatchNorm
layer, the data's statistics against the moving statistics (first layer off named);
and for checkpoints, top-1 with moving statistics against top-1 with batch
statistics on the same weights: a large gap means BatchNorm is why eval trails
training (seed 001).

Exit code: 1 when any error is found, 0 otherwise (2 on unusable input).

  slimtune-doctor --train_dir=runs/quickstart/finetune
  slimtune-doctor --graph=frozen.pb --keras_model=keras/model.keras --report_json=r.json
  slimtune-doctor --keras_model=model.keras --dataset_name=digits
  slimtune-doctor --train_dir=/tmp/seed001 --model_name=resnet_v1_50 \
      --dataset_name=digits --image_size=32
"""

import sys

from absl import flags

from slimtune import cli

F = flags
F.DEFINE_string("train_dir", None, "A training run's directory.")
F.DEFINE_string("checkpoint_path", None, "A checkpoint prefix or directory.")
F.DEFINE_string("graph", None, "A MetaGraph (.meta) or frozen GraphDef (.pb).")
F.DEFINE_string("saved_model", None, "A SavedModel directory.")
F.DEFINE_string("keras_model", None, "A .keras file.")
F.DEFINE_string("model_name", None, "Architecture of a checkpoint without slimtune.json "
                "(e.g. resnet_v1_50): its default BN decay, and the network the live "
                "checks build.")
F.DEFINE_string("dataset_name", None, "Data for the live checks: 'digits' (built in) or a "
                "TFRecord dataset name.")
F.DEFINE_string("dataset_dir", None, "Folder of TFRecord shards for the live checks.")
F.DEFINE_string("dataset_split_name", "validation", "Split the live checks read.")
F.DEFINE_list("images", [], "Image files for the live checks (instead of a dataset).")
F.DEFINE_integer("max_images", 64, "Images the live checks use.")
F.DEFINE_integer("image_size", None, "Input size (default: as trained/exported).")
F.DEFINE_string("preprocessing_name", None, "inception, vgg, densenet or lenet (default: as trained).")
F.DEFINE_string("report_json", None, "Also write the findings to this JSON file.")


def main(argv):
    from slimtune import doctor, files

    cfg = cli.config_from_flags(doctor.DoctorConfig)
    report = doctor.diagnose(cfg)
    for line in report.lines():
        print(line)
    if cfg.report_json:
        files.write_json(cfg.report_json, report.as_dict(), indent=2)
    sys.exit(1 if report.errors else 0)


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
