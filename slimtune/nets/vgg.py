"""VGG 16/19 and AlexNet v2 from ``tf_slim.nets``: no BatchNorm, dropout in the head.

Their fully connected layers are VALID convolutions sized for 224 px inputs, so the
graph only builds for inputs whose final feature map is exactly the kernel size.
"""

from slimtune import compat
from slimtune.registry import ModelSpec


def _vgg_arg_scope(weight_decay, bn):
    compat.apply()
    from tf_slim.nets import vgg

    return vgg.vgg_arg_scope(weight_decay=weight_decay)


def _alexnet_arg_scope(weight_decay, bn):
    compat.apply()
    from tf_slim.nets import alexnet

    return alexnet.alexnet_v2_arg_scope(weight_decay=weight_decay)


def _net(module_name, fn_name):
    def build(images, num_classes, is_training, scope):
        compat.apply()
        import importlib

        module = importlib.import_module(f"tf_slim.nets.{module_name}")
        return getattr(module, fn_name)(images, num_classes=num_classes,
                                        is_training=is_training, scope=scope)

    return build


def _spec(name, module_name, arg_scope_fn, min_size):
    return ModelSpec(
        name=name,
        family=module_name,
        scope=name,
        net_fn=_net(module_name, name),
        arg_scope_fn=arg_scope_fn,
        default_image_size=224,
        min_image_size=min_size,
        num_classes=1000,
        logits_scopes=(f"{name}/fc8",),
        preprocessing="vgg",
        batch_norm=None,
        has_dropout=True,
    )


SPECS = (
    _spec("vgg_16", "vgg", _vgg_arg_scope, 224),
    _spec("vgg_19", "vgg", _vgg_arg_scope, 224),
    _spec("alexnet_v2", "alexnet", _alexnet_arg_scope, 195),
)
