"""The training loop shared by the trial and the retrain: optimizer, per-step cosine
learning rate, mixed precision, gradient clipping, evaluation and early stopping of
a diverged run."""
import contextlib
import dataclasses
import math
import os
import time

import torch
from torch import nn

from . import recipe
from .augment import BatchLoader
from .config import ConfigError
from .data import load_dataset
from .reporting import under_nni

EVAL_BATCH_SIZE = 1000
# batch_size 0: the largest power of two up to AUTO_BATCH_MAX that gives AUTO_BATCH_MIN_STEPS steps an epoch.
# airbench uses 1024 for a GPU's throughput; on CIFAR-10 here (seed 0 of each) 512 led on validation at
# 7 of the 10 epochs and took 6% less training time on a CPU; at the end they are within seed noise
# (docs/recipe.md).
AUTO_BATCH_MAX = 512
AUTO_BATCH_MIN_STEPS = 32


def start_run(cfg, cpu_bf16_pays=True):
    """The first steps of a trial and of a retrain: threads, seed, device, autocast dtype and
    the data splits. Returns (device, amp_dtype, data); raises ConfigError."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    device = select_device(cfg.device)
    amp_dtype = autocast_dtype(cfg.precision, device, cpu_bf16_pays)
    data = load_dataset(cfg.dataset, cfg.data_dir, cfg.val_size, cfg.subset, cfg.seed)
    if cfg.batch_size == 0:
        cfg.batch_size = auto_batch_size(len(data.train))
    if cfg.batch_size > len(data.train):
        raise ConfigError(f'--batch_size {cfg.batch_size} exceeds the {len(data.train)} training images')
    return device, amp_dtype, data


def auto_batch_size(train_images):
    """A recipe is tuned in steps: on a small dataset a large batch leaves too few of them per epoch
    for the weights, and for BatchNorm's running statistics, to follow. With the learning rate scaled
    to the batch size (lr_batch_size), a smaller batch needs no other change."""
    size = AUTO_BATCH_MAX
    while size > 1 and train_images // size < AUTO_BATCH_MIN_STEPS:
        size //= 2
    return size


def make_loaders(cfg, data, device):
    """(train, val, test) loaders: the training one shuffles and augments as cfg asks."""
    train = BatchLoader(data.train, cfg.batch_size, device, train=True, crop_padding=cfg.crop_padding,
                        flip=cfg.flip, alternate_flip=cfg.alternate_flip, cutout=cfg.cutout, seed=cfg.seed,
                        channels_last=cfg.channels_last)
    val, test = (BatchLoader(split, EVAL_BATCH_SIZE, device, channels_last=cfg.channels_last)
                 for split in (data.val, data.test))
    return train, val, test


def log(message):
    print(message, flush=True)


def select_device(name):
    """`--device` (auto, cpu, cuda, cuda:N) as a torch.device. Fails rather than train on the CPU when a
    GPU was asked for, by the flag or by NNI (which hands a trial its GPUs in CUDA_VISIBLE_DEVICES).
    On CUDA it turns on cuDNN's autotuner: every batch has the same shape, so the fastest convolution
    algorithm is found once (the DARTS search's Lightning Trainer leaves the setting as it is)."""
    if name == 'cpu':
        return torch.device('cpu')
    if not torch.cuda.is_available():
        if name != 'auto':
            raise ConfigError(f'--device {name}: {cuda_unusable()}')
        if under_nni() and nni_gave_a_gpu():
            raise ConfigError(f'--device auto: NNI gave this trial a GPU (CUDA_VISIBLE_DEVICES='
                              f'{os.environ["CUDA_VISIBLE_DEVICES"]}), but {cuda_unusable()}')
        return torch.device('cpu')
    device = torch.device('cuda' if name == 'auto' else name)
    if device.index is not None:
        if device.index >= torch.cuda.device_count():
            raise ConfigError(f'--device {name}: torch sees {torch.cuda.device_count()} GPU(s), numbered from 0 '
                              f'(CUDA_VISIBLE_DEVICES={os.environ.get("CUDA_VISIBLE_DEVICES", "unset")})')
        torch.cuda.set_device(device)  # so that nothing (RNG, compiled kernels) lands on GPU 0
    torch.backends.cudnn.benchmark = True
    return device


# The oldest NVIDIA driver each CUDA major version of the torch wheel runs on (CUDA's minor version
# compatibility); requirements.txt pins torch built for CUDA 13.0.
MIN_DRIVER = {'12': '525', '13': '580'}


def cuda_unusable():
    """Why torch cannot use a GPU here, and what to do, for error messages."""
    if torch.version.cuda is None:
        return (f'this torch ({torch.__version__}) is the CPU-only build; for the CUDA one, pip uninstall torch '
                f'torchvision, then pip install -r requirements.txt; or use --device cpu (docs/gpu.md)')
    driver = MIN_DRIVER.get(torch.version.cuda.split('.')[0], 'the one its CUDA version needs')
    return (f'torch {torch.__version__} cannot use CUDA. It is built for CUDA {torch.version.cuda}, which needs an '
            f'NVIDIA driver >= {driver} (nvidia-smi shows yours) and a visible GPU (CUDA_VISIBLE_DEVICES='
            f'{os.environ.get("CUDA_VISIBLE_DEVICES", "unset")}); fix the driver, or use --device cpu (docs/gpu.md)')


def nni_gave_a_gpu():
    """NNI's local and remote training services set CUDA_VISIBLE_DEVICES to the GPUs a trial asked for
    with trialGpuNumber (an empty string for 0; without trialGpuNumber, the manager's own value)."""
    visible = os.environ.get('CUDA_VISIBLE_DEVICES', '').strip()
    return bool(visible) and not visible.startswith('-')  # -1 hides every GPU


def cpu_state_dict(module):
    """A copy of the weights on the CPU: a checkpoint that torch.load reads on a machine without a GPU."""
    return {name: tensor.detach().to('cpu', copy=True) for name, tensor in module.state_dict().items()}


def cpu_has_bf16_units():
    """AVX512-BF16 or AMX. oneDNN also runs bf16 on plain AVX512 (and torch says it is supported
    there), but emulated: resnet9 trained at 113 img/s in bf16 against 318 in fp32 on such a CPU."""
    probes = ('_is_avx512_bf16_supported', '_is_amx_tile_supported')
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def matmul_rate(dtype, size=2048, repeats=10):
    """FLOP/s of a size x size matrix multiply: what this machine's cores can do at best, the yardstick
    of the benchmarks' efficiency figures."""
    a, b = (torch.randn(size, size).to(dtype) for _ in range(2))
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size ** 3 * repeats / (time.perf_counter() - start)


def autocast_dtype(precision, device, cpu_bf16_pays=True):
    """bf16 where the hardware has it (on a CPU with AVX512-BF16 or AMX, bench/bench_trial.py measured
    resnet9 in bf16 and channels-last 2.8x as fast as in fp32 NCHW), fp16 on GPUs without bf16; CPUs without bf16
    units emulate it slower than fp32, so they stay in fp32. `cpu_bf16_pays=False` keeps a
    network of depthwise convolutions (DARTS) in fp32 on CPU: there bf16 ran slower (retrain
    174 vs 245 img/s), and torch 2.14's channels-last bf16 backward of its dilated 5x5
    convolution returned non-finite gradients."""
    if precision == 'fp32':
        return None
    if precision == 'auto':
        if device.type == 'cuda':
            # Emulated bf16 (a T4, a V100) is slower than fp16, and torch 2.14 counts it unless told not to.
            return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
        if cpu_bf16_pays and cpu_has_bf16_units():
            return torch.bfloat16
        return None
    return {'bf16': torch.bfloat16, 'fp16': torch.float16}[precision]


def autocast(device, dtype):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def build_optimizer(name, params, lr, momentum, weight_decay, nesterov):
    """`params`: parameters, or groups (recipe.parameter_groups) with their own weight decay."""
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
    if name == 'muon':
        return recipe.Muon(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ConfigError(f'--optimizer: unknown optimizer {name!r}')


def lr_at(step, total_steps, initial_lr, ending_lr, warmup_steps=0, shape='cosine'):
    """Linear warmup to initial_lr, then one decay (a cosine, or linear as in airbench) from
    initial_lr to ending_lr over the remaining steps of the whole run (not restarted each epoch)."""
    if step < warmup_steps:
        return initial_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps - 1))
    remaining = 1 - progress if shape == 'linear' else 0.5 * (1 + math.cos(math.pi * progress))
    return ending_lr + (initial_lr - ending_lr) * remaining


