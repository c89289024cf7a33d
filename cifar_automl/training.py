"""The training loop shared by the trial and the retrain: optimizer, per-step cosine
learning rate, mixed precision, gradient clipping, evaluation and early stopping of
a diverged run."""
import contextlib
import dataclasses
import math
import time

import torch
from torch import nn

from .augment import BatchLoader
from .config import ConfigError
from .data import load_dataset

EVAL_BATCH_SIZE = 1000


def start_run(cfg, cpu_bf16_pays=True):
    """The first steps of a trial and of a retrain: threads, seed, device, autocast dtype and
    the data splits. Returns (device, amp_dtype, data); raises ConfigError."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    device = select_device(cfg.device)
    amp_dtype = autocast_dtype(cfg.precision, device, cpu_bf16_pays)
    data = load_dataset(cfg.dataset, cfg.data_dir, cfg.val_size, cfg.subset, cfg.seed)
    if cfg.batch_size > len(data.train):
        raise ConfigError(f'--batch_size {cfg.batch_size} exceeds the {len(data.train)} training images')
    return device, amp_dtype, data


def make_loaders(cfg, data, device):
    """(train, val, test) loaders: the training one shuffles and augments as cfg asks."""
    train = BatchLoader(data.train, cfg.batch_size, device, train=True, crop_padding=cfg.crop_padding,
                        flip=cfg.flip, cutout=cfg.cutout, seed=cfg.seed, channels_last=cfg.channels_last)
    val, test = (BatchLoader(split, EVAL_BATCH_SIZE, device, channels_last=cfg.channels_last)
                 for split in (data.val, data.test))
    return train, val, test


def log(message):
    print(message, flush=True)


def select_device(name):
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if name == 'cuda' and not torch.cuda.is_available():
        raise ConfigError('--device cuda: no CUDA GPU is visible to torch; use --device cpu or auto')
    return torch.device(name)


def autocast_dtype(precision, device, cpu_bf16_pays=True):
    """bf16 where the hardware has it (with AVX512-BF16 it trains resnet9 ~2.8x faster than
    fp32 on CPU, bench/bench_trial.py), fp16 on GPUs without bf16; CPUs without bf16
    units emulate it slower than fp32, so they stay in fp32. `cpu_bf16_pays=False` keeps a
    network of depthwise convolutions (DARTS) in fp32 on CPU: there bf16 ran slower (retrain
    174 vs 245 img/s), and torch 2.14's channels-last bf16 backward of its dilated 5x5
    convolution returned non-finite gradients."""
    if precision == 'fp32':
        return None
    if precision == 'auto':
        if device.type == 'cuda':
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if cpu_bf16_pays and torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return torch.bfloat16
        return None
    return {'bf16': torch.bfloat16, 'fp16': torch.float16}[precision]


def autocast(device, dtype):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def build_optimizer(name, params, lr, momentum, weight_decay, nesterov):
    if name == 'sgd':
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                               nesterov=nesterov and momentum > 0)
    if name == 'adam':
        return torch.optim.Adam(params, lr=lr, betas=(momentum, 0.999), weight_decay=weight_decay)
    if name == 'adamw':
        return torch.optim.AdamW(params, lr=lr, betas=(momentum, 0.999), weight_decay=weight_decay)
    if name == 'rmsprop':
        return torch.optim.RMSprop(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == 'adagrad':
        return torch.optim.Adagrad(params, lr=lr, weight_decay=weight_decay)
    raise ConfigError(f'--optimizer: unknown optimizer {name!r}')


def lr_at(step, total_steps, initial_lr, ending_lr, warmup_steps=0):
    """Linear warmup to initial_lr, then one cosine from initial_lr to ending_lr over the
    remaining steps of the whole run (not restarted each epoch)."""
    if step < warmup_steps:
        return initial_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps - 1)
    return ending_lr + (initial_lr - ending_lr) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@dataclasses.dataclass
class Evaluation:
    loss: float
    accuracy: float  # percent
    per_class_accuracy: list  # percent, by class index


@torch.no_grad()
def evaluate(model, loader, num_classes, amp_dtype=None):
    model.eval()
    device = loader.labels.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros(num_classes, device=device)
    total = torch.zeros(num_classes, device=device)
    for images, labels in loader:
        with autocast(device, amp_dtype):
            logits = model(images)
        loss_sum += nn.functional.cross_entropy(logits.float(), labels, reduction='sum')
        hits = (logits.argmax(1) == labels).float()
        correct.index_add_(0, labels, hits)
        total.index_add_(0, labels, torch.ones_like(hits))
    per_class = (100 * correct / total.clamp(min=1)).tolist()
    return Evaluation(loss_sum.item() / max(1, len(loader.labels)),
                      100 * correct.sum().item() / max(1, len(loader.labels)), per_class)


class Diverged(Exception):
    """Training is dead (non-finite loss, or no better than chance): stop, keep what was learnt."""


@dataclasses.dataclass
class EpochStats:
    epoch: int
    train_loss: float
    train_acc: float
    lr: float
    epoch_time: float
    images_per_s: float


def train_epoch(model, loader, optimizer, loss_fn, schedule, first_step, epoch, amp_dtype,
                grad_clip=0.0, scaler=None, log_frequency=0, log=print, model_forward=None):
    """One pass over `loader`. `schedule(step)` gives the learning rate of global step `step`.
    `model_forward(model, images, labels) -> (loss, logits)` lets a caller add terms
    (the retrain's auxiliary head). Raises Diverged on a non-finite loss."""
    model.train()
    device = loader.labels.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    seen = 0
    start = time.perf_counter()
    steps = len(loader)
    lr = schedule(first_step)
    for i, (images, labels) in enumerate(loader):
        lr = schedule(first_step + i)
        for group in optimizer.param_groups:
            group['lr'] = lr
        with autocast(device, amp_dtype):
            if model_forward is None:
                logits = model(images)
                loss = loss_fn(logits, labels)
            else:
                loss, logits = model_forward(model, images, labels)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        if grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        loss_sum += loss.detach() * len(labels)
        correct += (logits.detach().argmax(1) == labels).sum()
        seen += len(labels)
        # Reading the loss syncs the GPU, so it is checked only where it is printed anyway.
        if log_frequency and (i + 1) % log_frequency == 0:
            running = loss_sum.item() / seen
            if not math.isfinite(running):
                raise Diverged(f'non-finite loss at epoch {epoch} step {i + 1}')
            elapsed = time.perf_counter() - start
            log(f'epoch {epoch} step {i + 1}/{steps} loss {running:.4f} lr {lr:.4g} '
                f'{seen / elapsed:.0f} img/s')
    train_loss = loss_sum.item() / max(1, seen)
    if not math.isfinite(train_loss):
        raise Diverged(f'non-finite loss at epoch {epoch}')
    elapsed = time.perf_counter() - start
    return EpochStats(epoch, train_loss, 100 * correct.item() / max(1, seen), lr, elapsed, seen / elapsed)


def prepare_model(model, device, channels_last, compile_model):
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compile_model:
        model = torch.compile(model)
    return model


def grad_scaler(amp_dtype, device):
    """fp16 needs loss scaling to keep small gradients; bf16 has fp32's range and does not."""
    if amp_dtype == torch.float16:
        return torch.amp.GradScaler(device.type)
    return None


def at_chance(accuracy, num_classes):
    """A validation accuracy no better than guessing (with a margin for noise)."""
    return accuracy < 100 * 1.5 / num_classes


def test_best_epoch(model, best_path, best, test_loader, data, amp_dtype, train_time, epochs_run):
    """Test the best-validation weights saved in `best_path` (the trial's and the retrain's end). Returns the
    final metrics for NNI ('default': the best validation accuracy) and the per-class test accuracy."""
    if best['epoch'] >= 0:
        checkpoint = torch.load(best_path, map_location=test_loader.labels.device)
        getattr(model, '_orig_mod', model).load_state_dict(checkpoint['model'])
    test = evaluate(model, test_loader, data.num_classes, amp_dtype)
    log_per_class(data.classes, test.per_class_accuracy)
    log(f'best epoch {best["epoch"] + 1}: val acc {max(0.0, best["val_acc"]):.2f}%, test acc {test.accuracy:.2f}% '
        f'({train_time:.1f}s training)')
    final = {'default': max(0.0, best['val_acc']), 'test_acc': test.accuracy, 'test_loss': test.loss,
             'best_epoch': best['epoch'], 'epochs_run': epochs_run, 'train_time': train_time}
    final = {key: value for key, value in final.items() if math.isfinite(value)}  # a diverged run has NaN loss
    return final, dict(zip(data.classes, test.per_class_accuracy))


def log_per_class(classes, accuracies):
    log('per-class test accuracy:')
    for name, accuracy in zip(classes, accuracies):
        log(f'  {name:>12} {accuracy:6.2f}%')
