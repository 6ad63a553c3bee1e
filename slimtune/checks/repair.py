"""The repair the checks offer for BatchNorm statistics that do not describe the final
weights: a ``slimtune-recalibrate`` command line, filled in from what the run recorded."""

import os


def recalibrate_command(prefix, recorded=None, model_name=None, dataset_name=None,
                        dataset_dir=None, image_size=None):
    """A ``slimtune-recalibrate`` command line for the checkpoint at ``prefix``
    (``recorded``: what its slimtune.json says, a :class:`~slimtune.metadata.RunInfo`):
    what the doctor offers as the repair of statistics that do not describe the final
    weights.  Flags the file already answers are left out."""
    trained_on = (recorded and recorded.dataset) or None
    directory = os.path.dirname(os.path.abspath(prefix))
    flags = {
        "checkpoint_path": prefix,
        "model_name": None if recorded and recorded.model_name else model_name,
        "dataset_name": dataset_name or (trained_on and trained_on.name) or "YOUR_DATASET",
        "dataset_dir": dataset_dir or (trained_on and trained_on.dir),
        "image_size": None if recorded and recorded.image_size else image_size,
        "output_dir": directory.rstrip("/") + "_recalibrated",
    }
    return "slimtune-recalibrate " + " ".join(f"--{k}={v}" for k, v in flags.items() if v)
