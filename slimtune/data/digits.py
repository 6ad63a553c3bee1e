"""The built-in dataset: scikit-learn's real handwritten digits as slim TFRecord shards.

1797 scanned 8x8 grey digits (UCI ML digits, shipped inside scikit-learn, so no
download), upscaled to 32x32 RGB PNGs, split per class into ``train`` (80%) and
``validation`` (20%) with a fixed seed.  Written on first use into the cache.

A subset of the digits (``classes=[5, 6, 7, 8, 9]``) is a dataset of its own: labels
renumbered from 0 and ``labels.txt`` keeping the digits' names.  The main job uses two
disjoint subsets to stand in for "a published checkpoint" and "your new label set".
"""

import os

import numpy as np

from slimtune import files
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


def _marker_text(classes):
    return "classes " + ",".join(str(c) for c in classes) + "\n"


def ensure(dataset_dir=None, classes=None):
    """Write the shards if ``dataset_dir`` (default: the cache) lacks them; return the dir.

    ``classes`` keeps only those digits, renumbered 0..k-1 in the given order.
    """
    from slimtune.errors import DataError

    classes = list(range(10)) if classes is None else [int(c) for c in classes]
    if not classes or len(set(classes)) != len(classes) or not set(classes) <= set(range(10)):
        raise DataError(f"digit classes {classes} must be distinct values in 0..9")
    dataset_dir = dataset_dir or default_dir()
    marker = os.path.join(dataset_dir, _DONE_MARKER)
    if os.path.exists(marker):
        with open(marker, encoding="utf-8") as f:
            written = f.read()
        # Markers from before subsets existed are empty: the full set.
        if written == _marker_text(classes) or (not written and classes == list(range(10))):
            return dataset_dir
        raise DataError(f"{dataset_dir} already holds digits with other classes "
                        f"({written.strip()}): choose another directory")
    import tensorflow as tf

    images, digit_labels = load_arrays()
    renumber = {digit: index for index, digit in enumerate(classes)}

    def fill(work):
        # Split the full set, then keep the chosen digits: a subset's held-out images
        # are held out of every other subset and of the full set too.
        for split, indices in zip(("train", "validation"), split_indices(digit_labels)):
            records = [
                tfrecord.image_example(tf.io.encode_png(images[i]).numpy(), "png",
                                       renumber[digit_labels[i]], IMAGE_SIZE, IMAGE_SIZE)
                for i in indices if digit_labels[i] in renumber
            ]
            tfrecord.write_split(work, split, records, num_shards=2)
        tfrecord.write_labels(work, {i: str(d) for i, d in enumerate(classes)})
        with open(os.path.join(work, _DONE_MARKER), "w", encoding="utf-8") as f:
            f.write(_marker_text(classes))

    # A half-written or foreign directory keeps its files; ours are added beside them.
    files.write_directory(dataset_dir, fill, merge=True)
    return dataset_dir