@dataclasses.dataclass
class Evaluation:
    loss: float
    accuracy: float  # percent
    per_class_accuracy: list  # percent, by class index


def predict(model, images, tta=0):
    """Logits averaged over test-time views (airbench's): 0 the image alone; 1 the image and its
    mirror; 2 those, weighted one half, and the mirrored pairs shifted one pixel up-left and one
    down-right, weighted a quarter each."""
    def mirrored(x):
        return model(x) if tta == 0 else 0.5 * (model(x) + model(x.flip(-1)))

    logits = mirrored(images)
    if tta >= 2:
        h, w = images.shape[-2:]
        padded = nn.functional.pad(images, (1,) * 4, mode='reflect')
        logits = 0.5 * logits + 0.25 * (mirrored(padded[..., :h, :w]) + mirrored(padded[..., 2:, 2:]))
    return logits


@torch.no_grad()
def evaluate(model, loader, num_classes, amp_dtype=None, tta=0, logit_scale=1.0):
    """Loss (of the logits times logit_scale, as the training loss sees them) and accuracy."""
    model.eval()
    device = loader.labels.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros(num_classes, device=device)
    total = torch.zeros(num_classes, device=device)
    for images, labels in loader:
        with autocast(device, amp_dtype):
            logits = predict(model, images, tta).float() * logit_scale
        loss_sum += nn.functional.cross_entropy(logits, labels, reduction='sum')
        hits = (logits.argmax(1) == labels).float()
        correct.index_add_(0, labels, hits)
        total.index_add_(0, labels, torch.ones_like(hits))
    per_class = (100 * correct / total.clamp(min=1)).tolist()
    return Evaluation(loss_sum.item() / max(1, len(loader.labels)),
                      100 * correct.sum().item() / max(1, len(loader.labels)), per_class)


