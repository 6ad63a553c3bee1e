"""Fine-tune or train a slim image classifier, research/slim style, on TensorFlow 2.21.

Flag names follow tensorflow/models research/slim's train_image_classifier.py, so
existing command lines and --flagfile files work.  Differences that matter:

  * BatchNorm moving statistics really update: the train op depends on every op of
    the UPDATE_OPS collection.
  * --batch_norm_decay / --batch_norm_epsilon override the architecture's published
    values (a decay of 0.9-0.99 suits a few hundred steps on a small dataset; the
    published 0.997-0.9997 leaves the moving statistics near their start).
  * --freeze_batch_norm: BatchNorm normalises with the checkpoint's moving statistics,
    never updates them, and gamma/beta stay fixed.  Dropout still drops while training.
  * --precise_bn_batches=N replaces the moving averages of the BatchNorm statistics
    by their exact values for the final weights, measured on N batches.
  * A checkpoint already in --train_dir is resumed (global step and all) and
    --checkpoint_path is then ignored.
  * --seed=N makes the run repeatable: two runs with the same seed on the same
    machine write bit-identical checkpoints (see --deterministic).
  * An Inception checkpoint saved without its auxiliary head (AuxLogits) trains
    without it, unless --checkpoint_exclude_scopes covers the head or
    --ignore_missing_vars is set (a new head, as in research/slim).
  * Before the first step, BatchNorm layers that will normalise 4 or fewer values per
    channel (batch x map size) are warned about; at the end, the final checkpoint is
    run in inference mode on one batch and a warning says if its outputs are not finite.

  * --engine=keras trains the Keras 3 mirror of the same architecture (slimtune's
    keras_nets) with the same flags and the same meaning: slim scope names for the scope
    flags, slim's L2 weight decay, TF1's optimizer formulas, the research/slim schedules,
    slim's BatchNorm arithmetic.  It starts from a slim checkpoint or a converted .keras
    and ends with --train_dir/model.keras, a plain Keras model (the averaged weights
    with --moving_average_decay; --precise_bn_batches re-estimates its statistics).

  * Data parallel on several machines: --worker_hosts=h0:p0,h1:p1 --task=i on each
    (or TF_CONFIG); on one machine, slimtune-launch --num_workers=N -- <these flags>.
    --num_clones=K trains K replicas on one machine's devices.  Parameter servers
    (--num_ps_tasks) are not supported.

  * The learning-rate schedule is research/slim's: decay_steps = images / batch_size x
    num_epochs_per_decay with one clone's --batch_size, printed at start.  With K clones
    on one machine that is research/slim's --num_clones=K run step for step.  With W
    workers (a step = every worker's batch, W x K x batch_size images):
      - --sync_replicas --replicas_to_aggregate=W reproduces research/slim's synchronous
        workers (--sync_replicas --replicas_to_aggregate=W --worker_replicas=W): the
        same images per step and decay_steps / W;
      - without it the decay steps are research/slim's asynchronous workers' number,
        but there every worker's batch advanced the global step, here all W together:
        the rate decays W times slower per epoch than there;
      - --decay_per_global_batch decays every num_epochs_per_decay epochs of data, as
        research/slim on one clone with --batch_size = W x K x batch_size.

Example (the built-in handwritten digits, ResNet v1 50 at 32 px):

  slimtune-train --train_dir=/tmp/digits_run --dataset_name=digits \\
      --model_name=resnet_v1_50 --preprocessing_name=lenet --train_image_size=32 \\
      --batch_size=16 --max_number_of_steps=300 --optimizer=adam \\
      --learning_rate=0.001 --opt_epsilon=1e-8 --batch_norm_decay=0.9

Fine-tune a 1001-class checkpoint to your 10 classes:

  slimtune-train ... --checkpoint_path=/ckpts/inception_v3.ckpt \\
      --checkpoint_exclude_scopes=InceptionV3/Logits,InceptionV3/AuxLogits
"""

from absl import flags

from slimtune import cli

F = flags
F.DEFINE_string("train_dir", "/tmp/tfmodel/", "Directory for checkpoints, TensorBoard events "
                "and slimtune.json (the run's metadata). Resumed if it holds a checkpoint.")
# Dataset
F.DEFINE_string("dataset_name", "imagenet", "'digits' (built-in, written to the cache on first "
                "use) or the name of a TFRecord dataset in research/slim's layout (flowers, "
                "cifar10, mnist, imagenet, or any name for '{split}-NNNNN-of-NNNNN' shards).")
F.DEFINE_string("dataset_split_name", "train", "Split to train on.")
F.DEFINE_string("dataset_dir", None, "Folder of TFRecord shards and labels.txt. Optional for "
                "--dataset_name=digits.")
