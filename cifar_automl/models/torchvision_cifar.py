"""The course lab's torchvision models, adapted to 32x32 inputs.

ImageNet models open with a stride-2 stem and a max-pool that turn a 32x32 image
into 8x8 maps before the first block; that is why the lab's runs stalled at
85-88%. Here the stem keeps full resolution (3x3, stride 1, no max-pool), as in
kuangliu/pytorch-cifar, so the stages see 32/16/8/4-pixel maps.
"""
from torch import nn


def _stem_conv(conv):
    """A 3x3 stride-1 replacement for an ImageNet stem convolution."""
    return nn.Conv2d(conv.in_channels, conv.out_channels, 3, stride=1, padding=1, bias=conv.bias is not None)


def _resnet(builder, num_classes):
    model = builder(num_classes=num_classes)
    model.conv1 = _stem_conv(model.conv1)
    model.maxpool = nn.Identity()
    return model


def _vgg(builder, num_classes):
    # Five max-pools take 32x32 to 1x1: the 512 features feed one linear layer rather
    # than ImageNet's 7x7-upsampled 25088->4096->4096 head (120M parameters of noise).
    model = builder(num_classes=num_classes)
    model.avgpool = nn.Identity()
    model.classifier = nn.Linear(512, num_classes)
    return model


def _densenet(builder, num_classes):
    model = builder(num_classes=num_classes)
    model.features.conv0 = _stem_conv(model.features.conv0)
    model.features.pool0 = nn.Identity()
    return model


def _squeezenet(builder, num_classes):
    model = builder(num_classes=num_classes)
    model.features[0] = _stem_conv(model.features[0])
    model.features[2] = nn.Identity()
    # The ReLU after the final 1x1 conv clamps the logits: once they are all negative no
    # gradient flows and the lab's runs sat at 10%. Logits stay linear here.
    model.classifier = nn.Sequential(model.classifier[0], model.classifier[1], nn.AdaptiveAvgPool2d(1))
    return model


def _shufflenet(builder, num_classes):
    model = builder(num_classes=num_classes)
    model.conv1[0].stride = (1, 1)
    model.maxpool = nn.Identity()
    return model


def _mobilenet_v2(builder, num_classes):
    model = builder(num_classes=num_classes)
    model.features[0][0].stride = (1, 1)
    model.features[2].conv[1][0].stride = (1, 1)  # first stride-2 block, as kuangliu's MobileNetV2
    return model


def _mnasnet(builder, num_classes):
    model = builder(num_classes=num_classes)
    model.layers[0].stride = (1, 1)
    model.layers[8][0].layers[3].stride = (1, 1)  # first stride-2 stack's depthwise conv
    return model


ADAPTERS = {
    'resnet18': _resnet, 'resnet50': _resnet, 'resnext50_32x4d': _resnet,
    'vgg16': _vgg, 'vgg16_bn': _vgg,
    'densenet121': _densenet,
    'squeezenet1_1': _squeezenet,
    'shufflenet_v2_x1_0': _shufflenet,
    'mobilenet_v2': _mobilenet_v2,
    'mnasnet1_0': _mnasnet,
}


def build(name, num_classes):
    import torchvision.models  # imported here: it costs a second of start-up the default net does not need
    return ADAPTERS[name](getattr(torchvision.models, name), num_classes)
