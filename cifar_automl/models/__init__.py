"""Model zoo for 32x32 inputs: `build_model(name, num_classes, width)`; `darts:PATH` is a searched DARTS cell."""
from . import torchvision_cifar
from .airbench import Airbench
from .lenet import LeNet
from .resnet9 import ResNet9

NATIVE = {
    'airbench': lambda num_classes, width, whiten: Airbench(num_classes, width, whiten),
    'resnet9': lambda num_classes, width, whiten: ResNet9(num_classes, width),
    'lenet': lambda num_classes, width, whiten: LeNet(num_classes),
}


def model_names():
    return list(NATIVE) + list(torchvision_cifar.ADAPTERS)


DARTS_PREFIX = 'darts:'


def is_model_name(name):
    """A zoo name, or darts:PATH (the file itself is checked by arch_files.load_arch)."""
    return name in NATIVE or name in torchvision_cifar.ADAPTERS or (
        name.startswith(DARTS_PREFIX) and len(name) > len(DARTS_PREFIX))


def build_model(name, num_classes=10, width=64, num_cells=8, whiten=True, auxiliary=False, drop_path_prob=0.0):
    """`whiten`: airbench's first layer is a PatchWhitening (fitted later by recipe.fit_whitening);
    the other models have no such layer and ignore it. `auxiliary`, `drop_path_prob`: a darts: model's
    auxiliary head and drop path (models/darts.py); the other models have neither."""
    if name.startswith(DARTS_PREFIX):
        from ..arch_files import load_arch
        from .darts import build_darts
        return build_darts(load_arch(name[len(DARTS_PREFIX):]), num_classes, width, num_cells, auxiliary,
                           drop_path_prob)
    if name in NATIVE:
        return NATIVE[name](num_classes, width, whiten)
    if name in torchvision_cifar.ADAPTERS:
        return torchvision_cifar.build(name, num_classes)
    raise ValueError(f'unknown model {name!r}; expected one of {", ".join(model_names())}')
