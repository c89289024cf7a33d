"""Batched augmentation on the training device, and a loader that feeds it.

The whole split is moved to the device once, as uint8; each batch is then
normalised and augmented with a few tensor operations (no PIL, no per-image
Python), as in Keller Jordan's airbench. Normalising per batch rather than the
whole split up front keeps a trial's start-up under a second of data work.
"""
import functools
import math

import torch

# Channel statistics of the CIFAR-10 training images, in 0..255 pixel units.
CIFAR10_MEAN = (125.307, 122.961, 113.8575)
CIFAR10_STD = (62.9932, 62.0887, 66.7048)


@functools.cache
def channel_stats(device):
    """(mean, std) as (1, 3, 1, 1) tensors on `device`, made once: building them from Python numbers is a
    host-to-device copy that blocks the CPU until the GPU catches up, once per batch if made there."""
    return tuple(torch.tensor(stats, device=device).view(1, 3, 1, 1) for stats in (CIFAR10_MEAN, CIFAR10_STD))


def normalize(images_uint8, dtype=torch.float32):
    mean, std = channel_stats(images_uint8.device)
    return ((images_uint8.float() - mean) / std).to(dtype)


def batch_flip_lr(images, generator=None):
    """Mirror a random half of the images left-right."""
    return flip_where(images, torch.rand(len(images), device=images.device, generator=generator) < 0.5)


def batch_crop(images, padding, generator=None):
    """Pad each side by `padding` (reflecting) and take a random crop of the original size."""
    n, _, h, w = images.shape
    padded = torch.nn.functional.pad(images, (padding,) * 4, mode='reflect')
    dy = torch.randint(0, 2 * padding + 1, (n, 1), device=images.device, generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n, 1), device=images.device, generator=generator)
    rows = (dy + torch.arange(h, device=images.device)).view(n, 1, h, 1)
    cols = (dx + torch.arange(w, device=images.device)).view(n, 1, 1, w)
    batch = torch.arange(n, device=images.device).view(n, 1, 1, 1)
    channel = torch.arange(images.shape[1], device=images.device).view(1, -1, 1, 1)
    return padded[batch, channel, rows, cols]


def batch_cutout(images, size, generator=None):
    """Zero a size x size square at a random centre in each image (DeVries & Taylor 2017);
    near the border the square is cut by the edge, as in the paper."""
    n, _, h, w = images.shape
    cy = torch.randint(0, h, (n, 1), device=images.device, generator=generator)
    cx = torch.randint(0, w, (n, 1), device=images.device, generator=generator)
    top, left = cy - size // 2, cx - size // 2
    ys = torch.arange(h, device=images.device).view(1, h)
    xs = torch.arange(w, device=images.device).view(1, w)
    in_rows = (ys >= top) & (ys < top + size)  # (n, h)
    in_cols = (xs >= left) & (xs < left + size)  # (n, w)
    square = in_rows.view(n, 1, h, 1) & in_cols.view(n, 1, 1, w)
    return images.masked_fill(square, 0)


def flip_where(images, mask):
    return torch.where(mask.view(-1, 1, 1, 1), images.flip(-1), images)


def augment(images, crop_padding=0, flip=False, cutout=0, generator=None):
    """flip: False, True (each image at random), or a boolean tensor saying which images to mirror."""
    if crop_padding:
        images = batch_crop(images, crop_padding, generator)
    if isinstance(flip, torch.Tensor):
        images = flip_where(images, flip)
    elif flip:
        images = batch_flip_lr(images, generator)
    if cutout:
        images = batch_cutout(images, cutout, generator)
    return images


class BatchLoader:
    """Iterates normalised (images, labels) batches of a Split held on `device`.

    With `train=True` the order is reshuffled and each batch augmented every epoch,
    and the last partial batch is dropped (it would make BatchNorm noisy).

    Alternating flip (airbench): each image is mirrored at random in the first epoch, then
    the other way in every odd epoch and the same way in every even one. Over any two epochs
    the network sees both sides of every image, where independent coin flips show half of
    the images one side only; it is worth most in short runs.
    """

    def __init__(self, split, batch_size, device, train=False, crop_padding=0, flip=False, cutout=0,
                 seed=0, channels_last=False, alternate_flip=False):
        self.images = split.images.to(device)
        self.labels = split.labels.to(device)
        self.batch_size = batch_size
        self.train = train
        self.augmentation = dict(crop_padding=crop_padding, cutout=cutout)
        self.flip = flip
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.first_flips = None
        if flip and alternate_flip:
            self.first_flips = torch.rand(len(self.labels), device=device, generator=self.generator) < 0.5
        self.epoch = 0  # counts passes, for the alternating flip; a resumed run sets it
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __len__(self):
        if self.train:
            return len(self.labels) // self.batch_size
        return math.ceil(len(self.labels) / self.batch_size)

    def __iter__(self):
        n = len(self.labels)
        if self.train:
            order = torch.randperm(n, device=self.labels.device, generator=self.generator)
        else:
            order = torch.arange(n, device=self.labels.device)
        flips = self.flip if self.first_flips is None else self.first_flips ^ bool(self.epoch % 2)
        self.epoch += self.train
        for step in range(len(self)):
            index = order[step * self.batch_size:(step + 1) * self.batch_size]
            images = normalize(self.images[index])
            if self.train:
                flip = flips[index] if isinstance(flips, torch.Tensor) else flips
                images = augment(images, flip=flip, generator=self.generator, **self.augmentation)
            yield images.contiguous(memory_format=self.memory_format), self.labels[index]
