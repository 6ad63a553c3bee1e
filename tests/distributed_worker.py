"""One worker process of the distributed tests: slimtune-train with one intra-op and one
inter-op thread, and the tiny registered network of test_register_architecture
(``--model_name=tiny_convnet``) known to it.  Run as ``python distributed_worker.py
<slimtune-train flags>``, with TF_CONFIG or --worker_hosts/--task."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tensorflow as tf  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)

import test_register_architecture  # noqa: E402

from slimtune_tools import train_image_classifier  # noqa: E402

if __name__ == "__main__":
    test_register_architecture._register()
    train_image_classifier.run()
