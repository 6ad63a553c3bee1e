"""slimtune.data: the built-in digits, slim's TFRecord layout, preprocessing, the input
pipeline and the image-folder converter."""

import os

import numpy as np
import pytest
import tensorflow as tf

from slimtune.data import digits, image_folder, pipeline, preprocessing, tfrecord
from slimtune.errors import DataError, UsageError


def _records(files):
    return [r for f in files for r in tf.data.TFRecordDataset(f).as_numpy_iterator()]


def _decode_all(files):
    data = tf.data.TFRecordDataset(files).map(tfrecord.parse_example)
    return [(image, int(label)) for image, label in data.as_numpy_iterator()]


def _png_record(label, value=0, size=(6, 5)):
    image = np.full(size + (3,), value, dtype=np.uint8)
    return tfrecord.image_example(tf.io.encode_png(image).numpy(), "png", label, *size)


def _write_dataset(root, labels, split="train", num_shards=1, records=None, num_classes=None):
    """A tiny dataset with one grey PNG per label (or the given records) and labels.txt."""
    os.makedirs(root, exist_ok=True)
    records = records or [_png_record(label, value=10 * i) for i, label in enumerate(labels)]
    files = tfrecord.write_split(str(root), split, records, num_shards)
    count = num_classes or max(labels) + 1
    tfrecord.write_labels(str(root), {i: f"class{i}" for i in range(count)})
    return files


# --- the built-in digits -------------------------------------------------------------


def test_digits_has_both_splits_with_every_class(digits_dir):
    """The quickstart trains on 'train' and evaluates on 'validation': both must hold all
    1797 digits between them, split per class so validation sees every digit."""
    train = _decode_all(tfrecord.split_files(digits_dir, "train"))
    validation = _decode_all(tfrecord.split_files(digits_dir, "validation"))
    assert len(train) + len(validation) == 1797
    assert len(validation) == pytest.approx(0.2 * 1797, abs=10)
    assert tfrecord.read_labels(digits_dir) == {i: str(i) for i in range(10)}
    assert {label for _, label in validation} == set(range(10))
    assert {label for _, label in train} == set(range(10))
    images = np.stack([image for image, _ in train[:50]])
    assert images.shape == (50, 32, 32, 3) and images.dtype == np.uint8
    assert len({image.tobytes() for image in images}) > 1
    assert images.max() > 200 and images.min() == 0  # real strokes on a dark background


def test_digits_ensure_is_idempotent(digits_dir):
    """A second ensure() must find the COMPLETE marker and rewrite nothing."""
    before = {name: os.stat(os.path.join(digits_dir, name)).st_mtime_ns
              for name in os.listdir(digits_dir)}
    assert digits.ensure() == digits_dir
    after = {name: os.stat(os.path.join(digits_dir, name)).st_mtime_ns
             for name in os.listdir(digits_dir)}
    assert after == before


def test_a_digits_subset_is_a_dataset_of_its_own(digits_dir, tmp_path):
    """The main job's "new label set": digits 7, 5, 9 become classes 0, 1, 2, named after
    the digits, and their held-out images are exactly the full set's held-out 7s, 5s, 9s."""
    subset = digits.ensure(str(tmp_path / "d759"), classes=[7, 5, 9])
    assert tfrecord.read_labels(subset) == {0: "7", 1: "5", 2: "9"}
    full = _decode_all(tfrecord.split_files(digits_dir, "validation"))
    part = _decode_all(tfrecord.split_files(subset, "validation"))
    expected = sorted((image.tobytes(), [7, 5, 9].index(label)) for image, label in full
                      if label in (7, 5, 9))
    assert sorted((image.tobytes(), label) for image, label in part) == expected
    assert digits.ensure(subset, classes=[7, 5, 9]) == subset  # idempotent
    with pytest.raises(DataError, match="other classes"):
        digits.ensure(subset, classes=[0, 1])
    with pytest.raises(DataError, match="distinct"):
        digits.ensure(str(tmp_path / "bad"), classes=[3, 3])


