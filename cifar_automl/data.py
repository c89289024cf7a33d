"""Datasets as uint8 tensors (N, 3, 32, 32), parsed once and cached.

CIFAR-10 comes from the official "python version" archive; digits is
scikit-learn's bundled 8x8 handwritten digits, upscaled to the same 3x32x32
input so that every model and every test runs offline.
"""
import dataclasses
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import torch

from .errors import ConfigError
from .files import atomic_save, exclusive_lock

CIFAR10_URL = 'https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz'
CIFAR10_MD5 = 'c58f30108f718f92721af3b95e74349a'
CIFAR10_ARCHIVE = 'cifar-10-python.tar.gz'
CIFAR10_DIR = 'cifar-10-batches-py'
CIFAR10_CACHE = 'cifar10_uint8.pt'
CIFAR10_LOCK = '.cifar10.lock'  # held while one process downloads, extracts or caches
CIFAR10_CLASSES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck')

# Per-dataset defaults of --val_size -1.
DEFAULT_VAL_SIZE = {'cifar10': 5000, 'digits': 300}


@dataclasses.dataclass
class Split:
    images: torch.Tensor  # uint8 (N, 3, 32, 32)
    labels: torch.Tensor  # int64 (N,)

    def __len__(self):
        return len(self.labels)


@dataclasses.dataclass
class ImageData:
    train: Split
    val: Split
    test: Split
    classes: tuple

    @property
    def num_classes(self):
        return len(self.classes)


def load_dataset(dataset, data_dir='data', val_size=-1, subset=0, seed=0):
    """Train/val/test splits of `dataset`. The validation split is held out of the
    training images (seeded, class-balanced) so that tuning never sees the test set."""
    train, test, classes = load_train_test(dataset, data_dir)
    if val_size < 0:
        val_size = DEFAULT_VAL_SIZE[dataset]
    if val_size == 0:
        raise ConfigError('--val_size 0 leaves no validation images, and the best epoch and the NNI metric '
                          'are chosen on them; use -1 (the default) or a positive count')
    train, val = balanced_split(train, val_size, len(classes), seed, source='--val_size')
    return ImageData(take_subset(train, subset, len(classes), seed + 1), val, test, classes)


def load_train_test(dataset, data_dir='data'):
    """(train, test, class names): the dataset's own split, before any validation hold-out."""
    if dataset == 'cifar10':
        return (*load_cifar10(data_dir), CIFAR10_CLASSES)
    if dataset == 'digits':
        return (*load_digits(), tuple(str(d) for d in range(10)))
    raise ConfigError(f'--dataset: unknown dataset {dataset!r}; expected cifar10 or digits')


def take_subset(split, subset, num_classes, seed):
    """`subset` images of `split`, class-balanced (0: all of them)."""
    if not subset or subset == len(split):
        return split
    if subset > len(split):
        raise ConfigError(f'--subset {subset} exceeds the {len(split)} training images')
    # The held-out side of the split has exactly `subset` images; the kept side could have more.
    return balanced_split(split, subset, num_classes, seed, source='--subset')[1]


