"""slimtune.compat makes tf-slim 1.1.0 usable on TensorFlow 2.21.

Each test builds the smallest slim graph that needs one of the fixes (see
ENGINEERING.md section 1), inside its own ``tf.Graph().as_default()`` as slimtune does.
"""

import numpy as np
import pytest
import tensorflow as tf

from slimtune import compat
from slimtune.data import tfrecord

slim = compat.apply()
tf1 = compat.tf1()


def test_apply_is_idempotent_and_returns_tf_slim():
    """Callers may call apply() anywhere; the second call must change nothing."""
    import sys

    import tf_slim
    from tensorflow.python.framework import ops

    first = compat.apply()
    legacy = sys.modules.get("tf_keras.legacy_tf_layers")
    tensor = ops.Tensor
    second = compat.apply()
    assert first is second is tf_slim
    assert sys.modules.get("tf_keras.legacy_tf_layers") is legacy
    assert ops.Tensor is tensor is tf.Tensor


def test_batch_norm_registers_update_ops_that_follow_the_decay_rule():
    """Without the tf_keras alias slim.batch_norm cannot even be built; with it, training
    must still rely on UPDATE_OPS to move the moving averages."""
    decay = 0.9
    x_value = np.arange(2 * 2 * 2 * 3, dtype=np.float32).reshape(2, 2, 2, 3)
    with tf.Graph().as_default():
        x = tf1.placeholder(tf.float32, [None, 2, 2, 3])
        slim.batch_norm(x, decay=decay, is_training=True, scope="bn")
        update_ops = tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)
        assert update_ops
        moving_mean = [v for v in tf1.global_variables() if "moving_mean" in v.name]
        assert len(moving_mean) == 1
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            before = sess.run(moving_mean[0])
            sess.run(update_ops, {x: x_value})
            after = sess.run(moving_mean[0])
    batch_mean = x_value.mean(axis=(0, 1, 2))
    np.testing.assert_array_equal(before, np.zeros(3))
    np.testing.assert_allclose(after, decay * before + (1 - decay) * batch_mean, rtol=1e-6)


def test_create_train_op_with_gradient_clipping_runs_one_step():
    """clip_gradient_norm goes through the restored ops.IndexedSlices/Tensor names; the
    clipped step of plain SGD must move the weights by exactly learning_rate * 1.0."""
    learning_rate = 0.1
    with tf.Graph().as_default():
        w = tf1.get_variable("w", initializer=tf.constant([3.0, 4.0]))
        loss = 100.0 * tf.reduce_sum(tf.square(w))  # gradient norm 1000, far above 1
        optimizer = tf1.train.GradientDescentOptimizer(learning_rate)
        train_op = slim.learning.create_train_op(loss, optimizer, clip_gradient_norm=1.0)
        step = tf1.train.get_global_step()
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            before = sess.run(w)
            loss_value = sess.run(train_op)
            after, step_value = sess.run([w, step])
    assert loss_value == pytest.approx(2500.0)
    assert step_value == 1
    np.testing.assert_allclose(np.linalg.norm(after - before), learning_rate, rtol=1e-5)


def test_tfexample_decoder_reads_slimtune_records():
    """slim's own decoder (Image handler uses control_flow_ops.case) must read the
    records slimtune writes, so datasets stay interchangeable with research/slim."""
    from tf_slim.data import tfexample_decoder

    image = np.random.RandomState(0).randint(0, 256, size=(5, 7, 3), dtype=np.uint8)
    record = tfrecord.image_example(tf.io.encode_png(image).numpy(), "png", 4, 5, 7)
    with tf.Graph().as_default():
        decoder = tfexample_decoder.TFExampleDecoder(
            keys_to_features={
                "image/encoded": tf1.FixedLenFeature((), tf.string, default_value=""),
                "image/format": tf1.FixedLenFeature((), tf.string, default_value="jpeg"),
                "image/class/label": tf1.FixedLenFeature([], tf.int64),
            },
            items_to_handlers={
                "image": tfexample_decoder.Image(),
                "label": tfexample_decoder.Tensor("image/class/label"),
            })
        decoded_image, label = decoder.decode(tf.constant(record), ["image", "label"])
        with tf1.Session() as sess:
            image_value, label_value = sess.run([decoded_image, label])
    np.testing.assert_array_equal(image_value, image)
    assert label_value == 4


def test_batch_norm_accepts_a_tensor_is_training():
    """One graph for train and eval needs is_training as a tensor (a v2 If op); with
    False the layer must use the moving statistics (mean 0, variance 1 at start)."""
    x_value = np.random.RandomState(1).normal(5.0, 2.0, size=(4, 3, 3, 2)).astype(np.float32)
    with tf.Graph().as_default():
        x = tf1.placeholder(tf.float32, [None, 3, 3, 2])
        is_training = tf1.placeholder_with_default(True, [])
        y = slim.batch_norm(x, is_training=is_training, epsilon=0.001)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            train_out = sess.run(y, {x: x_value})
            eval_out = sess.run(y, {x: x_value, is_training: False})
    np.testing.assert_allclose(train_out.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(eval_out, x_value / np.sqrt(1.0 + 0.001), rtol=1e-5)


def test_eager_execution_survives_building_slim_graphs():
    """compat never disables eager mode: Keras conversion and tf.data code elsewhere
    in the same process depend on it."""
    with tf.Graph().as_default():
        slim.conv2d(tf1.placeholder(tf.float32, [1, 8, 8, 3]), 4, [3, 3])
        assert not tf.executing_eagerly()
        with compat.eager_mode():
            assert tf.executing_eagerly()
    assert tf.executing_eagerly()
    assert int(tf.add(1, 2)) == 3


def _elementwise_equality():
    """Whether ``==`` of two eager tensors compares their elements (TensorFlow 2's
    setting) rather than their identity."""
    return isinstance(tf.constant([1, 2]) == tf.constant([1, 3]), tf.Tensor)


def test_graph_equality_is_kept_to_a_tf1_graph_and_restored():
    """Slim graphs are built with TF1's identity equality (cheap hashing of variables);
    eager code, tf.functions and everything after the block keep TensorFlow 2's."""
    assert _elementwise_equality()
    with tf.Graph().as_default():
        with compat.graph_equality():
            assert not _eager_compare_in_graph()
            variables = [tf1.get_variable(f"v{i}", [1]) for i in range(3)]
            assert len(set(variables)) == 3 and variables[0] != variables[1]
        assert _eager_compare_in_graph()
    with compat.graph_equality():  # eager: nothing changes
        assert _elementwise_equality()
    with pytest.raises(ZeroDivisionError), tf.Graph().as_default():
        with compat.graph_equality():
            raise ZeroDivisionError
    assert _elementwise_equality()


def _eager_compare_in_graph():
    with compat.eager_mode():
        return _elementwise_equality()


def test_graph_equality_inside_a_function_changes_nothing():
    """A tf.function's graph compares tensors element-wise; the block leaves it so."""

    @tf.function
    def compare(a, b):
        with compat.graph_equality():
            return a == b

    assert compare(tf.constant([1, 2]), tf.constant([1, 3])).numpy().tolist() == [True, False]
