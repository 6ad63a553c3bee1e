"""The parity check every converter test runs: slim graph vs Keras mirror, same inputs.

A checkpoint with random weights, biases and BatchNorm statistics is converted; the
slim graph (``is_training=False``) and the Keras model (``training=False``) then run on
one seeded batch, and the logits and every matching end point are compared unsorted.
"""

import keras
import numpy as np

from slimtune import registry
from slimtune.convert import families, keras_model, parity
from slim_checkpoints import make_checkpoint, read


def keras_end_points(model, layer_names, images):
    probe = keras.Model(model.inputs, [model.get_layer(n).output for n in layer_names])
    outputs = probe(images, training=False)
    return [np.asarray(o) for o in (outputs if isinstance(outputs, (list, tuple)) else [outputs])]


def check_parity(tmp_path, model_name, image_size, num_classes=7, batch=2, seed=0,
                 rtol=1e-5):
    """Convert a random checkpoint and assert slim/Keras parity; returns the differences."""
    spec = registry.get(model_name)
    bn = spec.batch_norm
    images = parity.random_images(batch, image_size, seed)
    points = families.module_for(spec).end_points(spec)
    # The slim reference comes from the graph that saved the checkpoint (built with
    # is_training=False); tests/test_convert.py covers restoring into a fresh graph.
    prefix, slim_logits, slim_points = make_checkpoint(
        str(tmp_path / "model.ckpt"), model_name, num_classes, image_size=image_size,
        seed=seed, run_on=images, end_point_keys=[key for key, _ in points])
    model = keras_model.from_tensors(spec, read(prefix), num_classes, bn,
                                     image_size=image_size)
    keras_logits = np.asarray(model(images, training=False))
    results = {"logits": parity.difference(slim_logits, keras_logits)}
    for (key, _), value in zip(points, keras_end_points(model, [n for _, n in points], images)):
        results[key] = parity.difference(slim_points[key], value)
    for key, diff in results.items():
        print(f"{model_name} {image_size}px {key}: {diff.line()}")
    bad = {k: d.max_rel for k, d in results.items() if d.max_rel > rtol}
    assert not bad, f"{model_name} at {image_size}px diverges: {bad}"
    assert results["logits"].top1_agreement == 1.0
    assert results["logits"].reference_max > 1e-3, "degenerate test: slim logits are all ~0"
    return results