F.DEFINE_string("dataset_file_pattern", None, "Shard file pattern, %s = split (default: "
                "research/slim's pattern for the dataset name, else '%s-*').")
F.DEFINE_integer("labels_offset", 0, "Subtract this from every label, e.g. 1 to train a "
                 "1000-class net (ResNet v1, VGG) on 1001-class ImageNet records.")
# Model and input
F.DEFINE_string("model_name", "inception_v3", "Architecture; see --helpfull for the list "
                "or run with a wrong name to get it.")
F.DEFINE_string("preprocessing_name", None, "inception, vgg, densenet or lenet (default: the "
                "architecture's own).")
F.DEFINE_integer("train_image_size", None, "Input size (default: the architecture's).")
F.DEFINE_integer("batch_size", 32, "Images per step.")
F.DEFINE_integer("max_number_of_steps", None, "Stop at this global step (default: never).")
F.DEFINE_integer("seed", None, "Random seed of the weights' initialisers, the shuffles and "
                 "the augmentations; with it a run is bit-identical to any other with the "
                 "same seed on this machine (default: a different run every time).")
F.DEFINE_boolean("deterministic", None, "Make a seeded run bit-identical to any other with "
                 "the same --seed on this machine: every checkpoint tensor, BatchNorm "
                 "statistics included (input pipeline in order, TensorFlow op determinism; "
                 "random augmentations are then drawn one image at a time). Default: on "
                 "when --seed is given; --nodeterministic keeps the seed but lets parallel "
                 "work finish in any order, for speed.")
# Fine-tuning
F.DEFINE_string("checkpoint_path", None, "Checkpoint to warm-start from: a prefix, a .ckpt "
                "file or a directory (its latest checkpoint).")
F.DEFINE_string("checkpoint_exclude_scopes", None, "Comma-separated variable scopes not "
                "restored from --checkpoint_path (e.g. the logits, for a new label set).")
F.DEFINE_string("trainable_scopes", None, "Comma-separated scopes to train; every other "
                "variable keeps its value (default: train everything).")
F.DEFINE_boolean("ignore_missing_vars", False, "Keep the initial values of variables that "
                 "--checkpoint_path lacks instead of failing.")
# BatchNorm
F.DEFINE_float("batch_norm_decay", None, "Moving-average decay of BatchNorm statistics "
               "(default: the architecture's, e.g. 0.997 for ResNet, 0.9997 for Inception).")
F.DEFINE_float("batch_norm_epsilon", None, "BatchNorm epsilon (default: the architecture's).")
F.DEFINE_boolean("freeze_batch_norm", False, "Use the moving statistics while training, never "
                 "update them, keep gamma/beta fixed (Keras trainable=False). Dropout stays "
                 "active during training.")
F.DEFINE_boolean("sync_batch_norm", False, "--engine=keras on several replicas: normalise "
                 "with the statistics of the global batch, every replica's images together "
                 "(one all-reduce per BatchNorm layer and step). Default: each replica's own "
                 "batch, as slim's multi-GPU towers did, the moving statistics averaged over "
                 "the replicas at every log step and save.")
F.DEFINE_integer("precise_bn_batches", 0, "After the last step, re-estimate every BatchNorm "
                 "layer's moving mean/variance for the final weights, exactly, over this many "
                 "batches of the training split (evaluation preprocessing, as served), and "
                 "save the result as the final checkpoint precise_bn.ckpt-<step> (the raw one "
                 "stays). Fixes served accuracy trailing training when the decay was too slow "
                 "for the run (slimtune-recalibrate does the same to any checkpoint). 0: off.")
# Optimisation
F.DEFINE_float("weight_decay", 0.00004, "L2 weight decay on the model weights.")
F.DEFINE_enum("optimizer", "rmsprop", ["adadelta", "adagrad", "adam", "ftrl", "momentum",
                                       "rmsprop", "sgd"], "Optimizer.")
F.DEFINE_float("learning_rate", 0.01, "Initial learning rate.")
F.DEFINE_enum("learning_rate_decay_type", "exponential", ["fixed", "exponential", "polynomial"],
              "How the learning rate decays.")
F.DEFINE_float("learning_rate_decay_factor", 0.94, "Exponential decay factor.")
F.DEFINE_float("num_epochs_per_decay", 2.0, "Epochs per decay step (exponential) or to the "
               "end of the decay (polynomial).")
F.DEFINE_boolean("decay_per_global_batch", False, "Count --num_epochs_per_decay in epochs of "
                 "the global batch (batch_size x num_clones x workers): the rate then decays "
                 "at the same point of the data whatever the number of replicas. Default: "
                 "research/slim's decay_steps = images / batch_size x num_epochs_per_decay "
                 "with one clone's batch (--num_clones=K decays K times faster per epoch), "
                 "divided by --replicas_to_aggregate under --sync_replicas.")
