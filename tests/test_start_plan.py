"""Where a training run starts is decided once, for both engines (slimtune.start_plan):
the same flags give the same plan whichever engine runs it, each engine's trainer
carries that plan out, and slimtune.json records it."""

import json

import pytest

from test_register_architecture import NAME as TINY, _register as register_tiny_net

from slimtune import registry, start_plan, train
from slimtune.testing import make_checkpoint


def _config(train_dir, digits_dir, engine, **overrides):
    return train.TrainConfig(**{**dict(
        train_dir=str(train_dir), dataset_name="digits", dataset_dir=digits_dir,
        model_name=TINY, preprocessing_name="lenet", train_image_size=32, batch_size=4,
        max_number_of_steps=1, seed=0, engine=engine), **overrides})


def _plans(tmp_path, digits_dir, **flags):
    spec = registry.get(TINY)
    return {engine: start_plan.plan(_config(tmp_path / "run", digits_dir, engine, **flags),
                                    spec, lambda line: None)
            for engine in ("slim", "keras")}


def test_the_same_flags_give_both_engines_the_same_plan(tmp_path, digits_dir):
    register_tiny_net()
    start = make_checkpoint(str(tmp_path / "start" / "model.ckpt"), TINY, 10, seed=1)
    fresh = _plans(tmp_path, digits_dir)
    assert fresh["slim"] == fresh["keras"] == start_plan.StartPlan(None, None, False, 0)
    warm = _plans(tmp_path, digits_dir, checkpoint_path=start, precise_bn_batches=2)
    assert warm["slim"] == warm["keras"]
    assert warm["slim"].warm_start == start and warm["slim"].precise_bn_batches == 2


@pytest.mark.parametrize("engine", ["slim", "keras"])
def test_each_engine_carries_out_the_plan_and_records_it(tmp_path, digits_dir, engine):
    """A warm-started run, then the same command to step 2: the second resumes (the
    warm start is ignored, said once) and slimtune.json records each plan."""
    register_tiny_net()
    start = make_checkpoint(str(tmp_path / "start" / "model.ckpt"), TINY, 10, seed=1)
    cfg = _config(tmp_path / "run", digits_dir, engine, checkpoint_path=start)
    first = train.train(cfg, log=lambda line: None)
    assert first.start.warm_start == start and first.start.resume is None
    recorded = json.loads((tmp_path / "run" / "slimtune.json").read_text())["start"]
    assert recorded["warm_start"] == start and recorded["resume"] is None
    lines = []
    again = train.train(_config(tmp_path / "run", digits_dir, engine, checkpoint_path=start,
                                max_number_of_steps=2), log=lines.append)
    assert again.global_step == 2 and again.start.resume.endswith("-1")
    assert again.start.warm_start is None
    assert sum("--checkpoint_path ignored" in line for line in lines) == 1
