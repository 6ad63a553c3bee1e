"""slimtune: fine-tune TF-slim classifiers on TensorFlow 2.21 and move them to Keras 3.

One process-wide default is set here, before TensorFlow can be imported through us:
TensorFlow's oneDNN CPU kernels.  TensorFlow turns them on by itself only on CPUs with
AVX-512 VNNI/BF16/AMX; elsewhere it falls back to Eigen kernels whose convolution
gradients are pathologically slow on the small feature maps of fine-tuning runs
(measured: resnet_v1_50 at 32 px trains 3.3x faster with oneDNN on 2 AVX2 cores, see
``benchmarks/train_throughput.py``).  Set ``TF_ENABLE_ONEDNN_OPTS=0`` to opt out; the
setting has no effect if TensorFlow was imported before slimtune.
"""

import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
