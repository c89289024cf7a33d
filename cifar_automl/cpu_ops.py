"""Faster CPU forms of the supernets' slowest ops, swapped into a built network in place: the same
parameters and state_dict, the same outputs up to float rounding.

A profile of one search step on the CPU (docs/darts.md) puts most of its time in ops that
PyTorch's CPU kernels run far below the machine's rate:
- a 3x3 average pool of stride 1 that leaves the zero padding out of its count (NAS-Bench-201's
  and DARTS's avg_pool_3x3): `avg_pool2d` took 8-17 ms forward and backward where two separable
  sums of shifted views take 1-6 ms (BoxAverage3x3);
- depthwise convolutions of 5x5 kernels or dilation 2 (DARTS's separable and dilated ops), which
  miss oneDNN's fast depthwise path: the same convolution written as a dense one with a
  block-diagonal kernel does C times the multiplications and was still 1.2-5.6x faster for some
  shapes, slower for others; so each shape is timed once both ways and keeps the faster
  (DepthwiseConv2d).
"""
import time

import torch
import torch.nn.functional as F


class BoxAverage3x3(torch.nn.Module):
    """nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False) as sums of shifted views,
    divided by how many of the 9 pixels lie inside the image."""

    def forward(self, x):
        padded = F.pad(x, (1, 1, 1, 1))
        rows = padded[..., :, :-2] + padded[..., :, 1:-1] + padded[..., :, 2:]
        total = rows[..., :-2, :] + rows[..., 1:-1, :] + rows[..., 2:, :]
        return total / inside_count(x.shape[-2:], x.device, x.dtype)


_COUNTS = {}


def inside_count(size, device, dtype):
    """(H, W) map of how many pixels of each 3x3 window are inside the image (9, 6 at edges, 4 at corners)."""
    key = (tuple(size), device, dtype)
    if key not in _COUNTS:
        ones = F.pad(torch.ones(1, 1, *size, device=device, dtype=dtype), (1, 1, 1, 1))
        _COUNTS[key] = F.avg_pool2d(ones, 3, stride=1) * 9
    return _COUNTS[key]


class DepthwiseConv2d(torch.nn.Conv2d):
    """A depthwise nn.Conv2d (groups == channels) that runs as whichever of the grouped convolution
    and the dense block-diagonal one was faster the first time this process met its shape (input,
    kernel, stride, dilation; forward and backward, the best of three each way). Every module of a
    shape shares the choice, so that the timing noise of one does not split them."""

    choices = {}  # shape -> 'grouped' or 'dense', per process

    @classmethod
    def like(cls, conv):
        """A DepthwiseConv2d holding `conv`'s own parameters."""
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                  conv.groups, conv.bias is not None, device=conv.weight.device, dtype=conv.weight.dtype)
        new.weight, new.bias = conv.weight, conv.bias
        return new

    def _conv_forward(self, x, weight, bias):
        key = (tuple(x.shape), self.kernel_size, self.stride, self.dilation, x.dtype, torch.is_grad_enabled())
        choice = self.choices.get(key)
        if choice is None:
            choice = self.choices[key] = self._time_both(x, weight, bias)
        if choice == 'dense':
            return F.conv2d(x, self._block_diagonal(weight), bias, self.stride, self.padding, self.dilation)
        return super()._conv_forward(x, weight, bias)

    def _block_diagonal(self, weight):
        eye = torch.eye(self.out_channels, device=weight.device, dtype=weight.dtype)
        return weight * eye[:, :, None, None]  # (C, 1, k, k) * (C, C, 1, 1): channel i's kernel at [i, i]

    def _time_both(self, x, weight, bias):
        probe = x.detach().requires_grad_(torch.is_grad_enabled())
        seconds = {}
        for name in ('grouped', 'dense') * 3:
            start = time.perf_counter()
            with torch.enable_grad() if torch.is_grad_enabled() else torch.no_grad():
                if name == 'dense':
                    out = F.conv2d(probe, self._block_diagonal(weight), bias, self.stride, self.padding, self.dilation)
                else:
                    out = super()._conv_forward(probe, weight, bias)
                if out.requires_grad:
                    torch.autograd.grad(out.sum(), [probe, weight])
            seconds[name] = min(seconds.get(name, float('inf')), time.perf_counter() - start)
        return min(seconds, key=seconds.get)


def speed_up(model):
    """Swap the slow ops of `model` for their faster CPU forms, in place; returns how many were swapped.
    Called on the CPU only: on a GPU the library kernels are the fast ones."""
    swapped = 0
    for parent in model.modules():
        for name, child in parent.named_children():
            if (type(child) is torch.nn.AvgPool2d and child.kernel_size in (3, (3, 3))
                    and child.stride in (1, (1, 1)) and child.padding in (1, (1, 1)) and not child.count_include_pad):
                setattr(parent, name, BoxAverage3x3())
                swapped += 1
            elif (isinstance(child, torch.nn.Conv2d) and not isinstance(child, DepthwiseConv2d)  # NNI's MutableConv2d too
                  and child.groups == child.in_channels == child.out_channels > 1 and child.padding_mode == 'zeros'):
                setattr(parent, name, DepthwiseConv2d.like(child))
                swapped += 1
    return swapped
