"""Keras 3 mirrors of the slim networks, one module per family, built from plain arguments.

Each builder takes the class count, the BatchNorm config (decay = Keras momentum,
epsilon, scale), the dropout keep probability, slim's weight decay (as ``L2(wd / 2)`` on
the kernels slim regularises), the auxiliary head on or off where there is one, and the
input size; it returns a Keras model with random weights whose layers are named after
slim's scopes (``layers.keras_name``), so a port table can fill it from a checkpoint.
``layers`` holds the building blocks with exact slim semantics.
"""