# --- TFRecord layout -----------------------------------------------------------------


def test_write_split_leaves_no_temporary_files(tmp_path):
    """Shards are renamed into place; nothing named .tmp may remain."""
    files = tfrecord.write_split(str(tmp_path), "train", [_png_record(i) for i in range(5)], 2)
    assert sorted(os.listdir(tmp_path)) == ["train-00000-of-00002", "train-00001-of-00002"]
    assert [os.path.basename(f) for f in files] == sorted(os.listdir(tmp_path))
    assert tfrecord.count_records(files) == 5


def test_split_sizes_are_known_or_counted_once(tmp_path, monkeypatch):
    """research/slim's datasets have its sizes, with no pass over the records (ImageNet's
    1,281,167); another folder is counted once, cached by its files' names, sizes and
    times, and counted again when a shard changes."""
    monkeypatch.setenv("SLIMTUNE_CACHE", str(tmp_path / "cache"))
    files = tfrecord.write_split(str(tmp_path), "train", [_png_record(i) for i in range(5)], 2)
    counts = []
    real = tfrecord.count_records
    monkeypatch.setattr(tfrecord, "count_records", lambda f: counts.append(f) or real(f))
    assert tfrecord.split_size("imagenet", "train", files) == 1281167
    assert tfrecord.split_size("flowers", "validation", files) == 350
    assert counts == []
    assert [tfrecord.split_size("pets", "train", files) for _ in range(2)] == [5, 5]
    assert len(counts) == 1
    (tmp_path / "more").mkdir()
    tfrecord.write_split(str(tmp_path / "more"), "train", [_png_record(i) for i in range(3)], 1)
    os.replace(tmp_path / "more" / "train-00000-of-00001", files[1])  # a shard replaced
    assert tfrecord.split_size("pets", "train", files) == 3 + 3 and len(counts) == 2


def test_write_split_that_fails_midway_leaves_nothing(tmp_path):
    """An interrupted write must not leave a split that looks whole (or .tmp debris)."""
    with pytest.raises(TypeError):
        tfrecord.write_split(str(tmp_path), "train", [_png_record(0), None], 2)
    assert os.listdir(tmp_path) == []


def test_split_files_on_a_missing_dir_names_it_and_the_fix(tmp_path):
    """The first line a user sees must say which directory and which flag to fix."""
    missing = str(tmp_path / "nowhere")
    with pytest.raises(DataError) as info:
        tfrecord.split_files(missing, "train")
    assert missing in str(info.value) and "--dataset_dir" in str(info.value)


def test_split_files_without_the_split_names_dir_and_the_fix(tmp_path):
    _write_dataset(tmp_path, [0, 1], split="train")
    with pytest.raises(DataError) as info:
        tfrecord.split_files(str(tmp_path), "validation")
    message = str(info.value)
    assert str(tmp_path) in message and "'validation'" in message
    assert "--dataset_split_name" in message


def test_read_labels_rejects_a_malformed_line(tmp_path):
    """A labels.txt line without 'id:' would silently shift every class id."""
    (tmp_path / "labels.txt").write_text("0:cat\ndog\n")
    with pytest.raises(DataError, match="line 2"):
        tfrecord.read_labels(str(tmp_path))


def test_read_labels_of_a_dir_without_labels_is_empty(tmp_path):
    assert tfrecord.read_labels(str(tmp_path)) == {}


# --- preprocessing -------------------------------------------------------------------

_PHOTO = None


def _photo(height=120, width=150):
    """A crop of a real photo: preprocessing bugs hide in flat or random images."""
    global _PHOTO
    if _PHOTO is None:
        from skimage import data

        _PHOTO = data.astronaut()
    return tf.constant(_PHOTO[:height, :width])


