"""NASNet's drop path in both engines: research/slim's schedule (the keep probability
falls with the cell's depth and the training progress), whole examples dropped and the
rest scaled by 1 / keep, the identity at inference; the Keras training model has it and
the model it saves does not (plain Keras Identity layers).

The kept fraction is checked on 20,000 examples with a fixed seed: the bound is five
standard deviations of a binomial proportion, and the seed makes the run repeatable.
"""

import json
import zipfile

import numpy as np
import pytest
import tensorflow as tf

from slimtune import compat
from slimtune.nets import nasnet

v1 = tf.compat.v1
PLAN = nasnet.NASNET_CIFAR  # keep 0.6 in the deepest of its 20 cells, over 937,500 steps
EXAMPLES = 20_000


def test_the_schedule_is_research_slim_s():
    assert PLAN.total_cells == 20 and nasnet.NASNET_LARGE.total_cells == 22
    assert nasnet.PNASNET_LARGE.total_cells == 14
    assert nasnet.drop_path_keep(PLAN, 19, 0.0) == 1.0
    assert nasnet.drop_path_keep(PLAN, 19, 1.0) == pytest.approx(0.6)
    assert nasnet.drop_path_keep(PLAN, 9, 1.0) == pytest.approx(1 - 0.5 * 0.4)
    assert nasnet.drop_path_keep(PLAN, 19, 0.25) == pytest.approx(1 - 0.25 * 0.4)


def _check_mask(out, keep):
    """Every example all 0 or all 1 / keep; the kept fraction within 5 sigma of keep."""
    flat = out.reshape(len(out), -1)
    assert np.all(flat == flat[:, :1]), "drop path must drop whole examples"
    values = set(np.unique(flat[:, 0]).tolist())
    assert values <= {0.0, np.float32(1.0) / np.float32(keep)}, values
    kept = float(np.mean(flat[:, 0] > 0))
    sigma = np.sqrt(keep * (1 - keep) / len(out))
    print(f"keep {keep:.4f}: kept {kept:.4f} of {len(out)} (5 sigma = {5 * sigma:.4f})")
    assert abs(kept - keep) <= 5 * sigma


def _slim(step, total, is_training, cell_num=19):
    compat.apply()
    with tf.Graph().as_default():
        v1.set_random_seed(0)
        global_step = v1.train.get_or_create_global_step()
        x = tf.ones([EXAMPLES, 2, 2, 3])
        ops = nasnet.SlimOps(x, PLAN, is_training, total_training_steps=total)
        y = ops.drop_path(x, "drop_path", PLAN, cell_num)
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            global_step.load(step, sess)
            return sess.run(y)


def _keras(step, total, training, cell_num=19):
    import keras

    from slimtune.keras_engine import drop_path

    tf.random.set_seed(0)
    clock = drop_path.Clock(total)
    clock.step = keras.Variable(step, dtype="int64", trainable=False)
    layer = drop_path.builder(clock)
    inputs = keras.Input((2, 2, 3))
    model = keras.Model(inputs, layer(inputs, "drop_path", PLAN, cell_num))
    return np.asarray(model(np.ones([EXAMPLES, 2, 2, 3], np.float32), training=training))


@pytest.mark.parametrize("engine", [_slim, _keras], ids=["slim", "keras"])
def test_drop_path_follows_the_schedule(engine):
    ones = np.ones([EXAMPLES, 2, 2, 3], np.float32)
    assert np.array_equal(engine(500, 1000, False), ones)  # inference: the identity
    assert np.array_equal(engine(0, 1000, True), ones)  # step 0: keep 1
    _check_mask(engine(500, 1000, True), nasnet.drop_path_keep(PLAN, 19, 0.5))
    _check_mask(engine(2000, 1000, True), 0.6)  # past the run's length: the full rate
    _check_mask(engine(1000, 1000, True, cell_num=4), nasnet.drop_path_keep(PLAN, 4, 1.0))


def test_saved_drop_path_is_keras_identity(tmp_path):
    import keras

    from slimtune.keras_engine import drop_path

    clock = drop_path.Clock(10)
    inputs = keras.Input((2, 2, 3))
    outputs = drop_path.builder(clock)(inputs, "cell_0.comb_iter_0.left.drop_path", PLAN, 2)
    keras.Model(inputs, outputs).save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as archive:
        layers = json.loads(archive.read("config.json"))["config"]["layers"]
    assert [layer["class_name"] for layer in layers] == ["InputLayer", "Identity"]
    assert layers[1]["module"] == "keras.layers"
