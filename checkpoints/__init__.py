"""Installed as ``slimtune_checkpoints``: ships ``manifest.json``, the list of published
slim checkpoints, so that slimtune finds it in a wheel install as well as in a checkout.

In a checkout this directory is also the default download cache (``cache/``, not
committed); a wheel install caches under ``~/.cache/slimtune/checkpoints`` instead.
"""
