"""research/slim's TFRecord layout, read and written.

A dataset directory holds shards named ``{split}-NNNNN-of-NNNNN`` (research/slim's
ImageNet/flowers converters used the same keys, with other file names: see
``FILE_PATTERNS``) and ``labels.txt`` with one ``id:name`` line per class.  Each
record is a ``tf.train.Example`` with ``image/encoded``, ``image/format``,
``image/class/label``, ``image/height`` and ``image/width``.
"""

import contextlib
import glob
import os

from slimtune import compat, files
from slimtune.errors import DataError

LABELS_FILE = "labels.txt"

# research/slim's file names for the datasets its converters produced; others use "%s-*".
FILE_PATTERNS = {
    "flowers": "flowers_%s_*.tfrecord",
    "cifar10": "cifar10_%s.tfrecord",
    "mnist": "mnist_%s.tfrecord",
    "imagenet": "%s-*",
    "visualwakewords": "%s.record-*",
}
DEFAULT_FILE_PATTERN = "%s-*"

# research/slim's images per split of the datasets it ships converters or readers for.
SPLIT_SIZES = {
    "flowers": {"train": 3320, "validation": 350},
    "cifar10": {"train": 50000, "test": 10000},
    "mnist": {"train": 60000, "test": 10000},
    "imagenet": {"train": 1281167, "validation": 50000},
    "visualwakewords": {"train": 82783, "val": 40504},
}

# Class counts research/slim hard-coded for datasets shipped without a usable labels.txt.
KNOWN_NUM_CLASSES = {"flowers": 5, "cifar10": 10, "mnist": 10, "imagenet": 1001,
                     "visualwakewords": 2}


def shard_name(split, index, num_shards):
    return f"{split}-{index:05d}-of-{num_shards:05d}"


def image_example(encoded, image_format, label, height, width):
    """One serialized ``tf.train.Example`` in slim's layout."""
    import tensorflow as tf

    def _bytes(value):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    def _int(value):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))

    features = {
        "image/encoded": _bytes(encoded),
        "image/format": _bytes(image_format.encode()),
        "image/class/label": _int(label),
        "image/height": _int(height),
        "image/width": _int(width),
    }
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def write_split(out_dir, split, records, num_shards):
    """Write serialized examples as ``num_shards`` contiguous shards.

    Shards are written under temporary names and renamed only once all are complete,
    so an interrupted run never leaves a split that looks whole.
    """
    import tensorflow as tf

    num_shards = max(1, min(num_shards, len(records)))
    per_shard = -(-len(records) // num_shards)
    written = []
    with contextlib.ExitStack() as renamed_when_all_done:
        for index in range(num_shards):
            final = os.path.join(out_dir, shard_name(split, index, num_shards))
            tmp = renamed_when_all_done.enter_context(files.staged(final))
            written.append(final)
            with tf.io.TFRecordWriter(tmp) as writer:
                for record in records[index * per_shard:(index + 1) * per_shard]:
                    writer.write(record)
    return written


def write_labels(out_dir, labels):
    """Write ``labels.txt`` (``id:name`` lines) atomically."""
    return files.write_text(os.path.join(out_dir, LABELS_FILE),
                            "".join(f"{i}:{labels[i]}\n" for i in sorted(labels)))


def read_labels(dataset_dir):
    """``{id: name}`` from ``labels.txt``, or ``{}`` when the file is absent."""
    path = os.path.join(dataset_dir, LABELS_FILE)
    if not os.path.exists(path):
        return {}
    labels = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            key, sep, name = line.partition(":")
            if not sep or not key.strip().isdigit():
                raise DataError(f"{path} line {number}: expected 'id:name', got {line!r}; "
                                "fix the line or delete labels.txt")
            labels[int(key)] = name
    return labels


def split_files(dataset_dir, split, dataset_name="", file_pattern=None):
    """The sorted shard paths of one split; a missing dir or no match is a DataError."""
    if not dataset_dir or not os.path.isdir(dataset_dir):
        raise DataError(
            f"dataset directory {dataset_dir!r} does not exist: pass --dataset_dir pointing at "
            "a folder of TFRecord shards (tools/convert_image_folder.py makes one), "
            "or use --dataset_name=digits for the built-in data")
    pattern = file_pattern or FILE_PATTERNS.get(dataset_name, DEFAULT_FILE_PATTERN)
    if "%s" in pattern:
        pattern = pattern % split
    files = sorted(f for f in glob.glob(os.path.join(dataset_dir, pattern))
                   if ".tmp" not in os.path.basename(f))
    if not files:
        found = splits_in(dataset_dir, file_pattern or FILE_PATTERNS.get(
            dataset_name, DEFAULT_FILE_PATTERN))
        if found:
            raise DataError(
                f"no shards of split {split!r} in {dataset_dir} (looked for {pattern!r}): "
                f"its splits are {', '.join(found)}: pass one with --dataset_split_name "
                "(or set --dataset_file_pattern)")
        raise DataError(
            f"no shards of split {split!r} in {dataset_dir} (looked for {pattern!r}): check "
            "--dataset_split_name and --dataset_dir, or set --dataset_file_pattern")
    return files


def splits_in(dataset_dir, pattern):
    """The split names whose shards ``pattern`` (``%s`` = the split) finds in
    ``dataset_dir``, sorted; none when the pattern has no ``%s``."""
    import fnmatch
    import re

    if "%s" not in pattern:
        return []
    head, tail = pattern.split("%s", 1)
    # fnmatch.translate ends each part with \Z: the head's is cut off.
    shape = re.compile(fnmatch.translate(head)[:-2] + "(.+?)"
                       + fnmatch.translate(tail.replace("%s", "*")))
    names = set()
    for path in glob.glob(os.path.join(dataset_dir, pattern.replace("%s", "*"))):
        base = os.path.basename(path)
        match = shape.match(base)
        if match and ".tmp" not in base:
            names.add(match.group(1))
    return sorted(names)


def count_records(files):
    """Records in the shards ``files``: read in parallel and counted inside TensorFlow (a
    Python loop over 1024 small shards took 24 s)."""
    import tensorflow as tf

    if not files:
        return 0
    with compat.eager_mode():  # also when called while a graph is being built
        data = tf.data.TFRecordDataset(list(files), num_parallel_reads=min(16, len(files)))
        return int(data.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))


