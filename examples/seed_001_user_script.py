"""A fine-tuning script written the way seed 001's author wrote it, bug included.

resnet_v1_50 from ``tf_slim.nets`` with its published arg scope, trained with
``optimizer.minimize(loss)``: slim's BatchNorm puts its moving-average updates in the
UPDATE_OPS collection, nothing runs them, and the moving mean/variance that
``is_training=False`` uses stay at 0/1.  Training accuracy looks fine; evaluation is at
chance.  ``--fixed`` makes the two changes that cure it: the train op depends on
UPDATE_OPS, and the BN decay (0.9) suits a 100-step run.

This is not how slimtune trains (``slimtune-train`` is correct by construction); it
exists so that ``slimtune-doctor`` has a real broken run to examine:

  python examples/seed_001_user_script.py --train_dir=/tmp/seed001
  slimtune-doctor --train_dir=/tmp/seed001 --model_name=resnet_v1_50 \\
      --dataset_name=digits --image_size=32

About 1 minute per 100 steps on 2 CPU cores.
"""

import os
import sys

import numpy as np
from absl import app, flags

flags.DEFINE_string("train_dir", "/tmp/seed001", "Where the checkpoint and MetaGraph go.")
flags.DEFINE_bool("fixed", False, "Run the BatchNorm updates and use decay 0.9.")
flags.DEFINE_integer("steps", 100, "Training steps of 32 digits at 32x32.")


def train(train_dir, images, labels, fixed, steps=100, log=print):
    """Train resnet_v1_50 on ``images`` [N,32,32,3] the seed-001 way; returns train_dir."""
    import tensorflow as tf

    from slimtune import compat

    slim = compat.apply()  # tf-slim on TF 2.21 needs slimtune's compat fixes to import
    from tf_slim.nets import resnet_v1

    v1 = tf.compat.v1
    with tf.Graph().as_default():
        v1.set_random_seed(0)
        x = v1.placeholder(tf.float32, [None, 32, 32, 3])
        y = v1.placeholder(tf.int64, [None])
        decay = 0.9 if fixed else 0.997
        with slim.arg_scope(resnet_v1.resnet_arg_scope(batch_norm_decay=decay)):
            logits, _ = resnet_v1.resnet_v1_50(x, num_classes=10, is_training=True,
                                               scope="resnet_v1_50")
        logits = tf.squeeze(logits, [1, 2])
        loss = v1.losses.sparse_softmax_cross_entropy(y, logits)
        correct = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), y), tf.float32))
        step = v1.train.get_or_create_global_step()
        optimizer = v1.train.AdamOptimizer(1e-3)
        if fixed:
            with tf.control_dependencies(v1.get_collection(v1.GraphKeys.UPDATE_OPS)):
                train_op = optimizer.minimize(loss, global_step=step)
        else:
            train_op = optimizer.minimize(loss, global_step=step)  # the bug
        rng = np.random.RandomState(0)
        recent = []
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            for i in range(1, steps + 1):
                batch = rng.randint(0, len(images), 32)
                _, accuracy = sess.run([train_op, correct], {x: images[batch], y: labels[batch]})
                recent = (recent + [accuracy])[-20:]
                if i % 20 == 0 or i == steps:
                    log(f"step {i}/{steps}: training accuracy (last 20 batches) "
                        f"{np.mean(recent):.3f}")
            os.makedirs(train_dir, exist_ok=True)
            v1.train.Saver().save(sess, os.path.join(train_dir, "model.ckpt"), global_step=steps)
    return train_dir


def main(argv):
    del argv
    from slimtune.data import digits, pipeline

    # VGG preprocessing, as the doctor reads digits for resnet_v1_50 by default.
    images, labels = pipeline.load_eval_arrays("digits", digits.ensure(), "train", "vgg", 32)
    train(flags.FLAGS.train_dir, images, labels, flags.FLAGS.fixed, flags.FLAGS.steps)
    print(f"saved {flags.FLAGS.train_dir}; now run:\n  slimtune-doctor "
          f"--train_dir={flags.FLAGS.train_dir} --model_name=resnet_v1_50 "
          "--dataset_name=digits --image_size=32")


if __name__ == "__main__":
    sys.exit(app.run(main))
