"""airbench's network, the default: the fastest known route to 94% on CIFAR-10.

After Keller Jordan's airbench94 (2024), which reaches 94.0% in 9.9 epochs, itself after hlb-CIFAR10
and David Page's ResNet-9: a 2x2 patch-whitening layer (recipe.PatchWhitening, fitted on training
images rather than learned) and GELU, then three groups of conv -> max-pool -> BN -> GELU -> conv ->
BN -> GELU with widths (w, 4w, 4w) and no residuals, a global max-pool and a linear head. The
first layer has no padding, so the groups see 31/15/7/3-pixel maps.

The recipe's other parts (Dirac init, BatchNorm momentum and frozen scale, the logit scale) act on
any model and live in cifar_automl/recipe.py.
"""
from torch import nn

from ..recipe import PatchWhitening


class ConvGroup(nn.Module):
    def __init__(self, c_in, c_out):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(c_out)
        self.act = nn.GELU()

    def forward(self, x):
        x = self.act(self.norm1(self.pool(self.conv1(x))))
        return self.act(self.norm2(self.conv2(x)))


class Airbench(nn.Module):
    def __init__(self, num_classes=10, width=64, whiten=True):
        super().__init__()
        # Without whitening the same 2x2 layer is an ordinary learned convolution, so that
        # switching the part off changes how the layer is set, not the network's shape.
        self.whiten = PatchWhitening() if whiten else nn.Conv2d(3, PatchWhitening.OUT_CHANNELS, 2)
        self.act = nn.GELU()
        widths = (width, 4 * width, 4 * width)
        self.groups = nn.Sequential(ConvGroup(PatchWhitening.OUT_CHANNELS, widths[0]),
                                    ConvGroup(widths[0], widths[1]), ConvGroup(widths[1], widths[2]))
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.head = nn.Linear(widths[2], num_classes, bias=False)

    def forward(self, x):
        return self.head(self.pool(self.groups(self.act(self.whiten(x)))).flatten(1))
