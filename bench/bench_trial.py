"""Training throughput of the trial's pipeline against a course-style one, how much of this machine's
matrix-multiply rate it uses, and start-up time.

    python bench/bench_trial.py --data_dir DIR      # DIR/cifar-10-batches-py, real CIFAR-10 images

For each model, one epoch over the same `--images` training images at the same batch size:
- course-style: the lab's script, torchvision PIL transforms (RandomCrop(32, padding=4),
  RandomHorizontalFlip, ToTensor, Normalize) per image through a DataLoader, fp32 model;
- this repo: cifar_automl's BatchLoader (tensor augmentation of whole batches) and the
  trial's training step (channels_last, bf16 autocast on CPUs with bf16 units), and the same without them
  (fp32, NCHW) to show what each part buys.
Images/s include augmentation and the optimizer step. The training FLOP/s of the trial's step
(FLOPs per image counted by torch.utils.flop_counter, forward and backward) are printed as a
fraction of the rate of a large matrix multiply in the same dtype, measured in the same run: the
ceiling a convolutional network can approach. Then the time from `python trial/main.py` starting
to its first training step, with the dataset cache warm.
"""
import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cifar_automl.config import ArgumentParser  # noqa: E402
from cifar_automl.augment import CIFAR10_MEAN, CIFAR10_STD, BatchLoader  # noqa: E402
from cifar_automl.data import Split, load_cifar10  # noqa: E402
from cifar_automl.models import build_model  # noqa: E402
from cifar_automl.training import (autocast_dtype, build_optimizer, cpu_has_bf16_units, matmul_rate,  # noqa: E402
                                   prepare_model, train_epoch)


class CourseStyleCifar(torch.utils.data.Dataset):
    """What torchvision.datasets.CIFAR10 does per item: a PIL image, then the transforms."""

    def __init__(self, split, transform):
        self.images = split.images.permute(0, 2, 3, 1).numpy()  # HWC, as torchvision keeps them
        self.labels = split.labels.tolist()
        self.transform = transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        from PIL import Image
        return self.transform(Image.fromarray(self.images[index])), self.labels[index]


def course_style_epoch(model_name, split, batch_size, workers):
    import torchvision.transforms as T
    transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize([m / 255 for m in CIFAR10_MEAN], [s / 255 for s in CIFAR10_STD])])
    loader = torch.utils.data.DataLoader(CourseStyleCifar(split, transform), batch_size=batch_size, shuffle=True,
                                         num_workers=workers, drop_last=True)
    torch.manual_seed(0)
    model = build_model(model_name, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    model.train()
    seen, start = 0, time.perf_counter()
    for images, labels in loader:
        loss = nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen += len(labels)
    return seen / (time.perf_counter() - start)


def training_flops_per_image(model_name):
    from torch.utils.flop_counter import FlopCounterMode
    model, images = build_model(model_name, 10), torch.randn(8, 3, 32, 32)
    with FlopCounterMode(display=False) as counter:
        model(images).sum().backward()
    return counter.get_total_flops() / len(images)


def repo_epoch(model_name, split, batch_size, fast):
    torch.manual_seed(0)
    device = torch.device('cpu')
    model = prepare_model(build_model(model_name, 10), device, channels_last=fast, compile_model=False)
    optimizer = build_optimizer('sgd', model.parameters(), 0.05, 0.9, 5e-4, nesterov=True)
    loader = BatchLoader(split, batch_size, device, train=True, crop_padding=4, flip=True, channels_last=fast)
    amp = autocast_dtype('auto' if fast else 'fp32', device)
    stats = train_epoch(model, loader, optimizer, nn.CrossEntropyLoss(), lambda step: 0.05, 0, 1, amp)
    return stats.images_per_s, amp or torch.float32


def time_to_first_step(data_dir):
    command = [sys.executable, str(REPO / 'trial' / 'main.py'), '--data_dir', str(data_dir), '--epochs', '1',
               '--output_dir', '/tmp/bench_trial_startup', '--log_frequency', '0']
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        for line in process.stdout:
            if line.startswith('setup took'):  # printed just before the first training step
                return time.perf_counter() - start
    finally:
        process.kill()
        process.wait()
    raise RuntimeError('the trial never reached its first step')


def main():
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data_dir', required=True, help='the directory holding cifar-10-batches-py')
    parser.add_argument('--models', default='lenet,resnet9,airbench', help='comma-separated; airbench is the '
                        'default model, resnet9 the one before it (default: lenet,resnet9,airbench)')
    parser.add_argument('--images', type=int, default=10000, help='training images in the benchmark epoch '
                        '(default: 10000)')
    parser.add_argument('--batch_size', type=int, default=256, help='the batch of every pipeline (default: 256)')
    parser.add_argument('--workers', type=int, default=2, help='DataLoader workers of the course-style pipeline '
                        '(default: 2)')
    args = parser.parse_args()

    train, _ = load_cifar10(args.data_dir)  # also warms the uint8 cache for the start-up timing
    pick = torch.from_numpy(np.random.default_rng(0).permutation(len(train))[:args.images])
    split = Split(train.images[pick], train.labels[pick])
    peak = {dtype: matmul_rate(dtype) for dtype in (torch.float32, torch.bfloat16)}
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, {args.images} images, '
          f'batch {args.batch_size}; matmul {peak[torch.float32] / 1e9:.0f} GFLOP/s fp32, '
          f'{peak[torch.bfloat16] / 1e9:.0f} GFLOP/s bf16 (CPU bf16 units: {cpu_has_bf16_units()})')
    print(f'{"model":>8} {"course img/s":>13} {"fp32 NCHW":>10} {"trial":>6} {"dtype":>9} {"speed-up":>9} '
          f'{"GFLOP/img":>10} {"GFLOP/s":>8} {"of matmul":>10}')
    for name in args.models.split(','):
        course = course_style_epoch(name, split, args.batch_size, args.workers)
        plain, _ = repo_epoch(name, split, args.batch_size, fast=False)
        fast, dtype = repo_epoch(name, split, args.batch_size, fast=True)
        flops = training_flops_per_image(name)
        print(f'{name:>8} {course:13.0f} {plain:10.0f} {fast:6.0f} {str(dtype)[6:]:>9} {fast / course:8.2f}x '
              f'{flops / 1e9:10.3f} {fast * flops / 1e9:8.1f} {fast * flops / peak[dtype]:9.1%}', flush=True)
    print(f'start to first training step (cached dataset): {time_to_first_step(args.data_dir):.2f} s')


if __name__ == '__main__':
    main()
