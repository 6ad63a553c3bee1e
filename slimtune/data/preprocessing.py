"""research/slim's image preprocessing, as TensorFlow ops usable in tf.data and graphs.

Each function takes a uint8 ``[H, W, 3]`` image and returns float32 ``[h, w, 3]``
(``[h, w, 1]`` with ``grayscale``, see below):

- ``inception``: train = random crop covering 5-100% of the area with aspect 3/4-4/3,
  bilinear resize, left-right flip, colour jitter; eval = central crop of 87.5% then
  resize.  Output scaled to [-1, 1].
- ``vgg``: train = aspect-preserving resize of the shorter side to a random length in
  [256, 512] (scaled with the output size; exactly these at 224), random crop, flip;
  eval = shorter side to 256 (scaled likewise), central crop.  RGB means subtracted.
- ``densenet``: ``vgg``'s geometry, then the mean-subtracted RGB times 0.017 (about
  1/std), as pudae/tensorflow-densenet's checkpoints were trained.
- ``lenet``: crop or pad to the output size, then (x - 128) / 128.  No augmentation:
  for small centred images such as the built-in digits.
- ``cifarnet``: train = pad 4 pixels of zeros on every side, random crop, flip, random
  brightness (+-63) and contrast (0.2-1.8); eval = crop or pad to the output size; both
  then standardise each image to mean 0 and variance 1.

Every name research/slim's preprocessing factory takes is taken, as it maps them: a
network's name means that network's preprocessing there (``--preprocessing_name=
resnet_v2_50`` is ``vgg``, ``inception_v3`` is ``inception``), see :data:`ALIASES`.

A training image given a ``seed`` (a stateless seed, ``[2]`` integers) draws every random
choice from it with TensorFlow's stateless ops, so the same seed gives the same crop,
flip and colours wherever and whenever the image is drawn: the input pipeline keys it
by the run's seed and the image's place in the training stream, so a resumed run
augments each image as the uninterrupted run would have.  Without one, the stateful ops
draw (unseeded runs).

``grayscale`` is research/slim's ``--use_grayscale``: ``tf.image.rgb_to_grayscale`` where
its preprocessing applies it, so the network takes one channel.  ``inception`` converts
after the colour distortion when training (brightness and saturation act on RGB) and
right after the conversion to float when evaluating (before the central crop); ``vgg``
and ``densenet`` after the crop, before the flip and the mean subtraction; ``lenet`` and
``cifarnet`` first, right after the conversion to float.  ``vgg``'s mean subtraction
then subtracts the means' gray value (the gray of the mean-subtracted RGB image, by
linearity): upstream's subtracts three means from one channel and raises ValueError.
"""

from slimtune.errors import UsageError

VGG_MEANS = (123.68, 116.78, 103.94)


def _tf():
    import tensorflow as tf

    return tf


def _seeds(seed, count):
    """``count`` independent stateless seeds from ``seed`` (None: ``count`` Nones)."""
    if seed is None:
        return [None] * count
    return _tf().unstack(_tf().random.experimental.stateless_split(seed, count))


def _flip(image, seed):
    tf = _tf()
    if seed is None:
        return tf.image.random_flip_left_right(image)
    return tf.image.stateless_random_flip_left_right(image, seed)


def _gray(image, grayscale):
    return _tf().image.rgb_to_grayscale(image) if grayscale else image


