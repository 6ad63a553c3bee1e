"""Progress lines for long loops (step, throughput and time left), and the log they go to."""

import time


def log(message):
    """Print one line now: the default ``log`` of every command."""
    print(message, flush=True)


def format_seconds(seconds):
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class Meter:
    """Measures images/s between reports and estimates the time to ``total_steps``."""

    def __init__(self, batch_size, start_step, total_steps=None, clock=time.monotonic):
        self.batch_size = batch_size
        self.total_steps = total_steps
        self._clock = clock
        self._last_time = clock()
        self._last_step = start_step
        self.images_per_sec = 0.0

    def tick(self, step):
        """Record that ``step`` is done; returns images/s since the previous tick."""
        now = self._clock()
        elapsed = max(now - self._last_time, 1e-9)
        self.images_per_sec = (step - self._last_step) * self.batch_size / elapsed
        self._last_time, self._last_step = now, step
        return self.images_per_sec

    def eta(self, step):
        if not self.total_steps or self.images_per_sec <= 0:
            return "?"
        steps_left = max(self.total_steps - step, 0)
        return format_seconds(steps_left * self.batch_size / self.images_per_sec)

    def line(self, step, label="step", **values):
        total = f"/{self.total_steps}" if self.total_steps else ""
        fields = "  ".join(f"{k} {v}" for k, v in values.items())
        return (f"{label} {step}{total}  {fields}  {self.images_per_sec:.1f} img/s  "
                f"ETA {self.eta(step)}")
