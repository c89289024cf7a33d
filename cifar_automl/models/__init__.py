"""Model zoo for 32x32 inputs: `build_model(name, num_classes, width)`."""
from . import torchvision_cifar
from .lenet import LeNet
from .resnet9 import ResNet9

NATIVE = {
    'resnet9': lambda num_classes, width: ResNet9(num_classes, width),
    'lenet': lambda num_classes, width: LeNet(num_classes),
}


def model_names():
    return list(NATIVE) + list(torchvision_cifar.ADAPTERS)


def is_model_name(name):
    return name in NATIVE or name in torchvision_cifar.ADAPTERS


def build_model(name, num_classes=10, width=64):
    if name in NATIVE:
        return NATIVE[name](num_classes, width)
    if name in torchvision_cifar.ADAPTERS:
        return torchvision_cifar.build(name, num_classes)
    raise ValueError(f'unknown model {name!r}; expected one of {", ".join(model_names())}')