def _inception_train(image, height, width, seed=None, grayscale=False):
    tf = _tf()
    crop, flip, brightness, saturation = _seeds(seed, 4)
    image = tf.image.convert_image_dtype(image, tf.float32)
    whole = tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4])
    # The stateful sampler ignores the graph seed unless given an op seed, so seeded runs
    # cropped differently every time; its stateless twin takes its seed from a random op
    # that follows the graph seed like every other one here (unless given one).
    if crop is None:
        crop = tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int32)
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), bounding_boxes=whole, seed=crop, min_object_covered=0.1,
        aspect_ratio_range=(0.75, 1.33), area_range=(0.05, 1.0),
        max_attempts=100, use_image_if_no_bounding_boxes=True)
    image = tf.slice(image, begin, size)
    image = tf.image.resize(image, [height, width], method="bilinear")
    image = _flip(image, flip)
    # research/slim's fast-mode colour distortion: brightness then saturation.
    if seed is None:
        image = tf.image.random_brightness(image, max_delta=32.0 / 255.0)
        image = tf.image.random_saturation(image, lower=0.5, upper=1.5)
    else:
        image = tf.image.stateless_random_brightness(image, 32.0 / 255.0, brightness)
        image = tf.image.stateless_random_saturation(image, 0.5, 1.5, saturation)
    image = _gray(tf.clip_by_value(image, 0.0, 1.0), grayscale)
    return (image - 0.5) * 2.0


def _inception_eval(image, height, width, grayscale=False, central_fraction=0.875):
    tf = _tf()
    image = _gray(tf.image.convert_image_dtype(image, tf.float32), grayscale)
    image = tf.image.central_crop(image, central_fraction)
    image = tf.image.resize(image, [height, width], method="bilinear")
    return (image - 0.5) * 2.0


def _resize_shorter_side(image, side):
    tf = _tf()
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = tf.cast(side, tf.float32) / tf.reduce_min(shape)
    new_size = tf.cast(tf.round(shape * scale), tf.int32)
    return tf.image.resize(tf.cast(image, tf.float32), new_size, method="bilinear")


def _vgg_sides(height, width):
    """research/slim's 256/512 resize sides, scaled so small outputs see the same framing."""
    out = max(height, width)
    return max(out, round(256 * out / 224)), max(out + 1, round(512 * out / 224))


def _vgg_means(image):
    """research/slim's RGB means, or their gray value for a 1-channel image."""
    tf = _tf()
    means = tf.constant(VGG_MEANS)
    if image.shape[-1] == 1:
        means = tf.image.rgb_to_grayscale(means)
    return means


def _vgg_train(image, height, width, seed=None, grayscale=False):
    tf = _tf()
    resize, crop, flip = _seeds(seed, 3)
    low, high = _vgg_sides(height, width)
    if seed is None:
        side = tf.random.uniform([], minval=low, maxval=high + 1, dtype=tf.int32)
    else:
        side = tf.random.stateless_uniform([], resize, minval=low, maxval=high + 1,
                                           dtype=tf.int32)
    image = _resize_shorter_side(image, side)
    if seed is None:
        image = tf.image.random_crop(image, [height, width, 3])
    else:
        image = tf.image.stateless_random_crop(image, [height, width, 3], crop)
    image = _flip(_gray(image, grayscale), flip)
    return image - _vgg_means(image)


def _vgg_eval(image, height, width, grayscale=False):
    tf = _tf()
    low, _ = _vgg_sides(height, width)
    image = _resize_shorter_side(image, low)
    shape = tf.shape(image)
    top = (shape[0] - height) // 2
    left = (shape[1] - width) // 2
    image = _gray(tf.slice(image, [top, left, 0], [height, width, 3]), grayscale)
    return image - _vgg_means(image)


DENSENET_SCALE = 0.017


def _densenet_train(image, height, width, seed=None, grayscale=False):
    return _vgg_train(image, height, width, seed, grayscale) * DENSENET_SCALE


def _densenet_eval(image, height, width, grayscale=False):
    return _vgg_eval(image, height, width, grayscale) * DENSENET_SCALE


def _lenet(image, height, width, seed=None, grayscale=False):
    tf = _tf()
    image = _gray(tf.cast(image, tf.float32), grayscale)
    image = tf.image.resize_with_crop_or_pad(image, height, width)
    return (image - 128.0) / 128.0