def split_size(dataset_name, split, paths, log=None):
    """The images in one split: research/slim's own size for its datasets
    (:data:`SPLIT_SIZES`, as its dataset modules hard-code them, so ImageNet's 1,281,167
    training records are not read before step 1), else the shards counted once and the
    count kept in the cache, keyed by the files' paths, sizes and modification times (a
    changed or added shard is counted again)."""
    known = SPLIT_SIZES.get(dataset_name, {}).get(split)
    if known is not None:
        if log:
            log(f"{dataset_name}/{split}: {known} images (research/slim's size of this "
                "split; the records are not counted)")
        return known
    return _counted(paths)


def _counted(paths):
    import hashlib
    import json

    from slimtune import cache

    stats = [(os.path.abspath(p), os.path.getsize(p), os.stat(p).st_mtime_ns) for p in paths]
    key = hashlib.sha256(json.dumps(stats).encode()).hexdigest()[:32]
    record = cache.cache_dir("split_sizes", key + ".json")
    try:
        with open(record, encoding="utf-8") as f:
            return int(json.load(f)["images"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    count = count_records(paths)
    try:
        os.makedirs(os.path.dirname(record), exist_ok=True)
        files.write_json(record, {"images": count, "shards": len(paths),
                                  "first": stats[0][0] if stats else None})
    except OSError:
        pass  # a read-only cache: count again next time
    return count


def parse_example(serialized):
    """Decode one record to ``(uint8 image [H, W, 3], int64 label)``."""
    import tensorflow as tf

    features = tf.io.parse_single_example(serialized, {
        "image/encoded": tf.io.FixedLenFeature([], tf.string),
        "image/format": tf.io.FixedLenFeature([], tf.string, default_value="jpeg"),
        "image/class/label": tf.io.FixedLenFeature([], tf.int64),
    })
    image = tf.io.decode_image(features["image/encoded"], channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image, features["image/class/label"]


def locate_bad_record(files, num_classes, labels_offset=0):
    """Scan shards eagerly for the first record that cannot be used.

    Called after the input pipeline failed, to turn TensorFlow's context-free decode
    error into one that names the shard and record.  Returns a message or ``None``.
    """
    import tensorflow as tf

    with compat.eager_mode():
        return _first_bad_record(tf, files, num_classes, labels_offset)


def _first_bad_record(tf, files, num_classes, labels_offset):
    for path in files:
        try:
            records = list(tf.data.TFRecordDataset(path).as_numpy_iterator())
        except tf.errors.OpError as e:
            return f"shard {path} is truncated or not a TFRecord file ({e.message.splitlines()[0]})"
        for index, record in enumerate(records):
            try:
                _, label = parse_example(record)
            except (tf.errors.OpError, ValueError) as e:
                reason = str(getattr(e, "message", e)).splitlines()[0]
                return f"record {index} of shard {path} cannot be decoded: {reason}"
            label = int(label) - labels_offset
            if not 0 <= label < num_classes:
                return (f"record {index} of shard {path} has label {label + labels_offset}, "
                        f"outside {labels_offset}..{num_classes - 1 + labels_offset} "
                        f"(num_classes={num_classes}, labels_offset={labels_offset})")
    return None
