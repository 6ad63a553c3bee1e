"""research/slim's own datasets, written in the layout its ``download_and_convert_data.py``
writes, so that every command line and flag file written for research/slim finds them.

- flowers, from ``flower_photos.tgz``: ``flowers_{train,validation}_0000N-of-00005.tfrecord``
  (the JPEG bytes as they are, format ``jpg``), 350 validation images;
- cifar10, from ``cifar-10-python.tar.gz``: ``cifar10_{train,test}.tfrecord`` (32x32 PNG),
  50,000 and 10,000 images;
- mnist, from the four IDX ``.gz`` files: ``mnist_{train,test}.tfrecord`` (28x28x1 PNG),
  60,000 and 10,000 images;
- ``labels.txt`` (``id:name``) for each.

Facts taken from research/slim's converters: the URLs, the file names, flowers' 350
validation images picked by ``random.seed(0); random.shuffle(...)``, its 5 shards of
``ceil(n / 5)`` images, class ids in sorted folder order.  One difference, on purpose:
upstream shuffles the photos in ``os.listdir`` order, which differs between file systems
(so two upstream runs on two machines can pick different validation images); here the
list is sorted first, so the split is the same everywhere.  MNIST's class 6 is named
``six`` (upstream's labels.txt says ``size``, a typo; only the name differs).

The archives are read in place (no extraction): a member's path never becomes a file
name here.  CIFAR-10's batches are Python pickles; they are loaded with an unpickler that
builds only numpy arrays, lists and dicts, since a pickle from the internet can
otherwise run any code.  Everything is written under temporary names and appears only
when every file of the dataset is complete (:func:`slimtune.files.write_directory`).
"""

import gzip
import io
import math
import os
import pickle
import random
import tarfile

import numpy as np

from slimtune import files
from slimtune.data import tfrecord
from slimtune.errors import DataError

FLOWERS_URL = "http://download.tensorflow.org/example_images/flower_photos.tgz"
FLOWERS_VALIDATION = 350
FLOWERS_SHARDS = 5
FLOWERS_SEED = 0
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
MNIST_URL = "http://yann.lecun.com/exdb/mnist/"
MNIST_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
               "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
MNIST_CLASSES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                 "nine")


def output_files(dataset_name):
    """The file names research/slim's converter writes for ``dataset_name``."""
    if dataset_name == "flowers":
        return [flowers_shard(split, i) for split in ("train", "validation")
                for i in range(FLOWERS_SHARDS)] + [tfrecord.LABELS_FILE]
    return [f"{dataset_name}_{split}.tfrecord" for split in ("train", "test")] + [
        tfrecord.LABELS_FILE]


def flowers_shard(split, index):
    return f"flowers_{split}_{index:05d}-of-{FLOWERS_SHARDS:05d}.tfrecord"


def downloads(dataset_name):
    """``[(url, file name)]`` research/slim downloads for ``dataset_name``."""
    if dataset_name == "flowers":
        return [(FLOWERS_URL, os.path.basename(FLOWERS_URL))]
    if dataset_name == "cifar10":
        return [(CIFAR10_URL, os.path.basename(CIFAR10_URL))]
    return [(MNIST_URL + name, name) for pair in MNIST_FILES.values() for name in pair]


# --- flowers ---------------------------------------------------------------------------

def _flower_photos(archive):
    """``(class names, {member name: class name})`` of ``flower_photos/<class>/<photo>``."""
    try:
        with tarfile.open(archive) as tar:
            members = [m.name for m in tar.getmembers() if m.isfile()]
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(f"cannot read {archive}: {e}; download it again") from None
    photos = {}
    for name in members:
        parts = name.split("/")
        if len(parts) == 3 and parts[0] == "flower_photos" and not parts[2].startswith("."):
            photos[name] = parts[1]
    if not photos:
        raise DataError(f"{archive} holds no flower_photos/<class>/<photo> files: is it "
                        f"flower_photos.tgz from {FLOWERS_URL}?")
    return sorted(set(photos.values())), photos


def flowers_splits(photo_names):
    """``{split: [member name]}``: research/slim's seeded shuffle of the sorted names, the
    first 350 for validation."""
    names = sorted(photo_names)
    random.Random(FLOWERS_SEED).shuffle(names)
    return {"train": names[FLOWERS_VALIDATION:], "validation": names[:FLOWERS_VALIDATION]}


