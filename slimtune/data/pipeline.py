"""Open a dataset split and turn it into batches of preprocessed images.

``open_split`` resolves ``--dataset_name/--dataset_dir/--dataset_split_name`` to shard
files and a class count; ``batches`` builds the ``tf.data`` pipeline (parallel decode,
shuffle, prefetch).  Each element keeps the shard path and record index it came from,
so a bad label can be reported by name.
"""

import contextlib
import dataclasses
import os

from slimtune.data import digits, tfrecord
from slimtune.data.preprocessing import preprocess
from slimtune.errors import DataError, UsageError

BUILTIN = {digits.NAME: digits}


@dataclasses.dataclass
class Split:
    dataset_name: str
    dataset_dir: str
    split: str
    files: list
    num_classes: int  # classes in the data, before labels_offset
    labels: dict

    _num_samples: int = None

    @property
    def num_samples(self):
        """Images in the split: research/slim's size for its datasets, else counted once
        (:func:`tfrecord.split_size`)."""
        if self._num_samples is None:
            self._num_samples = tfrecord.split_size(self.dataset_name, self.split, self.files)
        return self._num_samples


def open_split(dataset_name, dataset_dir, split, file_pattern=None):
    """Resolve a split; a built-in dataset is written to ``dataset_dir`` (or the cache)."""
    if dataset_name in BUILTIN:
        dataset_dir = BUILTIN[dataset_name].ensure(dataset_dir or None)
    files = tfrecord.split_files(dataset_dir, split, dataset_name, file_pattern)
    labels = tfrecord.read_labels(dataset_dir)
    if labels:
        num_classes = max(labels) + 1
    elif dataset_name in tfrecord.KNOWN_NUM_CLASSES:
        num_classes = tfrecord.KNOWN_NUM_CLASSES[dataset_name]
    else:
        raise DataError(
            f"{os.path.join(dataset_dir, tfrecord.LABELS_FILE)} is missing, so the number of "
            "classes is unknown: write one 'id:name' line per class")
    return Split(dataset_name, dataset_dir, split, files, num_classes, labels)


@dataclasses.dataclass(frozen=True)
class Parallelism:
    """research/slim's ``--num_readers`` (shard files read at once: the interleave's cycle
    length and parallel calls) and ``--num_preprocessing_threads`` (images decoded and
    preprocessed at once: the map's parallel calls).  None: 4 files at a time, and
    tf.data's AUTOTUNE for both parallel calls."""

    num_readers: int = None
    num_threads: int = None


_parallelism = Parallelism()


@contextlib.contextmanager
def parallelism(num_readers=None, num_threads=None):
    """Within it, :func:`batches` reads and preprocesses with this parallelism (what a
    command sets once from its flags for every pipeline its run builds)."""
    global _parallelism
    for name, value in (("num_readers", num_readers),
                        ("num_preprocessing_threads", num_threads)):
        if value is not None and value < 1:
            raise UsageError(f"--{name}={value} must be 1 or more")
    before, _parallelism = _parallelism, Parallelism(num_readers, num_threads)
    try:
        yield
    finally:
        _parallelism = before