class Recipe:
    """The training recipe as cfg sets it, for the trial and the retrain: applies the parts that act
    on any model (Dirac init, BatchNorm) and holds the optimizer, the per-step learning rate, the loss
    and the lookahead. See recipe.py for each part; the whitening layer is airbench's, set up by the trial."""

    def __init__(self, cfg, model, steps_per_epoch):
        self.cfg = cfg
        if cfg.dirac_init:
            recipe.dirac_init(model)
        recipe.configure_batchnorm(model, cfg.bn_momentum, cfg.freeze_bn_scale)
        # Adam-family optimizers normalise each parameter's step: a 64x rate would move biases 64x further.
        bias_lr_scale = cfg.bias_lr_scale if cfg.optimizer in ('sgd', 'muon') else 1.0
        groups = recipe.parameter_groups(model, cfg.weight_decay, bias_lr_scale)
        self.batch_lr_scale = cfg.batch_size / cfg.lr_batch_size if cfg.lr_batch_size else 1.0
        if cfg.optimizer == 'muon':  # the filters' step peaks at muon_lr, whatever initial_lr and the batch size
            groups = recipe.split_filters(groups, cfg.muon_lr / (cfg.initial_lr * self.batch_lr_scale),
                                          cfg.muon_momentum)
        self.optimizer = build_optimizer(cfg.optimizer, groups, cfg.initial_lr, cfg.momentum, cfg.weight_decay,
                                         cfg.nesterov)
        self.total_steps = cfg.epochs * steps_per_epoch
        # Hyperband's 1-epoch trials would otherwise spend the whole run warming up and never decay.
        self.warmup_steps = min(round(cfg.warmup_epochs * steps_per_epoch), self.total_steps // 4)
        self.lookahead = recipe.Lookahead(model, cfg.lookahead, self.total_steps) if cfg.lookahead else None

    def lr(self, step):
        cfg, scale = self.cfg, self.batch_lr_scale
        return lr_at(step, self.total_steps, cfg.initial_lr * scale, cfg.ending_lr * scale, self.warmup_steps,
                     cfg.lr_schedule)

    def loss(self, logits, labels):
        return nn.functional.cross_entropy(logits * self.cfg.logit_scale, labels,
                                           label_smoothing=self.cfg.label_smoothing)

    def after_step(self, step):
        if self.lookahead:
            self.lookahead.after_step(step)


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
                grad_clip=0.0, scaler=None, log_frequency=0, log=print, model_forward=None, after_step=None):
    """One pass over `loader`, the run's epoch number `epoch` (counted from 1, for messages).
    `schedule(step)` gives the learning rate of global step `step` (times each parameter group's
    'lr_scale'). `model_forward(model, images, labels) -> (loss, logits)` lets a caller add terms
    (the auxiliary head of a DARTS network); `after_step(steps taken)`
    runs after each optimizer step (the lookahead). Raises Diverged on a non-finite loss."""
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
            group['lr'] = lr * group.get('lr_scale', 1.0)
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
        if after_step:
            after_step(first_step + i + 1)
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