def balanced_split(split, held_out, num_classes, seed, source):
    """Split off `held_out` images, as equal a share of each class as possible."""
    if not 0 <= held_out < len(split):
        raise ConfigError(f'{source}: cannot hold out {held_out} of {len(split)} training images; '
                          f'allowed: 0 to {len(split) - 1}')
    generator = torch.Generator().manual_seed(seed)
    per_class = [(split.labels == c).nonzero().flatten() for c in range(num_classes)]
    per_class = [idx[torch.randperm(len(idx), generator=generator)] for idx in per_class]
    quota = [held_out // num_classes + (c < held_out % num_classes) for c in range(num_classes)]
    held = torch.cat([idx[:q] for idx, q in zip(per_class, quota)])
    kept = torch.cat([idx[q:] for idx, q in zip(per_class, quota)])
    held, kept = held.sort().values, kept.sort().values
    return Split(split.images[kept], split.labels[kept]), Split(split.images[held], split.labels[held])


def load_cifar10(data_dir):
    """(train, test) from DATA_DIR/cifar-10-batches-py, downloading the archive if absent.
    The parsed tensors are cached beside it, so later trials skip the unpickling. NNI may start
    many trials at once on a fresh DATA_DIR: one of them downloads and caches while the others
    wait for it, and the cache is written atomically, so none reads half a file."""
    data_dir = Path(data_dir)
    cache = data_dir / CIFAR10_CACHE
    tensors = read_cache(cache, notice=True)
    if tensors is None:
        created = not data_dir.exists()
        try:
            with exclusive_lock(data_dir / CIFAR10_LOCK):
                tensors = read_cache(cache)  # written meanwhile by the process that held the lock
                if tensors is None:
                    tensors = build_cache(data_dir, cache)
        except BaseException:
            if created and [p.name for p in data_dir.iterdir()] == [CIFAR10_LOCK]:
                shutil.rmtree(data_dir)  # a mistyped --data_dir, offline: leave no empty directory behind
            raise
    train_images, train_labels, test_images, test_labels = tensors
    return Split(train_images, train_labels), Split(test_images, test_labels)


def read_cache(cache, notice=False):
    """The cached (train images, train labels, test images, test labels), or None if there is no
    readable cache (a partial copy, say): the batches rebuild it."""
    if not cache.exists():
        return None
    try:
        tensors = torch.load(cache, mmap=True)
        if len(tensors) == 4 and all(isinstance(t, torch.Tensor) for t in tensors):
            return tensors
        error = 'not the 4 tensors of a cache'
    except (RuntimeError, EOFError, pickle.UnpicklingError, TypeError) as reason:
        error = str(reason).splitlines()[0]
    if notice:
        print(f'notice: {cache} is unreadable ({error}); rebuilding it from {cache.parent / CIFAR10_DIR}',
              flush=True)
    return None


def build_cache(data_dir, cache):
    batches = data_dir / CIFAR10_DIR
    if not batches.is_dir():
        download_cifar10(data_dir)
    train = [read_cifar_batch(batches / f'data_batch_{i}') for i in range(1, 6)]
    tensors = (torch.cat([images for images, _ in train]), torch.cat([labels for _, labels in train]),
               *read_cifar_batch(batches / 'test_batch'))
    atomic_save(tensors, cache)
    return tensors


def read_cifar_batch(path):
    """One pickled batch of the official archive: 'data' is (N, 3072) uint8 in CHW order."""
    if not path.exists():
        raise ConfigError(f'{path} is missing: {path.parent} is not a complete CIFAR-10 '
                          f'"python version" directory (data_batch_1..5, test_batch)')
    try:
        with open(path, 'rb') as f:
            batch = pickle.load(f, encoding='bytes')
        images = np.asarray(batch[b'data'], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch[b'labels'], dtype=np.int64)
        if len(images) != len(labels):
            raise ValueError(f'{len(images)} images but {len(labels)} labels')
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, AttributeError) as error:
        raise ConfigError(f'{path} is damaged or incomplete ({type(error).__name__}: {error}). Restore it: delete '
                          f'{path.parent} and run again, which extracts {path.parent.parent / CIFAR10_ARCHIVE} '
                          f'again (or downloads it when absent); or extract the archive by hand '
                          f'(tar xzf {CIFAR10_ARCHIVE} in {path.parent.parent})') from None
    return torch.from_numpy(images.copy()), torch.from_numpy(labels)


def download_cifar10(data_dir):
    """Fetch and extract the official archive (md5-checked). An archive already placed in
    DATA_DIR is checked and used without downloading."""
    from torchvision.datasets.utils import download_and_extract_archive
    os.makedirs(data_dir, exist_ok=True)
    try:
        download_and_extract_archive(CIFAR10_URL, str(data_dir), filename=CIFAR10_ARCHIVE, md5=CIFAR10_MD5)
    except (OSError, RuntimeError) as error:  # URLError is an OSError; a bad md5 is a RuntimeError
        raise ConfigError(
            f'CIFAR-10 is not in {data_dir}/{CIFAR10_DIR} and could not be downloaded ({error}). '
            f'On a machine that is offline, fetch {CIFAR10_URL} elsewhere and place it as '
            f'{data_dir}/{CIFAR10_ARCHIVE} (it is extracted on the next run), or extract it so that '
            f'{data_dir}/{CIFAR10_DIR} exists; or pass --data_dir DIR where it already is.') from error


def load_digits(test_size=297, seed=0):
    """scikit-learn's 1797 8x8 digits (values 0..16) as 3x32x32 uint8 images: real
    handwriting, bundled with the package, so quickstarts and tests need no download."""
    from sklearn.datasets import load_digits as sklearn_digits
    bunch = sklearn_digits()
    small = torch.from_numpy(bunch.images).float().unsqueeze(1) * (255 / 16)
    big = torch.nn.functional.interpolate(small, size=32, mode='bilinear', align_corners=False)
    images = big.round().clamp(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    labels = torch.from_numpy(bunch.target).long()
    return balanced_split(Split(images, labels), test_size, 10, seed, source='digits test split')
