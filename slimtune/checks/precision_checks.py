"""Mixed-precision pitfalls: BatchNorm in half precision, float16 without a loss scale,
a loss scale stuck at its floor.

- A Keras model whose BatchNorm layers hold their variables in float16 or bfloat16 (a
  plain ``float16``/``bfloat16`` dtype policy where ``mixed_*`` was meant): the moving
  average's step, ``(1 - momentum) x (batch - moving)``, is 0.3% of the gap at momentum
  0.997, under half a unit in the last place of bfloat16 (8 significant bits, 0.4%) and
  near float16's (11 bits), so the statistics stall or move in coarse jumps.
- A graph whose BatchNorm keeps its moving statistics in half precision (a hand-written
  BatchNorm whose variables take the input's dtype; slim's and Keras' own keep float32
  statistics for a half input, and TF 2.21's fused kernels take float32 statistics
  only): the same stall, in a TF1 graph.
- A training graph computing gradients in float16 without a loss scale: gradients under
  float16's smallest normal (6e-5; subnormals down to 6e-8) flush to zero.
- A run whose dynamic loss scale (``training/loss_scale``, written by both engines with
  --mixed_precision=float16) ended at or below :data:`slimtune.precision.LOSS_SCALE_FLOOR`:
  every halving was a step with a non-finite gradient, skipped; at the floor the steps
  keep being skipped, or train with gradients that underflow.
"""

from slimtune import bn_layers, precision
from slimtune.findings import ERROR, WARNING, Finding, listed
from slimtune.schedule import event_scalars

HALF = ("float16", "bfloat16")
_HALF_TYPES = {19: "float16", 14: "bfloat16"}  # DataType enum: DT_HALF, DT_BFLOAT16
_STATISTICS = ("moving_mean", "moving_variance")


def keras_findings(model):
    """BatchNorm layers of a Keras ``model`` holding half-precision variables."""
    half = [f"{layer.name} ({layer.moving_variance.dtype})"
            for layer in bn_layers.keras_layers(model)
            if layer.moving_variance.dtype in HALF]
    if not half:
        return []
    return [Finding(
        ERROR, "bn-half-statistics", "BatchNorm statistics stored in half precision",
        f"{len(half)} BatchNormalization layers hold their moving statistics in half "
        f"precision: {listed(half)}",
        "each step moves a statistic by (1 - momentum) of its gap to the batch's, less than "
        "half precision can represent: the statistics stall, and the model serves with "
        "values that never followed the data",
        "use the mixed_float16 / mixed_bfloat16 dtype policy (float32 variables, half "
        "arithmetic) instead of float16 / bfloat16, or give the BatchNorm layers "
        "dtype='float32'")]


def graph_findings(graph_def):
    """A GraphDef's BatchNorm moving statistics in half precision, and gradients in
    float16 without a loss scale."""
    findings = []
    half_norms = [f"{node.name} ({_HALF_TYPES[node.attr['dtype'].type]})"
                  for node in graph_def.node
                  if node.op in ("VariableV2", "VarHandleOp")
                  and node.name.endswith(_STATISTICS)
                  and node.attr["dtype"].type in _HALF_TYPES]
    if half_norms:
        findings.append(Finding(
            ERROR, "bn-half-statistics", "BatchNorm statistics stored in half precision",
            f"{len(half_norms)} BatchNorm moving statistics in half precision: "
            f"{listed(half_norms)}",
            "the moving averages' small steps fall under half precision's resolution and "
            "the batch statistics lose their low bits: the statistics stall and serving "
            "normalises with stale values",
            "keep the variables and BatchNorm statistics in float32 and let only the "
            "arithmetic narrow (slimtune-train --mixed_precision; a fused BatchNorm keeps "
            "float32 statistics whatever its input)"))
    half_gradients = [node.name for node in graph_def.node
                      if node.name.startswith("gradients")
                      and node.attr["T"].type == 19]  # DT_HALF
    scaled = any("loss_scale" in node.name for node in graph_def.node)
    if half_gradients and not scaled:
        findings.append(Finding(
            WARNING, "float16-without-loss-scale", "float16 gradients without loss scaling",
            f"{len(half_gradients)} gradient ops compute in float16 (e.g. "
            f"{listed(half_gradients)}) and the graph has no loss scale",
            "gradients smaller than float16 can hold (6e-8) become 0 and those layers "
            "stop learning; large ones overflow to inf",
            "wrap the optimizer in a dynamic loss scale (slimtune-train "
            "--mixed_precision=float16 does: tf.compat.v1.mixed_precision."
            "MixedPrecisionLossScaleOptimizer), or train in bfloat16 or float32"))
    return findings


def loss_scale_findings(train_dir):
    """A run's dynamic loss scale at its floor at its last summary (no finding for a run
    without a loss scale)."""
    scales = event_scalars(train_dir, "loss_scale")
    if not scales:
        return []
    last_step = max(scales)
    at_floor = sorted(step for step, value in scales.items()
                      if value <= precision.LOSS_SCALE_FLOOR)
    if scales[last_step] > precision.LOSS_SCALE_FLOOR:
        return []
    return [Finding(
        ERROR, "loss-scale-at-floor", "the float16 loss scale is stuck at its floor",
        f"training/loss_scale is {scales[last_step]:g} at step {last_step} (at or below "
        f"{precision.LOSS_SCALE_FLOOR:g} in {len(at_floor)} of {len(scales)} summaries, "
        f"from step {at_floor[0]}); it starts at 32768 and halves at every step whose "
        "gradients are not finite",
        "the steps are being skipped: something overflows float16 whatever the scale "
        "(an activation or a BatchNorm input above 65504), so the run stopped learning",
        "train with --mixed_precision=bfloat16 (float32's range) or float32; look for "
        "the layer that overflows with slimtune-doctor and data")]