def _write_flowers(archive, work, log):
    import tensorflow as tf

    classes, photos = _flower_photos(archive)
    ids = {name: i for i, name in enumerate(classes)}
    counts = {}
    with tarfile.open(archive) as tar:
        for split, names in flowers_splits(photos).items():
            per_shard = int(math.ceil(len(names) / FLOWERS_SHARDS))
            for shard in range(FLOWERS_SHARDS):
                chosen = names[shard * per_shard:(shard + 1) * per_shard]
                with tf.io.TFRecordWriter(os.path.join(work, flowers_shard(split, shard))) as w:
                    for name in chosen:
                        data = tar.extractfile(name).read()
                        height, width = _jpeg_size(data, name, archive)
                        w.write(tfrecord.image_example(data, "jpg", ids[photos[name]],
                                                       height, width))
            counts[split] = len(names)
            log(f"flowers {split}: {len(names)} images in {FLOWERS_SHARDS} shards")
    tfrecord.write_labels(work, dict(enumerate(classes)))
    return counts


def _jpeg_size(data, name, archive):
    import tensorflow as tf

    try:
        shape = tf.io.decode_jpeg(data, channels=3).shape
    except tf.errors.OpError as e:
        raise DataError(f"{name} in {archive} is not a readable JPEG "
                        f"({e.message.splitlines()[0]}): download the archive again") from None
    return shape[0], shape[1]


# --- cifar10 ---------------------------------------------------------------------------

class _ArraysOnly(pickle.Unpickler):
    """Builds numpy arrays and plain containers, nothing else: CIFAR-10's batches need no
    more, and a pickle that asks for anything else is refused instead of run.
    (``_codecs.encode`` turns text into bytes: how protocol 2 stores ``bytes`` when
    Python 3 writes it.)"""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray",
               "_reconstruct"), ("numpy", "ndarray"), ("numpy", "dtype"),
               ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
               ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing {module}.{name}")


def _cifar_batch(tar, member, archive):
    try:
        raw = tar.extractfile(member).read()
        batch = _ArraysOnly(io.BytesIO(raw), encoding="bytes").load()
        data, labels = np.asarray(batch[b"data"], np.uint8), list(batch[b"labels"])
    except (KeyError, AttributeError, pickle.UnpicklingError, EOFError, ValueError) as e:
        raise DataError(f"{member} in {archive} is not a CIFAR-10 python batch ({e}): is it "
                        f"cifar-10-python.tar.gz from {CIFAR10_URL}?") from None
    # Rows are 3072 bytes: the red, green and blue 32x32 planes.
    return data.reshape(len(data), 3, 32, 32).transpose(0, 2, 3, 1), labels


def _write_cifar10(archive, work, log):
    parts = {"train": [f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)],
             "test": ["cifar-10-batches-py/test_batch"]}
    counts = {}
    try:
        tar = tarfile.open(archive)
    except (tarfile.TarError, OSError) as e:
        raise DataError(f"cannot read {archive}: {e}; download it again") from None
    with tar:
        for split, members in parts.items():
            batches = [_cifar_batch(tar, m, archive) for m in members]
            images = np.concatenate([b[0] for b in batches])
            labels = [label for b in batches for label in b[1]]
            counts[split] = _write_png_records(
                os.path.join(work, f"cifar10_{split}.tfrecord"), images, labels)
            log(f"cifar10 {split}: {counts[split]} images")
    tfrecord.write_labels(work, dict(enumerate(CIFAR10_CLASSES)))
    return counts


# --- mnist -----------------------------------------------------------------------------

IDX_MAGIC = {"images": (2051, 3), "labels": (2049, 1)}  # magic number, dimensions


