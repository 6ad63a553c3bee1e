"""Thin absl entry scripts; installed as the ``slimtune_tools`` package."""
