"""Port tables: which checkpoint tensor fills which Keras weight, one module per family.

``porter`` is the engine: a table is a sequence of ``porter.port_weight(keras_var,
checkpoint key)`` calls (most through its ``conv``/``batch_norm``/``dense_from_conv``
shorthands), and :meth:`~slimtune.ports.porter.Porter.finish` refuses a conversion
unless every Keras weight and every checkpoint tensor is accounted for.  Each family
module also lists its end points (slim end point key, Keras layer) for layerwise checks.
The registry joins them to their architectures, so they sit below it.
"""
