"""slimtune-convert: a slim checkpoint in, a verified Keras 3 model out.

``source`` reads the checkpoint and identifies its architecture; the registry entry
builds the Keras mirror (``slimtune.keras_nets``) and fills it through its port table
(``slimtune.ports``); ``parity`` runs the slim graph and the Keras model on the same
inputs; ``convert`` is the whole command.
"""