# name -> (lowest, highest) possible output value, per channel where it differs.
_RANGES = {
    "inception": (np.full(3, -1.0), np.full(3, 1.0)),
    "vgg": (-np.array(preprocessing.VGG_MEANS), 255.0 - np.array(preprocessing.VGG_MEANS)),
    "lenet": (np.full(3, -1.0), np.full(3, 127.0 / 128.0)),
    "densenet": (-np.array(preprocessing.VGG_MEANS) * preprocessing.DENSENET_SCALE,
                 (255.0 - np.array(preprocessing.VGG_MEANS)) * preprocessing.DENSENET_SCALE),
    # Standardised to mean 0, variance 1 over the 48x40x3 values: |x| < sqrt(n).
    "cifarnet": (np.full(3, -np.sqrt(48 * 40 * 3)), np.full(3, np.sqrt(48 * 40 * 3))),
}


def test_cifarnet_standardises_each_image_and_seeded_draws_repeat():
    """research/slim's cifarnet: eval crops or pads to size; both modes standardise the
    image (mean 0, variance 1); training pads 4, crops, flips and jitters, the same for
    the same stateless seed."""
    image = _photo(32, 32)
    out = preprocessing.preprocess("cifarnet", image, 32, 32, is_training=False).numpy()
    assert abs(out.mean()) < 1e-4 and abs(out.std() - 1) < 1e-3
    seed = tf.constant([3, 7], tf.int64)
    draws = [preprocessing.preprocess("cifarnet", image, 32, 32, True, seed).numpy()
             for _ in range(2)]
    other = preprocessing.preprocess("cifarnet", image, 32, 32, True, seed + 1).numpy()
    np.testing.assert_array_equal(draws[0], draws[1])  # the same op, the same seed
    assert not np.array_equal(draws[0], other) and abs(draws[0].std() - 1) < 1e-3


@pytest.mark.parametrize("alias,meaning", [("resnet_v2_50", "vgg"), ("inception_v3", "inception"),
                                           ("mobilenet_v1", "inception"), ("vgg_a", "vgg")])
def test_research_slim_factory_names_mean_what_they_mean_there(alias, meaning):
    """--preprocessing_name=<a network's name>, as research/slim's preprocessing_factory."""
    image = _photo()
    got = preprocessing.preprocess(alias, image, 40, 40, is_training=False).numpy()
    want = preprocessing.preprocess(meaning, image, 40, 40, is_training=False).numpy()
    np.testing.assert_array_equal(got, want)
    assert preprocessing.canonical(alias) == meaning


def test_resnet_v2_defaults_are_kept_and_their_difference_is_named():
    """slimtune's resnet_v2 default is inception at 299 (the published checkpoints');
    research/slim's factory would use vgg at 224: one line says so, none for resnet_v1."""
    from slimtune import metadata

    run = metadata.resolve(metadata.RunInfo(model_name="resnet_v2_50"))
    assert (run.preprocessing, run.image_size) == ("inception", 299)
    note = preprocessing.upstream_difference("resnet_v2_50", run.preprocessing, run.image_size)
    assert note.startswith("resnet_v2_50: inception preprocessing at 299 px") and "vgg at 224" in note
    assert preprocessing.upstream_difference("resnet_v1_50", "vgg", 224) is None
    aliased = metadata.resolve(metadata.RunInfo(model_name="resnet_v2_50",
                                                preprocessing="resnet_v2_50"))
    assert aliased.preprocessing == "vgg"  # recorded as what it means


def test_densenet_eval_is_vgg_eval_times_0_017():
    """pudae's DenseNet checkpoints: (RGB - VGG means) * 0.017, VGG's framing."""
    image = _photo(300, 256)
    vgg = preprocessing.preprocess("vgg", image, 224, 224, is_training=False).numpy()
    densenet = preprocessing.preprocess("densenet", image, 224, 224, is_training=False).numpy()
    np.testing.assert_allclose(densenet, vgg * 0.017, rtol=1e-6)


