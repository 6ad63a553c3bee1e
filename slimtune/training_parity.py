"""Does a migrated model train like the original?  K steps of each engine, compared.

``slimtune-verify-training`` runs ``slimtune-train`` twice from one slim checkpoint with
the same flags, K steps each: once on the slim engine (the TF1 graph) and once on the
Keras engine (the Keras 3 mirror), both on the same batches (one seeded pipeline).  It
then prints the total loss of every step side by side, and, layer by layer in network
order, how far apart the two engines' trained weights and BatchNorm moving statistics
(and with --moving_average_decay their averages) ended.  It passes when every figure is
within its tolerance and the trained weights moved enough for the comparison to mean
something.

Relative difference of a tensor: ``max |keras - slim| / max |slim|``.  A trained
tensor must also have moved (``max |slim after - start| / max |slim after|``) at least
ten times the weight tolerance somewhere: an engine that trains nothing, or gets a
tenth of an update wrong, would otherwise pass.

Dropout is off unless --dropout_keep_prob says otherwise: the engines draw their masks
from different random generators, so no two runs with dropout can agree.  Why training
the whole network with BatchNorm in training mode can miss the tolerances at small
sizes even for two slim runs is in README ("Training equivalence"): train the heads
(--trainable_scopes) or freeze BatchNorm for a comparison of the arithmetic.

This module runs the train command; like the main job it sits above the commands.
"""

import dataclasses
import math
import os
import shutil
import tempfile
from typing import List, Optional

import numpy as np

from slimtune import checkpoint, files, metadata, sources, train
from slimtune.errors import SlimtuneError, UnusableInput
from slimtune.progress import log as _log
from slimtune.schedule import event_scalars

MOVE_FACTOR = 10  # the trained weights must move this many weight tolerances
STATISTICS = ("moving_mean", "moving_variance")


@dataclasses.dataclass
class ParityConfig:
    """What to compare and how strictly; the training itself is a ``train.TrainConfig``."""

    training_steps: int = 5
    weight_rtol: float = 1e-4
    loss_rtol: float = 1e-5
    report_json: Optional[str] = None


@dataclasses.dataclass
class LayerRow:
    """One layer (a slim scope, its BatchNorm included): the largest relative difference
    of its trained tensors, of its BatchNorm statistics and of its averages (NaN: it
    has none), and the largest relative move of its trained tensors."""

    layer: str
    trained: int = 0
    weights: float = math.nan
    moved: float = math.nan
    statistics: float = math.nan
    averages: float = math.nan


@dataclasses.dataclass
class EngineParity:
    """The two runs and their figures; ``problems`` is empty when the engines agree."""

    steps: int
    slim_losses: List[float]
    keras_losses: List[float]
    layers: List[LayerRow]
    weight_rtol: float
    loss_rtol: float
    still_statistics: List[str]  # BatchNorm statistics the slim run left unchanged
    slim: train.TrainResult = dataclasses.field(repr=False)
    keras: train.TrainResult = dataclasses.field(repr=False)

    @property
    def losses(self):
        """The largest relative difference of a step's total loss."""
        return max(abs(k - s) / abs(s) for k, s in zip(self.keras_losses, self.slim_losses))

    def _largest(self, key):
        values = [getattr(row, key) for row in self.layers if not math.isnan(getattr(row, key))]
        return max(values) if values else math.nan

    @property
    def weights(self):
        return self._largest("weights")

    @property
    def moved(self):
        return self._largest("moved")

    @property
    def statistics(self):
        return self._largest("statistics")

    @property
    def averages(self):
        return self._largest("averages")

    @property
    def compared(self):
        return sum(row.trained for row in self.layers)

    @property
    def problems(self):
        """Why the engines do not agree, one sentence each (empty: they do)."""
        found = []
        apart = [abs(k - s) / abs(s) for k, s in zip(self.keras_losses, self.slim_losses)]
        beyond = [step for step, diff in enumerate(apart, 1) if diff > self.loss_rtol]
        if beyond:
            found.append(f"per-step loss {self.losses:.2e} apart > --loss_rtol="
                         f"{self.loss_rtol:g}, first at step {beyond[0]} "
                         f"({apart[beyond[0] - 1]:.2e})")
        for key, what in (("weights", "trained weights"), ("statistics", "BatchNorm statistics"),
                          ("averages", "moving averages")):
            first = next((row for row in self.layers if getattr(row, key) > self.weight_rtol),
                         None)
            if first is not None:
                found.append(f"{what} {getattr(self, key):.2e} apart > --weight_rtol="
                             f"{self.weight_rtol:g}, first in {first.layer} "
                             f"({getattr(first, key):.2e})")
        if self.compared == 0:
            found.append("no weight was trained: check --trainable_scopes")
        elif not self.moved >= MOVE_FACTOR * self.weight_rtol:
            found.append(f"the trained weights moved at most {self.moved:.2e}, under "
                         f"{MOVE_FACTOR} x --weight_rtol: the comparison cannot tell an engine "
                         "that trains from one that does not (raise --learning_rate or "
                         "--training_steps)")
        return found

    def summary(self):
        """The figures as plain numbers (the report's JSON)."""
        return {"steps": self.steps, "slim_losses": self.slim_losses,
                "keras_losses": self.keras_losses, "losses": self.losses,
                "weights": self.weights, "moved": self.moved, "statistics": self.statistics,
                "averages": self.averages, "compared": self.compared,
                "weight_rtol": self.weight_rtol, "loss_rtol": self.loss_rtol,
                "layers": [dataclasses.asdict(row) for row in self.layers],
                "problems": self.problems, "passed": not self.problems}


