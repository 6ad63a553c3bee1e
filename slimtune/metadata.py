"""The JSON file slimtune writes beside checkpoints (and later, converted models).

Later tools read it so a user need not repeat what training already knew: the
architecture, class count and labels, the BatchNorm parameters actually used (a
fine-tune with a non-default epsilon must be converted with that epsilon), the
preprocessing and image size.
"""

import json
import os

from slimtune import files

FILENAME = "slimtune.json"


def path_for(directory):
    return os.path.join(directory, FILENAME)


def write(directory, data):
    """Write ``slimtune.json`` in ``directory`` atomically."""
    return files.write_json(path_for(directory), data, indent=2, sort_keys=True, end="\n")


def read(directory):
    """The metadata dict of ``directory`` (a checkpoint dir or prefix), or ``{}``."""
    if directory and not os.path.isdir(directory):
        directory = os.path.dirname(directory)
    path = path_for(directory or ".")
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)
