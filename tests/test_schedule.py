"""The training schedule both engines follow (slimtune.schedule): which steps save, write
summaries and print progress, on a scripted engine and a fake clock (no TensorFlow)."""

import types

import pytest

from slimtune.errors import Preempted, TrainingDiverged
from slimtune.schedule import Done, Schedule


def config(**flags):
    values = dict(max_number_of_steps=7, save_interval_steps=0, save_interval_secs=10 ** 6,
                  save_summaries_secs=10 ** 6, log_every_n_steps=3, batch_size=4)
    values.update(flags)
    return types.SimpleNamespace(**values)


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Engine:
    """Each step takes ``seconds`` on ``clock``; ``agreed(step, wish)`` is what the
    workers' summed save wish comes to (default: this worker's own)."""

    def __init__(self, clock, seconds=1.0, losses=None, agreed=None):
        self.clock, self.seconds, self.losses = clock, seconds, losses or {}
        self.agreed = agreed or (lambda step, wish: wish.save)
        self.stop_agreed = lambda step, wish: wish.stop
        self.schedule, self.wishes, self.saves, self.summaries = None, [], [], []
        self.stopped = False

    def run_step(self, wish):
        step = self.schedule.step
        self.wishes.append((step, wish))
        summarised = self.schedule.summary_due(wish.summary)
        self.clock.now += self.seconds
        return Done(self.losses.get(step + 1, 1.0), self.agreed(step, wish), summarised,
                    self.stop_agreed(step, wish))

    def summarise(self):
        self.summaries.append(self.schedule.step)

    def progress(self):
        return {"lr": "1.00e-02"}

    def save(self):
        self.saves.append(self.schedule.step)

    def stop(self):
        self.stopped = True
        return "train/model.ckpt-4"


def run(cfg, step=0, saved=False, **engine_args):
    clock, lines = Clock(), []
    engine = Engine(clock, **engine_args)
    engine.schedule = Schedule(cfg, step, 2, saved, lines.append, clock=clock)
    engine.schedule.run(engine)
    return engine, lines


def test_saves_every_interval_of_steps_and_the_last_step_once():
    engine, _ = run(config(save_interval_steps=3))
    assert engine.saves == [3, 6, 7]
    engine, _ = run(config(save_interval_steps=3, max_number_of_steps=6))
    assert engine.saves == [3, 6]


def test_a_resumed_run_at_its_last_step_runs_and_saves_nothing():
    engine, lines = run(config(max_number_of_steps=5), step=5, saved=True)
    assert engine.wishes == [] and engine.saves == []
    assert lines == ["Already at step 5 >= --max_number_of_steps; nothing to do"]


def test_saves_follow_the_workers_sum_of_wishes_not_this_workers_own():
    # 4 s per step, a save every 10 s: this worker wishes it with the steps from 3 and
    # from 7 (12 s after the start and after the save of step 4), which save after them.
    cfg = config(save_interval_secs=10, max_number_of_steps=9)
    engine, _ = run(cfg, seconds=4.0)
    assert [step for step, wish in engine.wishes if wish.save] == [3, 7]
    assert engine.saves == [4, 8, 9]
    # The sum decides: another worker's wish (with the step from 1) saves step 2; this
    # worker's own wishes from step 5 on save nothing while the sum says no.
    engine, _ = run(cfg, seconds=4.0, agreed=lambda step, wish: step == 1)
    assert [step for step, wish in engine.wishes if wish.save] == [5, 6, 7, 8]
    assert engine.saves == [2, 9]


def test_summaries_after_the_first_step_of_a_fresh_run_then_by_time():
    engine, _ = run(config(save_summaries_secs=10), seconds=4.0)
    assert engine.summaries == [1, 4, 7]  # wished with the steps from 3 and 6
    engine, _ = run(config(save_summaries_secs=10, max_number_of_steps=9), step=2,
                    seconds=4.0)
    assert engine.summaries == [6, 9]


def test_progress_lines_every_n_steps_and_at_the_last():
    _, lines = run(config(log_every_n_steps=3))
    assert [line.split()[1] for line in lines] == ["3/7", "6/7", "7/7"]
    assert lines[0].startswith("step 3/7  loss 1.0000  lr 1.00e-02  ")
    assert "8.0 img/s" in lines[0]  # 3 steps of 2 replicas x 4 images in 3 s


def test_a_non_finite_loss_stops_with_the_last_good_checkpoint_unsaved():
    with pytest.raises(TrainingDiverged, match="loss became nan at step 5; .*"
                       "checkpoint is train/model.ckpt-4"):
        run(config(save_interval_steps=1), losses={5: float("nan")})
    engine = Engine(Clock(), losses={5: float("inf")})
    engine.schedule = Schedule(config(save_interval_steps=2), 0, 1, False, print,
                               clock=engine.clock)
    with pytest.raises(TrainingDiverged, match="loss became inf at step 5"):
        engine.schedule.run(engine)
    assert engine.stopped and engine.saves == [2, 4]


class Signals:
    """A signal that has arrived when the step from ``step`` starts (None: never)."""

    def __init__(self, engine, step=None, signum=15):
        self.engine, self.step, self.signum = engine, step, signum

    @property
    def received(self):
        arrived = self.step is not None and self.engine.schedule.step >= self.step
        return self.signum if arrived else None


def preempted(cfg, signal_at=None, signum=15, others=None, **engine_args):
    """Run until a signal stops the run: this worker's at step ``signal_at``, or
    another worker's (``others(step)``: whether some other worker's stop wish is in the
    step from ``step``).  Returns the engine and the error."""
    others = others or (lambda step: False)
    engine = Engine(Clock(), **engine_args)
    engine.stop_agreed = lambda step, wish: wish.stop or others(step)
    schedule = Schedule(cfg, 0, 2, False, lambda line: None, clock=engine.clock,
                        signals=Signals(engine, signal_at, signum))
    engine.schedule = schedule
    with pytest.raises(Preempted) as error:
        schedule.run(engine)
    return engine, error.value


def test_a_signal_stops_after_the_next_step_which_is_saved():
    # The signal arrives while the step from 3 runs: the step from 4 carries the wish, and
    # step 5 is saved (once, though it is also a step the schedule saves).
    engine, error = preempted(config(max_number_of_steps=100, save_interval_steps=5),
                              signal_at=4)
    assert [step for step, wish in engine.wishes if wish.stop] == [4]
    assert engine.saves == [5] and engine.stopped
    assert str(error) == ("stopped by SIGTERM after step 5, saved train/model.ckpt-4: run "
                          "the same command again to resume from there")
    assert error.exit_code == 143
    engine, error = preempted(config(max_number_of_steps=100), signal_at=2, signum=2)
    assert engine.saves == [3] and error.exit_code == 130
    assert "stopped by SIGINT after step 3" in str(error)


def test_another_workers_signal_stops_this_one_at_the_same_step():
    engine, error = preempted(config(max_number_of_steps=100), others=lambda step: step == 6)
    assert not any(wish.stop for step, wish in engine.wishes)
    assert engine.saves == [7] and error.exit_code == 143
    assert "stopped by a signal to another worker after step 7" in str(error)


def test_no_signal_no_stop():
    engine = Engine(Clock())
    engine.schedule = Schedule(config(), 0, 2, False, lambda line: None, clock=engine.clock,
                               signals=Signals(engine))
    engine.schedule.run(engine)
    assert engine.saves == [7] and not any(wish.stop for step, wish in engine.wishes)
