"""Checks that name BatchNorm and Dropout pitfalls: each returns findings
(:mod:`slimtune.findings`), for slimtune-doctor, slimtune-verify and slimtune-train alike.

One module per kind of input: ``checkpoint_checks`` (a checkpoint's tensors and its
training graph), ``graph_checks`` (training and serving graphs), ``keras_checks`` (a
Keras model); ``data_checks`` and ``statistics_checks`` run models on data.
"""
