"""VGG A/16/19, AlexNet v2 and OverFeat from ``tf_slim.nets``: no BatchNorm, dropout
in the head.

Their fully connected layers are VALID convolutions sized for 224 px inputs (231 for
OverFeat), so the graph only builds for inputs whose final feature map is exactly the
kernel size.  OverFeat's fc6 and fc7 biases start at 0.1 (tf_slim's initialiser).
"""

from slimtune import compat

DROPOUT_KEEP = 0.5  # tf_slim's dropout_keep_prob for VGG, AlexNet v2 and OverFeat


def vgg_arg_scope(weight_decay, bn):
    compat.apply()
    from tf_slim.nets import vgg

    return vgg.vgg_arg_scope(weight_decay=weight_decay)


def alexnet_arg_scope(weight_decay, bn):
    compat.apply()
    from tf_slim.nets import alexnet

    return alexnet.alexnet_v2_arg_scope(weight_decay=weight_decay)


def overfeat_arg_scope(weight_decay, bn):
    compat.apply()
    from tf_slim.nets import overfeat

    return overfeat.overfeat_arg_scope(weight_decay=weight_decay)


def network(name):
    """``vgg_a``, ``vgg_16``, ``vgg_19``, ``alexnet_v2`` or ``overfeat`` of ``tf_slim.nets``."""

    def build(images, num_classes, is_training, scope, dropout_keep_prob=DROPOUT_KEEP):
        compat.apply()
        from tf_slim.nets import alexnet, overfeat, vgg

        fn = {"alexnet_v2": alexnet.alexnet_v2,
              "overfeat": overfeat.overfeat}.get(name) or getattr(vgg, name)
        return fn(images, num_classes=num_classes, is_training=is_training,
                  dropout_keep_prob=dropout_keep_prob, scope=scope)

    return build