def batches(split, preprocessing_name, image_size, batch_size, is_training,
            num_classes, labels_offset=0, num_epochs=None, seed=None, deterministic=None,
            augment=None, skip_batches=0, grayscale=False):
    """A ``tf.data.Dataset`` of ``(images [B,S,S,3] float32, labels [B] int64)``
    (``[B,S,S,1]`` with ``grayscale``: research/slim's ``--use_grayscale``).

    Training data is shuffled (with ``seed``) and repeated (forever, or ``num_epochs``
    times); eval data is read once in order, and its last batch may be short.  The
    parallel reads and maps keep their input order for eval data and for ``deterministic``
    training data (default: when seeded); otherwise they hand on whatever is ready first.
    Labels are shifted by ``-labels_offset`` and checked against ``num_classes``: an
    out-of-range label fails with a message naming the shard and record.  ``augment``
    picks the training (random crops, flips) or evaluation preprocessing; by default it
    follows ``is_training``.  ``skip_batches`` starts the training data that many batches
    in (a resumed run reads on where the interrupted one stopped; the records are skipped
    before decoding).  The reads' and maps' parallelism is :func:`parallelism`'s (the
    readers also set how many shard files interleave, so the order of a seeded run's
    data depends on it; the threads never change the order).  Seeded training data draws each image's augmentation from a
    stateless seed of (``seed``, its shard file, its place in the stream), so a resumed
    run augments every image as the uninterrupted run did, to the bit.
    """
    import tensorflow as tf

    if deterministic is None:
        deterministic = seed is not None
    augment = is_training if augment is None else augment
    in_order = not is_training or deterministic

    files = tf.data.Dataset.from_tensor_slices(split.files)
    if is_training:
        files = files.shuffle(len(split.files), seed=seed)

    def records_of(path):
        return tf.data.TFRecordDataset(path).enumerate().map(
            lambda index, record: (path, index, record))

    readers, threads = _parallelism.num_readers, _parallelism.num_threads
    cycle = min(readers or 4, len(split.files))
    data = files.interleave(records_of, cycle_length=cycle,
                            num_parallel_calls=cycle if readers else tf.data.AUTOTUNE,
                            deterministic=in_order)
    keyed = is_training and augment and seed is not None
    if is_training:
        data = data.shuffle(2048, seed=seed).repeat(num_epochs)
        if keyed:  # each record's place in the stream, counted before the skip
            data = data.enumerate().map(lambda place, element: (*element, place))
        if skip_batches:
            data = data.skip(skip_batches * batch_size)
    load = _loader(preprocessing_name, image_size, num_classes, labels_offset, augment,
                   seed if keyed else None, grayscale)
    data = data.map(load, num_parallel_calls=threads or tf.data.AUTOTUNE,
                    deterministic=in_order)
    data = data.batch(batch_size, drop_remainder=is_training)
    return data.prefetch(tf.data.AUTOTUNE)


def _loader(preprocessing_name, image_size, num_classes, labels_offset, augment, seed,
            grayscale=False):
    """The map from a record ``(shard path, index in the shard, bytes[, place in the
    stream])`` to ``(image, label)``; with ``seed`` (and a place), the augmentation's
    stateless seed is (``seed`` + the shard path's hash, the place)."""
    import tensorflow as tf

    def load(path, index, record, place=None):
        image, label = tfrecord.parse_example(record)
        label = label - labels_offset
        check = tf.debugging.Assert(
            tf.logical_and(label >= 0, label < num_classes),
            ["slimtune: label", label + labels_offset, "outside the class range in shard",
             path, "record", index, "labels_offset", labels_offset,
             "num_classes", num_classes], name="label_in_range")
        with tf.control_dependencies([check]):
            label = tf.identity(label)
        key = None
        if seed is not None:
            key = tf.stack([tf.strings.to_hash_bucket_fast(path, 2 ** 31) + seed, place])
        image = preprocess(preprocessing_name, image, image_size, image_size, augment, key,
                           grayscale=grayscale)
        return image, label

    return load


def load_eval_arrays(dataset_name, dataset_dir, split_name, preprocessing_name, image_size,
                     limit=None, batch_size=60, grayscale=False):
    """``(images float32 [N,S,S,3], labels int64 [N])`` of a split, preprocessed for
    evaluation, at most ``limit`` images: what checks that need numpy arrays run on
    (``[N,S,S,1]`` with ``grayscale``)."""
    import numpy as np

    split = open_split(dataset_name, dataset_dir, split_name)
    data = batches(split, preprocessing_name, image_size, batch_size, is_training=False,
                   num_classes=split.num_classes, grayscale=grayscale)
    images, labels, count = [], [], 0
    for x, y in data:
        images.append(x.numpy())
        labels.append(y.numpy())
        count += len(y)
        if limit and count >= limit:
            break
    images, labels = np.concatenate(images), np.concatenate(labels)
    return images[:limit].astype(np.float32), labels[:limit]


def load_images(paths, preprocessing_name, size, grayscale=False):
    """Image files decoded and preprocessed for evaluation: float32 ``[N,S,S,3]``
    (``[N,S,S,1]`` with ``grayscale``)."""
    import numpy as np
    import tensorflow as tf

    batch = []
    for path in paths:
        try:
            image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        except (tf.errors.OpError, ValueError) as e:
            raise UsageError(f"cannot decode image {path}: {str(e).splitlines()[0]}; pass "
                             "JPEG, PNG, GIF or BMP files") from None
        batch.append(preprocess(preprocessing_name, image, size, size,
                                is_training=False, grayscale=grayscale).numpy())
    return np.stack(batch).astype(np.float32)
