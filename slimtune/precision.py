"""--mixed_precision: which number format a training run computes in, and whether this
machine can compute in it at full speed.

Both engines keep every variable, BatchNorm moving statistic, optimizer slot, the loss
and every checkpoint tensor in float32; only the convolutions' and matmuls' arithmetic
(and the activations between them) narrows:

- ``bfloat16``: the CPU's own bf16 instructions (AVX512_BF16 or AMX), through grappler's
  oneDNN rewrite on the slim engine and Keras' ``mixed_bfloat16`` policy on the Keras
  engine.  bfloat16 keeps float32's exponent range, so no loss scaling is needed.
- ``float16``: a GPU's, through grappler's ``auto_mixed_precision`` rewrite on the slim
  engine and Keras' ``mixed_float16`` policy on the Keras engine, each with a dynamic
  loss scale (float16's smallest normal number is 6e-5: small gradients would flush to
  zero unscaled).

A format the machine cannot run natively is refused in one line: on a CPU without bf16
instructions oneDNN would emulate bfloat16 slower than float32, and a float16 rewrite
without a GPU does nothing, so either would be a float32 run under another name.
"""

from slimtune.errors import UsageError

FLOAT32, BFLOAT16, FLOAT16 = "float32", "bfloat16", "float16"
MODES = (FLOAT32, BFLOAT16, FLOAT16)
# Keras 3 dtype policy of each mode.
KERAS_POLICIES = {FLOAT32: "float32", BFLOAT16: "mixed_bfloat16", FLOAT16: "mixed_float16"}
# /proc/cpuinfo flags of x86 CPUs with native bfloat16 arithmetic (oneDNN uses either).
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
# A dynamic loss scale halves on every step with a non-finite gradient; one that sits
# at or below this has halved from 2**15 twenty-five times without recovering.
LOSS_SCALE_FLOOR = 1.0


def cpu_bf16_flags(cpuinfo="/proc/cpuinfo"):
    """The bf16 instruction flags this CPU reports (empty where it has none, or where
    ``cpuinfo`` cannot be read: not Linux)."""
    try:
        with open(cpuinfo) as f:
            text = f.read()
    except OSError:
        return ()
    for line in text.splitlines():
        if line.startswith("flags"):
            present = set(line.split(":", 1)[1].split())
            return tuple(flag for flag in BF16_CPU_FLAGS if flag in present)
    return ()


def gpu_count():
    """GPUs TensorFlow sees."""
    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU"))


def check_available(mode):
    """Raise UsageError unless this machine computes in ``mode`` natively (float32
    always does)."""
    if mode not in MODES:
        raise UsageError(f"unknown --mixed_precision {mode!r}: choose one of "
                         f"{', '.join(MODES)}")
    if mode == BFLOAT16 and not cpu_bf16_flags():
        raise UsageError(
            "--mixed_precision=bfloat16 needs a CPU with bfloat16 instructions (AVX512_BF16 "
            "or AMX; /proc/cpuinfo lists neither): it would run emulated, slower than "
            "float32; drop the flag or train on such a CPU")
    if mode == FLOAT16 and not gpu_count():
        raise UsageError(
            "--mixed_precision=float16 needs a GPU (TensorFlow sees none): a CPU has no "
            "float16 arithmetic; drop the flag, or use --mixed_precision=bfloat16 on a CPU "
            "with AVX512_BF16/AMX")


def loss_scaled(mode):
    """Whether ``mode`` trains with a dynamic loss scale (float16 only)."""
    return mode == FLOAT16


def keras_policy(mode):
    """The Keras 3 dtype policy name of ``mode``."""
    return KERAS_POLICIES[mode]