def test_best_epoch(model, best_path, best, loaders, data, amp_dtype, train_time, epochs_run, tta=0, logit_scale=1.0):
    """Test the best-validation weights saved in `best_path` (the trial's and the retrain's end), plain and
    with test-time augmentation. `best`: {'val_acc', 'epoch'}, the epoch counted from 1 (0: none finished).
    `loaders`: (val, test). Returns the final metrics for NNI ('default':
    the best plain validation accuracy, the scale of the per-epoch reports) and the per-class test accuracy."""
    if best['epoch']:  # 0: no epoch finished
        checkpoint = torch.load(best_path, map_location=loaders[1].labels.device)
        getattr(model, '_orig_mod', model).load_state_dict(checkpoint['model'])
    val_loader, test_loader = loaders
    test = evaluate(model, test_loader, data.num_classes, amp_dtype, logit_scale=logit_scale)
    final = {'default': max(0.0, best['val_acc']), 'test_acc': test.accuracy, 'test_loss': test.loss}
    per_class = test.per_class_accuracy
    if tta:
        val_tta = evaluate(model, val_loader, data.num_classes, amp_dtype, tta, logit_scale)
        test_tta = evaluate(model, test_loader, data.num_classes, amp_dtype, tta, logit_scale)
        final.update(val_acc_tta=val_tta.accuracy, test_acc_tta=test_tta.accuracy)
        per_class = test_tta.per_class_accuracy
    log_per_class(data.classes, per_class, 'with test-time augmentation' if tta else '')
    with_tta = f' ({final["val_acc_tta"]:.2f}% and {final["test_acc_tta"]:.2f}% with TTA)' if tta else ''
    log(f'best epoch {best["epoch"]}: val acc {max(0.0, best["val_acc"]):.2f}%, test acc {test.accuracy:.2f}%'
        f'{with_tta} ({train_time:.1f}s training)')
    final.update(best_epoch=best['epoch'], epochs_run=epochs_run, train_time=train_time)
    final = {key: value for key, value in final.items() if math.isfinite(value)}  # a diverged run has NaN loss
    return final, dict(zip(data.classes, per_class))


def log_per_class(classes, accuracies, how=''):
    log(f'per-class test accuracy{" " + how if how else ""}:')
    for name, accuracy in zip(classes, accuracies):
        log(f'  {name:>12} {accuracy:6.2f}%')