F.DEFINE_float("end_learning_rate", 0.0001, "Final rate of the polynomial decay.")
F.DEFINE_float("momentum", 0.9, "Momentum of the momentum optimizer.")
F.DEFINE_float("rmsprop_momentum", 0.9, "RMSProp momentum.")
F.DEFINE_float("rmsprop_decay", 0.9, "RMSProp decay.")
F.DEFINE_float("adam_beta1", 0.9, "Adam beta1.")
F.DEFINE_float("adam_beta2", 0.999, "Adam beta2.")
F.DEFINE_float("opt_epsilon", 1.0, "Epsilon of Adam/RMSProp/Adadelta. research/slim's default "
               "1.0 is kept for compatibility; 1e-8 is the usual Adam value.")
F.DEFINE_float("adadelta_rho", 0.95, "Adadelta decay.")
F.DEFINE_float("adagrad_initial_accumulator_value", 0.1, "AdaGrad initial accumulator.")
F.DEFINE_float("ftrl_learning_rate_power", -0.5, "FTRL learning rate power.")
F.DEFINE_float("ftrl_initial_accumulator_value", 0.1, "FTRL initial accumulator.")
F.DEFINE_float("ftrl_l1", 0.0, "FTRL L1 strength.")
F.DEFINE_float("ftrl_l2", 0.0, "FTRL L2 strength.")
F.DEFINE_float("label_smoothing", 0.0, "Label smoothing.")
F.DEFINE_float("dropout_keep_prob", None, "Keep probability of the network's dropout layers "
               "while training (unset: the architecture's, as research/slim: 0.8 Inception "
               "and MobileNet v2, 0.999 MobileNet v1, 0.5 VGG/AlexNet; 1 turns dropout off). "
               "Evaluation never drops.")
F.DEFINE_float("moving_average_decay", None, "Also keep an exponential moving average of "
               "the weights with this decay (evaluate them with the same flag; "
               "--engine=keras: model.keras holds them).")
F.DEFINE_float("clip_gradient_norm", 0.0, "Clip each gradient to this norm (0 = off).")
# Logging and saving
F.DEFINE_integer("log_every_n_steps", 10, "Print step, loss, learning rate, images/s, ETA.")
F.DEFINE_integer("save_interval_secs", 600, "Save a checkpoint at least this often.")
F.DEFINE_integer("save_interval_steps", None, "Also save every N steps.")
F.DEFINE_integer("save_summaries_secs", 600, "Write TensorBoard summaries this often.")
F.DEFINE_integer("keep_checkpoint_max", 5, "Checkpoints kept in --train_dir.")
# Several workers or devices (research/slim names; see "Training on several machines")
F.DEFINE_string("worker_hosts", None, "Every worker's host:port, comma-separated, worker 0 "
                "(the chief) first, the same on every worker; with --task=i this process is "
                "worker i. Without it, a TF_CONFIG environment variable is used if set. "
                "--batch_size is per worker: the global batch is batch_size x workers.")
F.DEFINE_enum("engine", "slim", ["slim", "keras"], "What trains: 'slim' (the TF1 graph of the "
              "slim network, research/slim's way) or 'keras' (its Keras 3 mirror, trained with "
              "slim's semantics; --checkpoint_path may also be a converted .keras).")
F.DEFINE_enum("mixed_precision", "float32", ["float32", "bfloat16", "float16"],
              "Number format of the convolutions and matmuls, either engine: bfloat16 on a "
              "CPU with AVX512_BF16 or AMX (grappler's oneDNN rewrite; Keras' mixed_bfloat16), "
              "float16 on a GPU with a dynamic loss scale. Variables, BatchNorm statistics, "
              "optimizer slots, the loss and the checkpoint stay float32, so convert, verify "
              "and the doctor work as for a float32 run. A format this machine cannot "
              "run natively is refused.")
DEPLOYMENT = ("num_clones", "clone_on_cpu", "worker_replicas", "task", "num_ps_tasks",
              "sync_replicas", "replicas_to_aggregate")
cli.define_research_slim_compat_flags(supported=DEPLOYMENT)
F.DEFINE_boolean("use_grayscale", False, "Whether to convert input images to grayscale "
                 "(research/slim's rgb_to_grayscale at the point its preprocessing does; "
                 "the network then takes 1 channel). Recorded in slimtune.json: eval, "
                 "export, convert and verify of the run use it without the flag.")
cli.define_refused_flag("quantize_delay", -1, "Refused unless -1: research/slim's "
                        "quantization-aware training has no TF 2 rewrite of a TF1 graph.")


def main(argv):
    from slimtune import train

    cli.check_compat_flags(supported=DEPLOYMENT)
    cli.refuse_set_flags()
    train.train(cli.config_from_flags(train.TrainConfig))


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
