"""The JSON file slimtune writes beside checkpoints (and later, converted models).

Later tools read it so a user need not repeat what training already knew: the
architecture, class count and labels, the BatchNorm parameters actually used (a
fine-tune with a non-default epsilon must be converted with that epsilon), the
preprocessing and image size.
"""

import json
import os
import shutil

FILENAME = "slimtune.json"


def path_for(directory):
    return os.path.join(directory, FILENAME)


def write(directory, data):
    """Write ``slimtune.json`` in ``directory`` atomically."""
    path = path_for(directory)
    tmp = path + f".tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
    return path


def write_directory(directory, fill):
    """Create ``directory`` all at once: ``fill(tmp)`` writes into a temporary sibling,
    which takes the place of ``directory`` (absent, empty or meant to be overwritten:
    the caller checks) only when complete.  On any failure nothing is left behind."""
    parent = os.path.dirname(os.path.abspath(directory))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(os.path.abspath(directory))}"
                               f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        fill(tmp)
        if os.path.exists(directory):
            shutil.rmtree(directory)
        os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read(directory):
    """The metadata dict of ``directory`` (a checkpoint dir or prefix), or ``{}``."""
    if directory and not os.path.isdir(directory):
        directory = os.path.dirname(directory)
    path = path_for(directory or ".")
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)
