"""research/slim's datasets written in research/slim's layout (slimtune-download-data),
from tiny archives in the real formats: flower_photos.tgz (JPEGs in class folders), the
CIFAR-10 python pickles, MNIST's gzipped IDX files.  Each is converted, checked file by
file and image by image, then trained on by name as research/slim's scripts do."""

import gzip
import io
import os
import pickle
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import tensorflow as tf

from test_register_architecture import NAME as TINY, _register as register_tiny_net

from slimtune import train
from slimtune.data import pipeline, tfrecord, upstream
from slimtune.errors import DataError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLOWERS = ("daisy", "dandelion", "roses", "sunflowers", "tulips")
PHOTOS = 357  # 350 for validation, 7 for training


def _quiet(line):
    pass


def _jpeg(rng):
    return tf.io.encode_jpeg(rng.integers(0, 256, (6 + rng.integers(4), 9, 3), np.uint8)).numpy()


def _add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def flower_photos(tmp_path_factory):
    """flower_photos.tgz as published: flower_photos/<class>/<photo>.jpg and a LICENSE."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("flowers_src") / "flower_photos.tgz"
    with tarfile.open(path, "w:gz") as tar:
        _add(tar, "flower_photos/LICENSE.txt", b"CC-BY\n")
        for i in range(PHOTOS):
            _add(tar, f"flower_photos/{FLOWERS[i % 5]}/{1000 + i}_photo.jpg", _jpeg(rng))
    return str(path)


def _records(path):
    return list(tf.data.TFRecordDataset(path).as_numpy_iterator())


def _example(record):
    features = tf.train.Example.FromString(record).features.feature
    return ({k: features[k].bytes_list.value[0] for k in ("image/encoded", "image/format")},
            {k: features[k].int64_list.value[0]
             for k in ("image/class/label", "image/height", "image/width")})


def test_flowers_is_written_as_research_slim_writes_it(flower_photos, tmp_path):
    out = tmp_path / "flowers"
    counts = upstream.prepare("flowers", str(out), archive=flower_photos, log=_quiet)
    assert counts == {"train": PHOTOS - 350, "validation": 350}
    assert sorted(os.listdir(out)) == sorted(upstream.output_files("flowers"))
    assert (out / "labels.txt").read_text() == "".join(
        f"{i}:{name}\n" for i, name in enumerate(FLOWERS))
    # The validation images are the first 350 of the seeded shuffle, 70 per shard, and
    # each record holds the photo's own JPEG bytes.
    with tarfile.open(flower_photos) as tar:
        names = [m.name for m in tar.getmembers() if m.name.endswith(".jpg")]
        expected = upstream.flowers_splits(names)["validation"]
        shards = [_records(out / upstream.flowers_shard("validation", i)) for i in range(5)]
        assert [len(s) for s in shards] == [70] * 5
        first, ints = _example(shards[0][0])
        assert first["image/encoded"] == tar.extractfile(expected[0]).read()
    assert first["image/format"] == b"jpg"
    assert ints["image/class/label"] == FLOWERS.index(expected[0].split("/")[1])
    assert ints["image/width"] == 9
    # Run again: the files are there, nothing is rewritten.
    assert upstream.prepare("flowers", str(out), archive=flower_photos, log=_quiet) == {}


def _cifar_archive(path, rng):
    """cifar-10-python.tar.gz's members: five training batches and a test batch."""
    sizes = {f"data_batch_{i}": 3 for i in range(1, 6)}
    sizes["test_batch"] = 4
    batches = {}
    with tarfile.open(path, "w:gz") as tar:
        for name, n in sizes.items():
            batch = {b"batch_label": name.encode(), b"labels": [int(x) for x in rng.integers(0, 10, n)],
                     b"data": rng.integers(0, 256, (n, 3072), np.uint8),
                     b"filenames": [b"x.png"] * n}
            batches[name] = batch
            _add(tar, f"cifar-10-batches-py/{name}", pickle.dumps(batch, protocol=2))
    return batches


def test_cifar10_from_the_python_pickles(tmp_path):
    batches = _cifar_archive(tmp_path / "cifar-10-python.tar.gz", np.random.default_rng(1))
    out = tmp_path / "cifar10"
    counts = upstream.prepare("cifar10", str(out), archive=str(tmp_path / "cifar-10-python.tar.gz"),
                              log=_quiet)
    assert counts == {"train": 15, "test": 4}
    assert sorted(os.listdir(out)) == ["cifar10_test.tfrecord", "cifar10_train.tfrecord",
                                       "labels.txt"]
    assert (out / "labels.txt").read_text().splitlines()[:2] == ["0:airplane", "1:automobile"]
    records = _records(out / "cifar10_train.tfrecord")
    strings, ints = _example(records[3])  # the second batch's first image
    image = tf.io.decode_png(strings["image/encoded"]).numpy()
    planes = batches["data_batch_2"][b"data"][0].reshape(3, 32, 32)
    assert strings["image/format"] == b"png" and image.shape == (32, 32, 3)
    np.testing.assert_array_equal(image, planes.transpose(1, 2, 0))  # lossless: same bytes
    assert ints["image/class/label"] == batches["data_batch_2"][b"labels"][0]


