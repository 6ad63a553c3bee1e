"""Which converter module handles which registered architecture.

Every converter module ``slimtune.convert.<family>`` provides:

``MODELS``
    the registry names it converts.
``build(spec, num_classes, bn, include_aux_logits=False, image_size=None)``
    the Keras 3 Functional mirror, named ``spec.scope``, input ``[B, H, W, 3]`` float32
    (``H = W = image_size``, or open when ``None`` and the architecture allows it),
    output the logits ``[B, num_classes]``; with ``include_aux_logits`` (only where the
    spec has an auxiliary head) the outputs are ``[logits, aux_logits]``.
``port(porter, spec, bn, drop_background=False, include_aux_logits=False)``
    the weight table: one ``porter`` call per slim layer, in network order (an
    auxiliary head left out is skipped by its ``spec.aux_scope``).
``end_points(spec)``
    ``[(slim end point key, Keras layer name), ...]`` in network order: the slim
    ``end_points`` entries whose tensors the Keras layer outputs exactly, used to find the
    first layer that diverges.
"""

import importlib

# registry family -> converter module; later families add one line each.
_MODULES = {"resnet_v1": "resnet", "resnet_v2": "resnet", "inception": "inception",
            "vgg": "vgg", "alexnet": "vgg", "densenet": "densenet",
            "mobilenet_v1": "mobilenet", "mobilenet_v2": "mobilenet"}


def module_for(spec):
    """The converter module of a :class:`~slimtune.registry.ModelSpec`."""
    if spec.family not in _MODULES:
        raise KeyError(f"no Keras converter for {spec.name} (family {spec.family})")
    module = importlib.import_module(f"slimtune.convert.{_MODULES[spec.family]}")
    assert spec.name in module.MODELS, (spec.name, module.__name__)
    return module
