"""Convert a folder of class sub-folders into slim TFRecord shards.

``root/<class name>/<image>`` becomes ``train-*`` and ``validation-*`` shards plus
``labels.txt``; class ids follow the sorted sub-folder names.  JPEG and PNG files are
stored as they are; BMP and GIF are re-encoded as PNG.  Every image is decoded once
while converting, so a broken file is reported by name here rather than as a decode
error in the middle of training.  Output appears only when every shard is complete.
"""

import os

import numpy as np

from slimtune import compat, files
from slimtune.data import tfrecord
from slimtune.errors import DataError

EXTENSIONS = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png", ".bmp": "bmp", ".gif": "gif"}


def list_images(root):
    """``(class names, [(path, class id)])`` of a class-per-folder tree."""
    if not os.path.isdir(root):
        raise DataError(f"image folder {root} does not exist: pass a directory holding one "
                        "sub-folder of images per class")
    classes = sorted(d for d in os.listdir(root)
                     if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
    if len(classes) < 2:
        raise DataError(f"{root} has {len(classes)} class sub-folder(s): a classifier needs at "
                        "least two, one folder of images per class")
    items = []
    for class_id, name in enumerate(classes):
        folder = os.path.join(root, name)
        for file in sorted(os.listdir(folder)):
            if os.path.splitext(file)[1].lower() in EXTENSIONS:
                items.append((os.path.join(folder, file), class_id))
    if not items:
        raise DataError(f"no images ({', '.join(sorted(EXTENSIONS))}) under {root}")
    return classes, items


def _encode(path):
    import tensorflow as tf

    with open(path, "rb") as f:
        raw = f.read()
    try:
        with compat.eager_mode():
            image = tf.io.decode_image(raw, channels=3, expand_animations=False)
            fmt = EXTENSIONS[os.path.splitext(path)[1].lower()]
            if fmt not in ("jpeg", "png"):
                raw, fmt = tf.io.encode_png(image).numpy(), "png"
    except tf.errors.OpError as e:
        raise DataError(f"image {path} cannot be decoded ({e.message.splitlines()[0]}): "
                        "remove or re-save it, then convert again") from None
    return raw, fmt, image.shape


def convert(root, output_dir, validation_fraction=0.1, num_shards=4, seed=0, log=print):
    """Write shards for ``train`` and ``validation``; returns per-split image counts."""
    classes, items = list_images(root)
    if not 0.0 <= validation_fraction < 1.0:
        raise DataError(f"validation fraction {validation_fraction} must be in [0, 1)")
    rng = np.random.RandomState(seed)
    splits = {"train": [], "validation": []}
    for class_id in range(len(classes)):
        members = [p for p, c in items if c == class_id]
        members = [members[i] for i in rng.permutation(len(members))]
        cut = int(round(len(members) * validation_fraction))
        splits["validation"] += [(p, class_id) for p in members[:cut]]
        splits["train"] += [(p, class_id) for p in members[cut:]]
    if os.path.exists(output_dir) and os.listdir(output_dir):
        raise DataError(f"output directory {output_dir} is not empty: choose a new one")
    counts = {}

    def fill(work):
        done = 0
        for split, members in splits.items():
            order = rng.permutation(len(members))
            records = []
            for i in order:
                path, class_id = members[i]
                raw, fmt, shape = _encode(path)
                records.append(tfrecord.image_example(raw, fmt, class_id, shape[0], shape[1]))
                done += 1
                if done % 500 == 0:
                    log(f"converted {done}/{len(items)} images")
            if records:
                tfrecord.write_split(work, split, records, num_shards)
            counts[split] = len(records)
        tfrecord.write_labels(work, dict(enumerate(classes)))

    files.write_directory(output_dir, fill)  # absent or empty: checked above
    log(f"wrote {counts['train']} train and {counts['validation']} validation images of "
        f"{len(classes)} classes to {output_dir}")
    return counts