def test_a_pickle_that_asks_for_more_than_arrays_is_refused(tmp_path):
    class Runs:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        _add(tar, "cifar-10-batches-py/data_batch_1", pickle.dumps({b"data": Runs()}))
    with pytest.raises(DataError, match="refusing posix.system|refusing os.system"):
        upstream.prepare("cifar10", str(tmp_path / "out"), archive=str(path), log=_quiet)
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")


def _idx(path, array, magic):
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _mnist_files(folder, rng):
    folder.mkdir()
    arrays = {}
    for split, n in (("train", 6), ("test", 5)):
        images_file, labels_file = upstream.MNIST_FILES[split]
        arrays[split] = (rng.integers(0, 256, (n, 28, 28)), rng.integers(0, 10, n))
        _idx(folder / images_file, arrays[split][0], 2051)
        _idx(folder / labels_file, arrays[split][1], 2049)
    return arrays


def test_mnist_from_the_idx_files_by_the_command(tmp_path):
    arrays = _mnist_files(tmp_path / "downloads", np.random.default_rng(2))
    out = tmp_path / "mnist"
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "download_and_convert_data.py"),
         "--dataset_name=mnist", f"--dataset_dir={out}", f"--archive={tmp_path / 'downloads'}"],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(os.listdir(out)) == ["labels.txt", "mnist_test.tfrecord", "mnist_train.tfrecord"]
    strings, ints = _example(_records(out / "mnist_test.tfrecord")[4])
    image = tf.io.decode_png(strings["image/encoded"]).numpy()
    assert image.shape == (28, 28, 1) and ints["image/height"] == 28
    np.testing.assert_array_equal(image[..., 0], arrays["test"][0][4])
    assert ints["image/class/label"] == arrays["test"][1][4]
    bad = tmp_path / "downloads" / upstream.MNIST_FILES["test"][1]
    bad.write_bytes(gzip.compress(b"\x00\x00\x08\x03rest"))
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "download_and_convert_data.py"),
         "--dataset_name=mnist", f"--dataset_dir={tmp_path / 'again'}",
         f"--archive={tmp_path / 'downloads'}"],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 1 and "t10k-labels-idx1-ubyte.gz is not an MNIST IDX labels file" in result.stderr.splitlines()[0]
    assert not (tmp_path / "again").exists() or not os.listdir(tmp_path / "again")


def test_visualwakewords_shards_are_found_by_name(tmp_path):
    png = tf.io.encode_png(np.zeros((4, 4, 3), np.uint8)).numpy()
    for split in ("train", "val"):
        with tf.io.TFRecordWriter(str(tmp_path / f"{split}.record-00000-of-00001")) as w:
            w.write(tfrecord.image_example(png, "png", 1, 4, 4))
    split = pipeline.open_split("visualwakewords", str(tmp_path), "val")
    assert [os.path.basename(f) for f in split.files] == ["val.record-00000-of-00001"]
    assert split.num_classes == 2
    with pytest.raises(DataError, match="COCO"):
        upstream.prepare("visualwakewords", str(tmp_path), log=_quiet)


@pytest.mark.parametrize("dataset_name", ["flowers", "cifar10", "mnist"])
def test_trained_on_by_name(dataset_name, flower_photos, tmp_path):
    """Each converted dataset trains by its research/slim name (two slim-engine steps)."""
    register_tiny_net()
    out = tmp_path / dataset_name
    rng = np.random.default_rng(3)
    if dataset_name == "flowers":
        source = flower_photos
    elif dataset_name == "cifar10":
        source = str(tmp_path / "cifar-10-python.tar.gz")
        _cifar_archive(source, rng)
    else:
        _mnist_files(tmp_path / "downloads", rng)
        source = str(tmp_path / "downloads")
    upstream.prepare(dataset_name, str(out), archive=source, log=_quiet)
    result = train.train(train.TrainConfig(
        train_dir=str(tmp_path / "run"), dataset_name=dataset_name, dataset_dir=str(out),
        model_name=TINY, preprocessing_name="lenet", train_image_size=32, batch_size=2,
        max_number_of_steps=2, learning_rate=1e-3, seed=0), log=_quiet)
    assert result.global_step == 2
