"""Errors that slimtune reports to people.

Every error's first line names the file, variable or flag at fault and the fix;
tools print it without a traceback and exit non-zero.
"""


class SlimtuneError(Exception):
    """Base class: a problem the user can fix.  ``exit_code`` is what tools return."""

    exit_code = 1


class UsageError(SlimtuneError):
    """A flag value is invalid or inconsistent."""


class DataError(SlimtuneError):
    """A dataset is missing, empty or holds a bad record."""


class CheckpointError(SlimtuneError):
    """A checkpoint is missing, unreadable or does not fit the network."""


class TrainingDiverged(SlimtuneError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""

    @classmethod
    def at_step(cls, loss, step, kept):
        """Either engine's error for ``loss`` (a value, or words) at ``step``, with ``kept``
        the run's last good checkpoint (``None``: none saved yet)."""
        return cls(f"loss became {loss} at step {step}; stopped without saving, the last good "
                   f"checkpoint is {kept or 'none saved yet'}: lower --learning_rate or set "
                   "--clip_gradient_norm")


class WorkerLost(SlimtuneError):
    """A multi-worker run lost one of its workers; restarting all of them resumes."""


class BrokenCheckpoint(CheckpointError):
    """The checkpoint's own graph computes NaN or infinite outputs (its weights overflowed
    in training): no tool can evaluate, export or convert it faithfully."""


class UnusableInput(SlimtuneError):
    """A model file or input a command cannot use: a missing or unreadable file, a form
    it cannot open, no inputs.  Exit code 2, since verify and the doctor exit 1 to say
    "the models differ" or "errors found"."""

    exit_code = 2


class Preempted(SlimtuneError):
    """A SIGTERM or SIGINT stopped the run after a step, which was saved; running the same
    command again resumes there.  Exit code 128 + the signal's number (143 for SIGTERM, 130
    for SIGINT), as a process the signal ended; a worker of a multi-worker run stopped
    because another worker got the signal exits 143."""

    exit_code = 143

    @classmethod
    def at_step(cls, step, saved, cause, exit_code):
        """The error after saving ``step`` as ``saved`` (a checkpoint path), stopped by
        ``cause`` (``"SIGTERM"``, or ``"a signal to another worker"``)."""
        error = cls(f"stopped by {cause} after step {step}, saved {saved}: run the same "
                    "command again to resume from there")
        error.exit_code = exit_code
        return error
