"""The built-in dataset: scikit-learn's real handwritten digits as slim TFRecord shards.

1797 scanned 8x8 grey digits (UCI ML digits, shipped inside scikit-learn, so no
download), upscaled to 32x32 RGB PNGs, split per class into ``train`` (80%) and
``validation`` (20%) with a fixed seed.  Written on first use into the cache.
"""

import os
import shutil
import tempfile

import numpy as np

from slimtune.cache import cache_dir
from slimtune.data import tfrecord

NAME = "digits"
IMAGE_SIZE = 32
VALIDATION_FRACTION = 0.2
SEED = 0
_DONE_MARKER = "COMPLETE"


def default_dir():
    return cache_dir("datasets", NAME)


def load_arrays():
    """``(images uint8 [N, 32, 32, 3], labels int [N])`` in scikit-learn's order."""
    import tensorflow as tf
    from sklearn.datasets import load_digits

    digits = load_digits()
    grey = digits.images.astype(np.float32)[..., None] / 16.0  # [N, 8, 8, 1] in [0, 1]
    big = tf.image.resize(grey, [IMAGE_SIZE, IMAGE_SIZE], method="bilinear").numpy()
    images = np.clip(np.round(big * 255.0), 0, 255).astype(np.uint8)
    return np.repeat(images, 3, axis=-1), digits.target.astype(np.int64)


def split_indices(labels, validation_fraction=VALIDATION_FRACTION, seed=SEED):
    """Per-class split, so both splits hold every digit in its natural proportion."""
    rng = np.random.RandomState(seed)
    train, validation = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        cut = int(round(len(members) * validation_fraction))
        validation.extend(members[:cut])
        train.extend(members[cut:])
    return rng.permutation(train), rng.permutation(validation)


def ensure(dataset_dir=None):
    """Write the shards if ``dataset_dir`` (default: the cache) lacks them; return the dir."""
    dataset_dir = dataset_dir or default_dir()
    if os.path.exists(os.path.join(dataset_dir, _DONE_MARKER)):
        return dataset_dir
    import tensorflow as tf

    images, labels = load_arrays()
    parent = os.path.dirname(os.path.abspath(dataset_dir))
    os.makedirs(parent, exist_ok=True)
    work = tempfile.mkdtemp(prefix=".digits-", dir=parent)
    try:
        for split, indices in zip(("train", "validation"), split_indices(labels)):
            records = [
                tfrecord.image_example(tf.io.encode_png(images[i]).numpy(), "png",
                                       labels[i], IMAGE_SIZE, IMAGE_SIZE)
                for i in indices
            ]
            tfrecord.write_split(work, split, records, num_shards=2)
        tfrecord.write_labels(work, {i: str(i) for i in range(10)})
        open(os.path.join(work, _DONE_MARKER), "w").close()
        if os.path.isdir(dataset_dir):
            # A half-written or foreign directory: keep its files, add ours beside them.
            for name in os.listdir(work):
                os.replace(os.path.join(work, name), os.path.join(dataset_dir, name))
        else:
            os.replace(work, dataset_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dataset_dir
