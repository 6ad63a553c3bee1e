"""The slim engine: training a slim network in a TF1 graph, BatchNorm updates correct by
construction.

The train op runs every BatchNorm update with each step (:mod:`.graph`).  The loop is
our own ``tf.compat.v1.Session`` loop inside a private ``tf.Graph`` (:mod:`.loop`): no
Supervisor, no ``disable_eager_execution()``.  A run resumes, warm-starts or starts
fresh (:mod:`.start`).

A seeded run is deterministic when the command runs it under op determinism (the
default): the graph seed fixes every random op, the input pipeline keeps its order
(``cfg.deterministic``; None: when seeded), and TensorFlow's op determinism makes
tf.data run maps with random augmentations one element at a time (without it, the
threads of a parallel map draw random crops in whatever order they get there).  Two
runs with the same seed on the same machine give bit-identical checkpoints.

After the final save, the final checkpoint runs in inference mode on one batch, with a
warning naming where its outputs go non-finite; --precise_bn_batches then re-estimates
its BatchNorm statistics (:mod:`.finish`).
"""

from slimtune.slim_engine.trainer import Trainer  # noqa: F401  (the engine's face)
