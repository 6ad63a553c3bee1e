"""NASNet-A on the tools' path: nasnet_cifar fine-tuned from a checkpoint with a new
head and converted, and a Keras-engine step with drop path.  Every NASNet graph is
large (about a thousand variables), so each NASNet through every command is nightly
(tests/test_every_architecture.py, ``-m slow``).
"""

import numpy as np

from conversion import check_tools_path, reload_without_slimtune
from slimtune import compare, probe


def _run(tmp_path, digits_dir, model_name, size, steps=2, engine="slim"):
    from slimtune import train

    return train.train(train.TrainConfig(
        train_dir=str(tmp_path / "run"), dataset_name="digits", dataset_dir=digits_dir,
        model_name=model_name, train_image_size=size, batch_size=4,
        max_number_of_steps=steps, weight_decay=4e-5, seed=0, engine=engine),
        log=lambda line: None)


def test_nasnet_cifar_fine_tune_then_convert(tmp_path):
    """A "published" nasnet_cifar checkpoint fine-tuned on digits with a new head (the
    auxiliary one too), evaluated and converted with its auxiliary head.  Every command
    for each NASNet: tests/test_every_architecture.py, nightly."""
    check_tools_path(tmp_path, "nasnet_cifar", 10, image_size=32, aux=True)


def test_nasnet_cifar_keras_engine_step(tmp_path, digits_dir):
    """The Keras engine trains the mirror with drop path and the auxiliary head and
    saves a model.keras that loads without slimtune: Keras Identity layers where drop
    path was, the logits its only output."""
    import keras

    result = _run(tmp_path, digits_dir, "nasnet_cifar", 32, steps=1, engine="keras")
    assert result.global_step == 1 and np.isfinite(result.loss)
    model = keras.models.load_model(result.checkpoint, safe_mode=True)
    identities = [layer for layer in model.layers if type(layer) is keras.layers.Identity]
    assert identities and all(layer.name.endswith("drop_path") for layer in identities)
    images = probe.random_images(2, 32, seed=1)
    expected = np.asarray(model(images, training=False))
    reloaded = reload_without_slimtune(result.checkpoint, images, tmp_path)
    assert compare.difference(expected, reloaded).max_rel <= 1e-5