@pytest.mark.parametrize("is_training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", preprocessing.NAMES)
def test_preprocessing_shape_and_range(name, is_training):
    """Every preprocessing returns float32 [h, w, 3] in the range its network expects."""
    tf.random.set_seed(0)
    out = preprocessing.preprocess(name, _photo(), 48, 40, is_training).numpy()
    assert out.shape == (48, 40, 3) and out.dtype == np.float32
    low, high = _RANGES[name]
    assert np.all(out >= low - 1e-4) and np.all(out <= high + 1e-4)
    assert out.std() > 0.01


@pytest.mark.parametrize("height,width", [(256, 300), (300, 256), (320, 480)])
def test_vgg_eval_is_resize_shorter_side_then_central_crop(height, width):
    """research/slim's VGG eval: shorter side to 256, central 224x224 crop, minus means."""
    image = _photo(height, width)
    scale = 256.0 / min(height, width)
    new_h, new_w = round(height * scale), round(width * scale)
    resized = tf.image.resize(tf.cast(image, tf.float32), [new_h, new_w], method="bilinear")
    cropped = tf.image.crop_to_bounding_box(resized, (new_h - 224) // 2, (new_w - 224) // 2,
                                            224, 224)
    expected = (cropped - tf.constant(preprocessing.VGG_MEANS)).numpy()
    actual = preprocessing.preprocess("vgg", image, 224, 224, is_training=False).numpy()
    np.testing.assert_allclose(actual, expected, atol=1e-3)


def test_unknown_preprocessing_is_a_usage_error_listing_choices():
    with pytest.raises(UsageError, match="inception, lenet, vgg"):
        preprocessing.preprocess("alexnet", _photo(), 32, 32, is_training=False)


# --- the input pipeline --------------------------------------------------------------


def test_batches_of_digits_have_the_right_shapes(digits_dir):
    split = pipeline.open_split("digits", digits_dir, "validation")
    assert split.num_classes == 10 and split.num_samples == len(
        _records(tfrecord.split_files(digits_dir, "validation")))
    eval_data = pipeline.batches(split, "lenet", 32, 64, is_training=False, num_classes=10)
    sizes = []
    for images, labels in eval_data:
        assert images.dtype == tf.float32 and images.shape[1:] == (32, 32, 3)
        assert labels.dtype == tf.int64 and labels.shape == images.shape[:1]
        sizes.append(int(labels.shape[0]))
    assert sum(sizes) == split.num_samples  # eval reads every record exactly once
    train_data = pipeline.batches(split, "inception", 24, 16, is_training=True,
                                  num_classes=10, seed=0)
    images, labels = next(iter(train_data))
    assert images.shape == (16, 24, 24, 3) and labels.shape == (16,)


def test_batches_shift_labels_by_labels_offset(tmp_path):
    """Datasets with a background class 0 (ImageNet's 1001) are read with labels_offset=1."""
    _write_dataset(tmp_path, [1, 2, 3, 1], num_classes=4)
    split = pipeline.open_split("", str(tmp_path), "train")
    data = pipeline.batches(split, "lenet", 8, 4, is_training=False, num_classes=3,
                            labels_offset=1)
    labels = np.concatenate([labels.numpy() for _, labels in data])
    assert labels.tolist() == [0, 1, 2, 0]


def test_out_of_range_label_fails_naming_the_shard(tmp_path):
    """TensorFlow's own error would not say which file holds the bad label."""
    files = _write_dataset(tmp_path, [0, 1, 5, 2], num_classes=3)
    split = pipeline.Split("", str(tmp_path), "train", files, 3, {})
    data = pipeline.batches(split, "lenet", 8, 2, is_training=False, num_classes=3)
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        for _ in data:
            pass
    assert files[0] in info.value.message


def test_locate_bad_record_names_a_corrupt_image(tmp_path):
    records = [_png_record(0), _png_record(1),
               tfrecord.image_example(b"not an image at all", "png", 1, 6, 5),
               _png_record(0)]
    files = _write_dataset(tmp_path, [0, 1, 1, 0], num_shards=2, records=records)
    message = tfrecord.locate_bad_record(files, num_classes=2)
    assert message.startswith(f"record 0 of shard {files[1]} cannot be decoded")


