"""Slim checkpoint -> Keras 3 conversion.

``layers`` holds the Keras building blocks with exact slim semantics and the
scope-to-layer-name rule; ``porting`` assigns checkpoint tensors to Keras weights and
refuses to finish while anything is unmatched; one module per architecture family
(``resnet``, ``inception``, ``vgg``) builds the Keras mirror and lists its weight
table; ``families`` finds the module for a registry entry; ``parity`` runs the slim
graph and the Keras model on the same inputs; ``convert`` is the whole command.
"""
