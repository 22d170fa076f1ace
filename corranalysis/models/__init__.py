"""The model zoo: ``create(name, in_channels, num_classes)`` and ``resolve_model`` for a name,
``package.module:factory`` or a module of your own."""

from ._zoo import (
    CNN4,
    FC2,
    MODELS,
    VGG16,
    BasicBlock,
    Bottleneck,
    LeNet5,
    ResNet,
    available,
    count_parameters,
    create,
    default_image_size,
    model_name,
    resolve_model,
)

__all__ = ["CNN4", "FC2", "MODELS", "VGG16", "BasicBlock", "Bottleneck", "LeNet5", "ResNet",
           "available", "count_parameters", "create", "default_image_size", "model_name",
           "resolve_model"]