def verify_training(cfg: train.TrainConfig, options: ParityConfig, log=_log):
    """The command: both engines ``options.training_steps`` steps from ``cfg``'s
    checkpoint, compared and printed; returns the :class:`EngineParity`.

    ``cfg.train_dir`` receives the two runs (``slim/`` and ``keras/``); ``None``: a
    temporary directory, removed at the end.  Any error of either run (a flag, the data,
    the checkpoint, a NaN loss) is :class:`UnusableInput` (exit code 2): exit code 1
    says the engines disagree.
    """
    _check(cfg, options)
    keep = cfg.train_dir is not None
    root = cfg.train_dir if keep else tempfile.mkdtemp(prefix="slimtune_verify_training_")
    try:
        parity = compare_engines(dataclasses.replace(cfg, train_dir=root),
                                 options.training_steps, options.weight_rtol,
                                 options.loss_rtol, log)
    except SlimtuneError as e:
        if isinstance(e, UnusableInput):
            raise
        raise UnusableInput(str(e)) from None
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    for line in report_lines(parity):
        log(line)
    if options.report_json:
        files.write_json(options.report_json, parity.summary(), indent=2)
    return parity


def _check(cfg, options):
    if options.training_steps <= 0:
        raise UnusableInput(f"--training_steps={options.training_steps} must be positive")
    if not cfg.checkpoint_path:
        raise UnusableInput("--checkpoint_path is required: both engines must start from one "
                         "slim checkpoint (random starts differ between engines)")
    if sources.kind_of(cfg.checkpoint_path) == sources.KERAS:
        raise UnusableInput(f"--checkpoint_path={cfg.checkpoint_path} is a .keras model, which "
                         "the slim engine cannot start from: give the slim checkpoint it was "
                         "converted from")
    if cfg.worker_hosts or cfg.num_clones != 1 or os.environ.get("TF_CONFIG"):
        raise UnusableInput("the engines are compared in one process on one device: drop "
                         "--worker_hosts/--num_clones and unset TF_CONFIG")
    if cfg.train_dir is not None:
        for engine in metadata.ENGINES:
            held = os.path.join(cfg.train_dir, engine)
            if os.path.isdir(held) and os.listdir(held):
                raise UnusableInput(f"{held} is not empty: the comparison needs two fresh runs; "
                                 "give another --train_dir, or none (a temporary one)")


def compare_engines(cfg, steps, weight_rtol=1e-4, loss_rtol=1e-5, log=_log):
    """Train ``steps`` steps of each engine with ``cfg`` (in ``cfg.train_dir``/slim and
    /keras; seed 0 and dropout off unless set) and measure how far apart they end."""
    settings = dict(max_number_of_steps=steps, save_summaries_secs=0, log_every_n_steps=1,
                    save_interval_steps=None, precise_bn_batches=0,
                    seed=0 if cfg.seed is None else cfg.seed,
                    dropout_keep_prob=(1.0 if cfg.dropout_keep_prob is None
                                       else cfg.dropout_keep_prob))
    runs = {}
    for engine in (metadata.SLIM_ENGINE, metadata.KERAS_ENGINE):
        run_cfg = dataclasses.replace(cfg, train_dir=os.path.join(cfg.train_dir, engine),
                                      engine=engine, **settings)
        log(f"--engine={engine}: {steps} steps in {run_cfg.train_dir}")
        runs[engine] = train.train(run_cfg, log=lambda line, e=engine: log(f"  [{e}] {line}"))
    slim, keras = runs[metadata.SLIM_ENGINE], runs[metadata.KERAS_ENGINE]
    start = checkpoint.read_tensors(sources.checkpoint_prefix(cfg.checkpoint_path))
    layers, still = _layers(keras.final_weights(), start, slim.final_weights())
    slim_losses, keras_losses = (event_losses(os.path.join(cfg.train_dir, e))
                                 for e in (metadata.SLIM_ENGINE, metadata.KERAS_ENGINE))
    if not len(slim_losses) == len(keras_losses) == steps:
        raise RuntimeError(f"internal: {len(slim_losses)} slim and {len(keras_losses)} Keras "
                           f"losses recorded for {steps} steps")
    return EngineParity(steps, slim_losses, keras_losses, layers, weight_rtol, loss_rtol,
                        still, slim, keras)