@pytest.mark.parametrize("bad_label", [9, 0], ids=["above", "below"])
def test_locate_bad_record_names_an_out_of_range_label(tmp_path, bad_label):
    """With labels_offset=1 the valid stored labels are 1..num_classes; 0 is out too."""
    files = _write_dataset(tmp_path, [1, 2, 3, bad_label], num_shards=2, num_classes=4)
    message = tfrecord.locate_bad_record(files, num_classes=3, labels_offset=1)
    assert message.startswith(
        f"record 1 of shard {files[1]} has label {bad_label}, outside 1..3")


def test_locate_bad_record_finds_nothing_in_good_data(tmp_path, digits_dir):
    files = _write_dataset(tmp_path, [0, 1, 2], num_shards=2)
    assert tfrecord.locate_bad_record(files, num_classes=3) is None
    assert tfrecord.locate_bad_record(
        tfrecord.split_files(digits_dir, "validation"), num_classes=10) is None


# --- converting a folder of images ---------------------------------------------------

# class folder -> (skimage photo, patch size, file format); distinct sizes let the test
# check that each record carries its own class's label.
_CLASSES = {
    "coffee": ("coffee", (40, 56), "jpeg"),
    "astronaut": ("astronaut", (48, 40), "png"),
    "chelsea": ("chelsea", (36, 36), "jpeg"),
}


def _image_tree(root, per_class=4):
    from skimage import data

    for folder, (photo_name, (h, w), fmt) in _CLASSES.items():
        photo = getattr(data, photo_name)()
        os.makedirs(root / folder)
        for i in range(per_class):
            patch = photo[37 * i:37 * i + h, 53 * i:53 * i + w]
            if fmt == "png":
                encoded, ext = tf.io.encode_png(patch), ".png"
            else:
                encoded, ext = tf.io.encode_jpeg(patch, quality=90), ".jpg"
            (root / folder / f"{i}{ext}").write_bytes(encoded.numpy())
    return root


def test_convert_image_folder_writes_both_splits(tmp_path):
    root = _image_tree(tmp_path / "photos")
    out = tmp_path / "shards"
    counts = image_folder.convert(str(root), str(out), validation_fraction=0.25,
                                  num_shards=2, log=lambda *_: None)
    assert counts == {"train": 9, "validation": 3}
    assert tfrecord.read_labels(str(out)) == {0: "astronaut", 1: "chelsea", 2: "coffee"}
    size_of_class = {i: _CLASSES[name][1] for i, name in enumerate(sorted(_CLASSES))}
    for split, count in counts.items():
        records = _decode_all(tfrecord.split_files(str(out), split))
        assert len(records) == count
        for image, label in records:
            assert image.shape == size_of_class[label] + (3,)
        if split == "validation":
            assert sorted(label for _, label in records) == [0, 1, 2]
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".")]


def test_convert_reports_a_broken_image_by_name_and_writes_nothing(tmp_path):
    """A broken file must be named at conversion time, not mid-training, and the half
    finished output must not look like a dataset."""
    root = _image_tree(tmp_path / "photos", per_class=2)
    broken = root / "chelsea" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    out = tmp_path / "shards"
    with pytest.raises(DataError) as info:
        image_folder.convert(str(root), str(out), validation_fraction=0.5, log=lambda *_: None)
    assert str(broken) in str(info.value)
    assert not out.exists()
    assert sorted(os.listdir(tmp_path)) == ["photos"]


def test_convert_needs_two_classes(tmp_path):
    (tmp_path / "photos" / "only").mkdir(parents=True)
    (tmp_path / "photos" / "only" / "a.png").write_bytes(
        tf.io.encode_png(np.zeros((4, 4, 3), np.uint8)).numpy())
    with pytest.raises(DataError, match="at least two"):
        image_folder.convert(str(tmp_path / "photos"), str(tmp_path / "out"),
                             log=lambda *_: None)
    assert not (tmp_path / "out").exists()
