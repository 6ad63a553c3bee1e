"""Build a Keras mirror and fill it from checkpoint tensors: the in-memory half of a conversion."""

from slimtune.convert import families
from slimtune.convert.porting import Porter


def build(spec, num_classes, bn, include_aux_logits=False, image_size=None):
    """The Keras 3 model of ``spec`` with BatchNorm parameters ``bn`` (random weights)."""
    from slimtune import compat

    compat.apply()
    return families.module_for(spec).build(spec, num_classes, bn,
                                           include_aux_logits=include_aux_logits,
                                           image_size=image_size)


def from_tensors(spec, tensors, num_classes, bn, drop_background=False,
                 include_aux_logits=False, image_size=None, source="checkpoint"):
    """A Keras model holding ``tensors`` (``{checkpoint name: array}``).

    Raises :class:`~slimtune.errors.CheckpointError` listing every unmatched name
    unless each Keras weight got exactly one tensor of the same shape and each tensor
    was used or deliberately skipped.
    """
    module = families.module_for(spec)
    model = build(spec, num_classes, bn, include_aux_logits, image_size)
    porter = Porter(model, tensors, spec.scope, source=source)
    module.port(porter, spec, bn, drop_background=drop_background,
                include_aux_logits=include_aux_logits)
    # A checkpoint's auxiliary head is left out unless included (a checkpoint saved
    # without one has nothing to skip).
    porter.finish(also_skip=(spec.aux_scope,) if spec.aux_scope and not include_aux_logits
                  else ())
    return model