def relative(candidate, reference):
    """``max |candidate - reference| / max |reference|``."""
    return float(np.max(np.abs(candidate - reference))
                 / max(float(np.max(np.abs(reference))), 1e-12))


def _layers(keras_weights, start, slim_weights):
    """``([LayerRow] in network order, [BatchNorm statistics the slim run left alone])``
    from both runs' final weights (``[outcome.FinalWeight]``) and the ``start`` tensors."""
    slim_after = {w.slim_name: w for w in slim_weights}
    rows, still = {}, []
    for w in keras_weights:
        row = rows.setdefault(layer_of(w.slim_name), LayerRow(layer_of(w.slim_name)))
        slim_w = slim_after[w.slim_name]
        after = w.from_slim(slim_w.value)
        diff = relative(w.value, after)
        if w.trained:
            row.trained += 1
            row.weights = _max(row.weights, diff)
            row.moved = _max(row.moved, relative(w.from_slim(start[w.slim_name]), after))
        elif w.slim_name.endswith(STATISTICS):
            row.statistics = _max(row.statistics, diff)
            if np.array_equal(start[w.slim_name], slim_w.value):
                still.append(w.slim_name)
        if w.average is not None and slim_w.average is not None:
            row.averages = _max(row.averages, relative(w.average, w.from_slim(slim_w.average)))
    compared = [row for row in rows.values()
                if row.trained or not (math.isnan(row.statistics) and math.isnan(row.averages))]
    return compared, still


def _max(current, value):
    return value if math.isnan(current) else max(current, value)


def layer_of(slim_name):
    """The layer a slim variable belongs to: its scope, a BatchNorm's counted with the
    convolution it normalises (``.../conv1/BatchNorm/beta`` -> ``.../conv1``)."""
    scope = slim_name.rsplit("/", 1)[0]
    return scope[: -len("/BatchNorm")] if scope.endswith("/BatchNorm") else scope


def event_losses(train_dir):
    """``[total loss of step 1, ..., step K]`` from a run's TensorBoard events (both
    engines write ``losses/total_loss`` at every step with --save_summaries_secs=0)."""
    found = event_scalars(train_dir, "total_loss")
    return [found[step] for step in sorted(found)]


def report_lines(parity):
    """The printed report: the losses step by step, the layers, the verdict."""
    lines = [f"\nTotal loss at each step (pass: relative difference <= {parity.loss_rtol:g}):",
             f"{'step':>4}  {'slim engine':>14}  {'Keras engine':>14}  {'rel diff':>9}"]
    for i, (s, k) in enumerate(zip(parity.slim_losses, parity.keras_losses), 1):
        lines.append(f"{i:>4}  {s:>14.7f}  {k:>14.7f}  {abs(k - s) / abs(s):>9.2e}")
    averages = any(not math.isnan(row.averages) for row in parity.layers)
    lines += ["", f"After {parity.steps} steps, layer by layer in network order (relative "
              f"difference max|keras - slim| / max|slim|; pass <= {parity.weight_rtol:g}; "
              "moved: the trained weights' largest relative change):",
              f"{'layer':<64} {'trained':>7} {'weights':>9} {'moved':>9} {'BN stats':>9}"
              + (f" {'averages':>9}" if averages else "")]
    for row in parity.layers:
        figures = [row.weights, row.moved, row.statistics] + ([row.averages] if averages else [])
        cells = " ".join(f"{'-':>9}" if math.isnan(x) else f"{x:>9.2e}" for x in figures)
        lines.append(f"{row.layer:<64} {row.trained:>7} {cells}")
    lines.append(f"\n{parity.compared} trained tensors: weights {parity.weights:.2e} apart "
                 f"(largest move {parity.moved:.2e}), BatchNorm statistics "
                 f"{parity.statistics:.2e}, per-step loss {parity.losses:.2e}"
                 + (f", averages {parity.averages:.2e}" if averages else ""))
    problems = parity.problems
    lines += ([f"FAIL: {p}" for p in problems] if problems else
              ["PASS: the Keras engine trains like the slim engine"])
    return lines
