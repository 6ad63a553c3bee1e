"""Slim network families known to slimtune.

Each module here describes one family: its slim arg scope (rebuilt by slimtune so the
BatchNorm decay, epsilon and scale are parameters) and its ``ModelSpec`` entries.
Networks that ``tf_slim.nets`` lacks are defined in their family module too.
"""