def _cifarnet_train(image, height, width, seed=None, grayscale=False):
    tf = _tf()
    crop, flip, brightness, contrast = _seeds(seed, 4)
    image = _gray(tf.cast(image, tf.float32), grayscale)
    image = tf.pad(image, [[4, 4], [4, 4], [0, 0]])
    size = [height, width, 1 if grayscale else 3]
    if crop is None:
        image = tf.image.random_crop(image, size)
        image = tf.image.random_brightness(_flip(image, flip), max_delta=63.0)
        image = tf.image.random_contrast(image, lower=0.2, upper=1.8)
    else:
        image = tf.image.stateless_random_crop(image, size, crop)
        image = tf.image.stateless_random_brightness(_flip(image, flip), 63.0, brightness)
        image = tf.image.stateless_random_contrast(image, 0.2, 1.8, contrast)
    return tf.image.per_image_standardization(image)


def _cifarnet_eval(image, height, width, grayscale=False):
    tf = _tf()
    image = _gray(tf.cast(image, tf.float32), grayscale)
    image = tf.image.resize_with_crop_or_pad(image, height, width)
    return tf.image.per_image_standardization(image)


_TRAIN = {"inception": _inception_train, "vgg": _vgg_train, "densenet": _densenet_train,
          "lenet": _lenet, "cifarnet": _cifarnet_train}
_EVAL = {"inception": _inception_eval, "vgg": _vgg_eval, "densenet": _densenet_eval,
         "lenet": _lenet, "cifarnet": _cifarnet_eval}

# research/slim's preprocessing_factory: the network names it takes as preprocessing
# names, and the preprocessing each means there.
ALIASES = {
    **{name: "inception" for name in (
        "inception_v1", "inception_v2", "inception_v3", "inception_v4", "inception_resnet_v2",
        "mobilenet_v1", "mobilenet_v2", "mobilenet_v2_035", "mobilenet_v2_140",
        "mobilenet_v3_small", "mobilenet_v3_large", "mobilenet_v3_small_minimalistic",
        "mobilenet_v3_large_minimalistic", "mobilenet_edgetpu", "mobilenet_edgetpu_075",
        "nasnet_mobile", "nasnet_large", "pnasnet_mobile", "pnasnet_large")},
    **{f"resnet_v{v}_{depth}": "vgg" for v in (1, 2) for depth in (50, 101, 152, 200)},
    **{name: "vgg" for name in ("vgg_a", "vgg_16", "vgg_19")},
}
NAMES = tuple(sorted(_TRAIN))
# research/slim's default input size where the factory's preprocessing differs from the
# one slimtune gives the architecture by default (its published checkpoints').
_UPSTREAM_SIZES = {f"resnet_v2_{depth}": 224 for depth in (50, 101, 152, 200)}


def canonical(name):
    """The preprocessing ``name`` means: itself, or what research/slim's factory maps a
    network's name to (None stays None)."""
    return ALIASES.get(name, name)


def upstream_difference(model_name, preprocessing, image_size):
    """One line when ``model_name``'s default ``preprocessing`` and size (slimtune's, as
    its published checkpoints were trained) differ from what research/slim's factory
    would pick for it, or None."""
    theirs = ALIASES.get(model_name)
    if theirs is None or theirs == preprocessing:
        return None
    size = _UPSTREAM_SIZES.get(model_name, image_size)
    return (f"{model_name}: {preprocessing} preprocessing at {image_size} px, as its published "
            f"checkpoints were trained; research/slim's factory would use {theirs} at {size} "
            f"px: pass --preprocessing_name={model_name} (and the size) for that")


def preprocess(name, image, height, width, is_training, seed=None, grayscale=False):
    """Apply preprocessing ``name``; an unknown name is a UsageError listing the choices.
    ``seed``: a training image's stateless seed (see above; None: stateful draws).
    ``grayscale``: research/slim's ``--use_grayscale`` (output ``[h, w, 1]``)."""
    table = _TRAIN if is_training else _EVAL
    name = canonical(name)
    if name not in table:
        raise UsageError(f"unknown preprocessing {name!r}: choose one of {', '.join(NAMES)}, "
                         "or a network's name as research/slim's factory takes it "
                         "(--preprocessing_name)")
    if is_training:
        image = table[name](image, height, width, seed, grayscale=grayscale)
    else:
        image = table[name](image, height, width, grayscale=grayscale)
    image.set_shape([height, width, 1 if grayscale else 3])
    return image