def read_idx(path, kind):
    """The array in a gzipped IDX file of ``kind``: images ``[N, 28, 28]`` or labels
    ``[N]``."""
    magic, dims = IDX_MAGIC[kind]
    try:
        with gzip.open(path) as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read {path}: {e}; download it again") from None
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DataError(f"{path} is not an MNIST IDX {kind} file (magic {found}, expected "
                        f"{magic}): download it again")
    header = 4 + 4 * dims
    shape = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    if len(raw) != header + int(np.prod(shape)):
        raise DataError(f"{path} is truncated: {len(raw)} bytes for {kind} of shape "
                        f"{shape}; download it again")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def _write_mnist(source_dir, work, log):
    counts = {}
    for split, (images_file, labels_file) in MNIST_FILES.items():
        images = read_idx(os.path.join(source_dir, images_file), "images")[..., np.newaxis]
        labels = read_idx(os.path.join(source_dir, labels_file), "labels")
        if len(images) != len(labels):
            raise DataError(f"{images_file} has {len(images)} images but {labels_file} "
                            f"{len(labels)} labels: download both again")
        counts[split] = _write_png_records(os.path.join(work, f"mnist_{split}.tfrecord"),
                                           images, labels)
        log(f"mnist {split}: {counts[split]} images")
    tfrecord.write_labels(work, dict(enumerate(MNIST_CLASSES)))
    return counts


def _write_png_records(path, images, labels):
    import tensorflow as tf

    height, width = images.shape[1:3]
    with tf.io.TFRecordWriter(path) as writer:
        for image, label in zip(images, labels):
            png = tf.io.encode_png(image).numpy()
            writer.write(tfrecord.image_example(png, "png", int(label), height, width))
    return len(images)


DATASETS = ("flowers", "cifar10", "mnist")


def prepare(dataset_name, dataset_dir, archive=None, log=print):
    """research/slim's ``download_and_convert_data.py``: write ``dataset_name`` into
    ``dataset_dir`` unless its files are all there already.  The source is ``archive``
    (for mnist: a folder with the four ``.gz`` files, or one of them), else the download
    research/slim makes into ``dataset_dir`` when it is there, else it is downloaded.
    Returns the images per split (``{}`` when the files existed)."""
    if dataset_name == "visualwakewords":
        raise DataError("--dataset_name=visualwakewords: its converter builds the data from "
                        "COCO 2014 annotations, which slimtune does not do; run research/slim's "
                        "download_and_convert_data.py once, then slimtune reads its "
                        "'<split>.record-*' shards by name")
    if dataset_name not in DATASETS:
        raise DataError(f"--dataset_name={dataset_name!r}: slimtune writes research/slim's "
                        f"{', '.join(DATASETS)}; for a folder of your own images use "
                        "slimtune-convert-images")
    if not dataset_dir:
        raise DataError("--dataset_dir is required: the folder to write the TFRecords into")
    wanted = output_files(dataset_name)
    if all(os.path.exists(os.path.join(dataset_dir, name)) for name in wanted):
        log(f"{dataset_name} is already in {dataset_dir}; nothing to do")
        return {}
    source = _source(dataset_name, dataset_dir, archive, log)
    counts = convert(dataset_name, source, dataset_dir, log)
    log(f"wrote {dataset_name} to {dataset_dir}: "
        + ", ".join(f"{n} {split}" for split, n in counts.items()) + " images")
    return counts


def _source(dataset_name, dataset_dir, archive, log):
    """The archive (mnist: the folder of ``.gz`` files) to convert from, downloading
    what is missing into ``dataset_dir`` as research/slim does."""
    from slimtune import download

    if archive:
        archive = os.path.expanduser(archive)
        if not os.path.exists(archive):
            raise DataError(f"--archive {archive} does not exist")
        if dataset_name == "mnist":
            return archive if os.path.isdir(archive) else os.path.dirname(archive)
        return archive
    os.makedirs(dataset_dir, exist_ok=True)
    for url, name in downloads(dataset_name):
        path = os.path.join(dataset_dir, name)
        if not os.path.exists(path):
            download.fetch(url, path, log=log, manual_hint=(
                f"; fetch {url} by hand and pass it as --archive"))
    if dataset_name == "mnist":
        return dataset_dir
    return os.path.join(dataset_dir, downloads(dataset_name)[0][1])


def convert(dataset_name, source, dataset_dir, log=print):
    """Write ``dataset_name`` from ``source`` (the archive; for mnist the folder holding
    the four ``.gz`` files) into ``dataset_dir``, beside whatever it holds; returns the
    images per split."""
    from slimtune import compat

    writer = {"flowers": _write_flowers, "cifar10": _write_cifar10,
              "mnist": _write_mnist}[dataset_name]
    counts = {}

    def fill(work):
        with compat.eager_mode():
            counts.update(writer(source, work, log))

    files.write_directory(dataset_dir, fill, merge=True)
    return counts
