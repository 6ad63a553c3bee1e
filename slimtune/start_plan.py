"""Where a training run starts, decided once for both engines.

slimtune-train decides, before either engine builds anything: whether the run resumes
the train dir's latest checkpoint (it does whenever there is one: the step, the
optimizer's slots and the data position go on from it) or warm-starts from
--checkpoint_path, whether the network gets its auxiliary head, and whether
--precise_bn_batches re-estimates the statistics at the end.  The engines carry the
:class:`StartPlan` out; each used to decide these itself, and nothing checked that the
two agreed.  slimtune.json records the plan.
"""

import dataclasses
import os
from typing import Optional

from slimtune import checkpoint, metadata, sources


@dataclasses.dataclass(frozen=True)
class StartPlan:
    resume: Optional[str]  # the train dir's latest checkpoint, resumed; None: a new run
    warm_start: Optional[str]  # what a new run warm-starts from (slim prefix or .keras)
    aux_head: bool  # whether the network gets its auxiliary head
    precise_bn_batches: int  # batches re-estimating the BatchNorm statistics at the end

    def record(self):
        """What slimtune.json keeps of the plan."""
        return dataclasses.asdict(self)


def plan(cfg, spec, log):
    """The :class:`StartPlan` of ``cfg`` (a ``train.TrainConfig``) for architecture
    ``spec``; the train dir must be relocated already (``checkpoint.relocate``)."""
    resume = checkpoint.latest_in(cfg.train_dir, log=lambda line: None)
    warm_start = None
    if resume and cfg.checkpoint_path:
        log(f"--checkpoint_path ignored: {cfg.train_dir} already holds a checkpoint to resume")
    elif cfg.checkpoint_path:
        warm_start = (sources.keras_path(cfg.checkpoint_path)
                      or sources.checkpoint_prefix(cfg.checkpoint_path))
    return StartPlan(resume, warm_start, _aux_head(cfg, spec, resume, warm_start, log),
                     cfg.precise_bn_batches or 0)


def _aux_head(cfg, spec, resume, warm_start, log):
    """Whether the network gets its auxiliary head: as the run being resumed has it;
    else as the warm start holds it, unless a new one is asked for
    (:func:`slimtune.checkpoint.aux_head_wanted`); a fresh run has it, as research/slim
    builds it."""
    if not spec.aux_logits:
        return False
    if resume:
        recorded = metadata.recorded(cfg.train_dir).include_aux_logits
        if recorded is not None:
            return recorded
        held = spec.holds_aux_logits(checkpoint.read_shapes(resume))
        if not held:
            log(f"{resume} has no auxiliary head ({spec.aux_scope}): resuming without it")
        return held
    if not warm_start:
        return True
    if sources.kind_of(warm_start) == sources.KERAS:
        # A converted model has its head only if it was asked for.
        held = bool(os.path.exists(warm_start) and metadata.recorded(
            os.path.dirname(os.path.abspath(warm_start))).include_aux_logits)
    else:
        held = spec.holds_aux_logits(checkpoint.read_shapes(warm_start))
    return checkpoint.aux_head_wanted(spec, warm_start, held, cfg.checkpoint_exclude_scopes,
                                      cfg.ignore_missing_vars, log)
