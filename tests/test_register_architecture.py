"""A new architecture is its slim network, its Keras mirror, its port table and one
registry entry: registered through ``registry.register`` alone, it trains with
slimtune-train, converts with parity and verifies, with no other module touched.

The commands look architectures up in this process's registry, so they are called as
libraries here (a fresh ``slimtune-train`` process would not know the entry).
"""

import numpy as np
import tensorflow as tf

from slimtune import compat, registry
from slimtune.keras_nets import layers as L
from slimtune.nets.batch_norm import BatchNormConfig, slim_params

NAME, SCOPE = "tiny_convnet", "TinyConvNet"


# -- the slim network and its arg scope -----------------------------------------------------
def tiny_arg_scope(weight_decay, bn):
    slim = compat.apply()
    with slim.arg_scope([slim.conv2d], weights_regularizer=slim.l2_regularizer(weight_decay),
                        activation_fn=tf.nn.relu, normalizer_fn=slim.batch_norm,
                        normalizer_params=slim_params(bn)) as scope:
        return scope


def tiny_net(images, num_classes, is_training, scope):
    """Two 3x3/2 conv + BatchNorm + relu layers, a global average, 1x1-conv logits."""
    slim = compat.apply()
    end_points = {}
    with tf.compat.v1.variable_scope(scope, values=[images]), \
            slim.arg_scope([slim.batch_norm], is_training=is_training):
        net = end_points["conv1"] = slim.conv2d(images, 8, [3, 3], stride=2, scope="conv1")
        net = end_points["conv2"] = slim.conv2d(net, 16, [3, 3], stride=2, scope="conv2")
        net = tf.reduce_mean(net, axis=[1, 2], keepdims=True, name="pool")
        net = slim.conv2d(net, num_classes, [1, 1], activation_fn=None, normalizer_fn=None,
                          scope="logits")
    return net, end_points


# -- its Keras mirror, port table and end points --------------------------------------------
def tiny_keras(num_classes, batch_norm, weight_decay=0.0, image_size=None, name=SCOPE):
    inputs = L.images(image_size)
    x = L.conv2d(inputs, "conv1", 8, 3, 2, bn=batch_norm)
    x = L.conv2d(x, "conv2", 16, 3, 2, bn=batch_norm)
    x = L.global_average_pool(x, "pool")
    logits = L.logits_dense(x, "logits", num_classes)
    return L.with_weight_decay(L.model(inputs, logits, name), weight_decay)


def tiny_port(porter, drop_background=False):
    porter.conv("conv1", bn=True)
    porter.conv("conv2", bn=True)
    porter.dense_from_conv("logits", drop_background)


def tiny_end_points():
    return [("conv1", "conv1.relu"), ("conv2", "conv2.relu")]


def _register():
    if NAME in registry.names():  # the registry is per process; a rerun finds it there
        return registry.get(NAME)
    return registry.register(registry.ModelSpec(
        name=NAME, scope=SCOPE, net_fn=tiny_net, arg_scope_fn=tiny_arg_scope,
        keras_fn=tiny_keras, port_fn=tiny_port, end_points_fn=tiny_end_points,
        default_image_size=32, min_image_size=16, num_classes=10,
        logits_scopes=(f"{SCOPE}/logits",), preprocessing="inception",
        batch_norm=BatchNormConfig(decay=0.9, epsilon=1e-3, scale=True)))


def test_a_registered_architecture_trains_converts_and_verifies(tmp_path, digits_dir):
    from slimtune import train, verify
    from slimtune import convert

    spec = _register()
    assert registry.get(NAME) is spec and NAME in registry.names()
    train_dir = str(tmp_path / "run")
    result = train.train(train.TrainConfig(
        train_dir=train_dir, dataset_name="digits", model_name=NAME, train_image_size=32,
        batch_size=8, max_number_of_steps=2), log=lambda line: None)
    assert result.global_step == 2
    # Nothing names the architecture from here on: slimtune.json and the scope find it.
    meta = convert.convert(convert.ConvertConfig(checkpoint_path=train_dir,
                                                 output_dir=str(tmp_path / "keras")),
                           log=lambda line: None)
    assert meta["model_name"] == NAME and meta["num_classes"] == 10
    assert meta["image_size"] == 32 and meta["preprocessing"] == "inception"
    assert meta["parity"]["random"]["max_rel"] <= 1e-5
    assert meta["parity"]["random"]["reference_max"] > 1e-3, "degenerate: logits ~0"
    report = verify.verify(verify.VerifyConfig(
        reference=train_dir, candidate=str(tmp_path / "keras" / "model.keras"), random=4,
        layerwise=True), log=lambda line: None)
    assert report["passed"]
    assert [row["end_point"] for row in report["layerwise"]] == ["conv1", "conv2"]
    assert all(row["max_rel"] <= 1e-5 for row in report["layerwise"])
    # The two training steps moved the BatchNorm statistics away from their 0/1 start,
    # so the parity above covered the moving statistics too.
    reader = tf.train.load_checkpoint(train_dir)
    variance = reader.get_tensor(f"{SCOPE}/conv1/BatchNorm/moving_variance")
    assert not np.allclose(variance, 1.0)
