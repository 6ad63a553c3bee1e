"""VGG 16/19 and AlexNet v2 from ``tf_slim.nets``: no BatchNorm, dropout in the head.

Their fully connected layers are VALID convolutions sized for 224 px inputs, so the
graph only builds for inputs whose final feature map is exactly the kernel size.
"""

from slimtune import compat

DROPOUT_KEEP = 0.5  # tf_slim's dropout_keep_prob for VGG and AlexNet v2


def vgg_arg_scope(weight_decay, bn):
    compat.apply()
    from tf_slim.nets import vgg

    return vgg.vgg_arg_scope(weight_decay=weight_decay)


def alexnet_arg_scope(weight_decay, bn):
    compat.apply()
    from tf_slim.nets import alexnet

    return alexnet.alexnet_v2_arg_scope(weight_decay=weight_decay)


def network(name):
    """``vgg_16``, ``vgg_19`` or ``alexnet_v2`` of ``tf_slim.nets``."""

    def build(images, num_classes, is_training, scope, dropout_keep_prob=DROPOUT_KEEP):
        compat.apply()
        from tf_slim.nets import alexnet, vgg

        fn = alexnet.alexnet_v2 if name == "alexnet_v2" else getattr(vgg, name)
        return fn(images, num_classes=num_classes, is_training=is_training,
                  dropout_keep_prob=dropout_keep_prob, scope=scope)

    return build
