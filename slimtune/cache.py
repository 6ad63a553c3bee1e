"""Where slimtune keeps data it makes on first use."""

import os


def cache_dir(*parts):
    """``$SLIMTUNE_CACHE`` (default ``~/.cache/slimtune``) joined with ``parts``."""
    root = os.environ.get("SLIMTUNE_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "slimtune")
    return os.path.join(root, *parts)
