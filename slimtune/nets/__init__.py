"""The slim side of each architecture family: its arg scope (rebuilt by slimtune so the
BatchNorm decay, epsilon and scale are parameters), its network function (tf_slim's, or
defined here for the networks ``tf_slim.nets`` lacks), its BatchNorm defaults and the
layer plans the Keras mirrors and port tables share.  ``slimtune.registry`` joins them to
their entries; nothing here imports it.
"""
