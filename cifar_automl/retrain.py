"""Retrain a searched DARTS cell from scratch: `python retrain/retrain.py --arch epoch_49.json`.

The DARTS paper's CIFAR-10 evaluation (Liu et al. 2019, sec. 3.2; its cnn/train.py) on this
repository's core: 20 cells of 36 channels, 600 epochs of batch 96, SGD lr 0.025 on a cosine to
0, momentum 0.9, weight decay 3e-4, cutout 16, drop path 0.2 ramped linearly over the epochs, an
auxiliary head weighted 0.4, gradient clip 5. Unlike NNI's legacy example, the best epoch is
chosen on a validation split held out of the training images; the test set is measured once, at
the end, with those weights. Every epoch the whole state goes to `last.pt` (atomically), so a
killed run continues with `--resume` on the same schedule and loses at most one epoch.
"""
import dataclasses
import math
import time
from pathlib import Path

import torch

from . import config
from .arch_files import describe, load_arch
from .cell_plot import plot_cells
from .config import ConfigError, Option
from .files import atomic_save, atomic_write_json
from .models.darts import auxiliary_forward, build_darts, count_parameters, drop_path_at, set_drop_path_prob
from .reporting import Reporter
from .training import (Diverged, Recipe, cpu_state_dict, evaluate, grad_scaler, log, make_loaders, prepare_model,
                       start_run, test_best_epoch, train_epoch)

LAST_CHECKPOINT = 'last.pt'  # the whole state after the last finished epoch, for --resume
BEST_CHECKPOINT = 'best.pt'  # the weights of the best validation epoch (the trial's format)

# The trial's options that mean the same here, with the DARTS paper's values where it sets them. Its
# recipe has none of airbench's parts, so each starts switched off (config.RECIPE_PARTS), but the
# test-time augmentation, which changes no training, is reported beside the paper's plain accuracy.
PAPER_DEFAULTS = dict(config.RECIPE_PARTS, width=36, num_cells=20, epochs=600, batch_size=96, optimizer='sgd',
                      initial_lr=0.025, ending_lr=0.0, momentum=0.9, nesterov=False, weight_decay=3e-4,
                      label_smoothing=0.0, cutout=16, grad_clip=5.0, tta=2)
# The whitening layer is airbench's, which a DARTS network has not.
SHARED = tuple(name for name in config.OPTIONS if name not in (
    'model', 'whiten', 'whiten_bias_epochs', 'num_workers', 'divergence_epochs', 'find_lr', 'preset', 'check_space'))
RETRAIN_ONLY = {
    'arch': Option('', 'the cell to train: an epoch_N.json of the DARTS search, an NNI 1.x/2.0 DARTS JSON, '
                       'a DARTS Genotype(...) text file, or a published cell: DARTS_V1, DARTS_V2', tunable=False),
    'patience': Option(0, 'stop after this many epochs without a better validation accuracy (0: never)', low=0),
    'resume': Option(False, 'continue the run in --output_dir from its last finished epoch, on the same schedule',
                     tunable=False),
    'print_arch': Option(False, 'print the parsed cell and its parameter count, and exit without training',
                         tunable=False),
}
OPTIONS = {
    **{name: dataclasses.replace(config.OPTIONS[name], default=PAPER_DEFAULTS.get(name, config.OPTIONS[name].default))
       for name in SHARED},
    'output_dir': dataclasses.replace(config.OPTIONS['output_dir'], help='where the checkpoints and metrics.json go '
                                      '(default: outputs/retrain-<time>); the run to continue with --resume'),
    'logdir': dataclasses.replace(config.OPTIONS['logdir'], help='TensorBoard directory '
                                  '(default: <output_dir>/tensorboard)'),
    # A DARTS network stays in fp32 on CPU (training.autocast_dtype, cpu_bf16_pays=False).
    'precision': dataclasses.replace(config.OPTIONS['precision'], help='autocast dtype; auto: bf16 on GPUs with '
                                     'bf16, fp16 on other GPUs, fp32 on CPUs (where bf16 trained DARTS slower)'),
    **RETRAIN_ONLY,
}
# Settings a resumed run may change: they do not alter what is trained or on which schedule.
RESUME_MAY_CHANGE = ('resume', 'output_dir', 'data_dir', 'device', 'precision', 'channels_last', 'compile', 'threads',
                     'log_frequency', 'logdir', 'patience', 'print_arch')

RetrainConfig = dataclasses.make_dataclass(
    'RetrainConfig', [(name, opt.type, dataclasses.field(default=opt.default)) for name, opt in OPTIONS.items()])


def main(argv=None):
    return config.exit_status(lambda: run(*resolve(argv)))


def resolve(argv=None):
    """The config (paper defaults < flags) and the names of the flags given explicitly."""
    args = config.parse_flags(__doc__.split('\n')[0], OPTIONS, argv)
    return RetrainConfig(**args), set(args)


def run(cfg, given=()):
    setup_start = time.perf_counter()
    checkpoint = None
    if cfg.resume:
        checkpoint, cfg = resumed_config(cfg, given)
        arch = checkpoint['arch']
    elif not cfg.arch:
        raise ConfigError('--arch: which cell to train? an epoch_N.json of the DARTS search, another '
                          'architecture file, or DARTS_V2 (see --help)')
    else:
        arch = load_arch(cfg.arch)
    if cfg.print_arch:
        return print_arch(arch, cfg)
    output_dir = Path(cfg.output_dir) if cfg.output_dir else Path('outputs') / time.strftime('retrain-%Y%m%d-%H%M%S')
    if not cfg.resume and (output_dir / LAST_CHECKPOINT).exists():
        raise ConfigError(f'--output_dir {output_dir} already holds a run ({LAST_CHECKPOINT}); continue it with '
                          f'--resume, or choose another --output_dir')
    device, amp_dtype, data = start_run(cfg, cpu_bf16_pays=False)
    output_dir.mkdir(parents=True, exist_ok=True)

    network = build_darts(arch, data.num_classes, cfg.width, cfg.num_cells, auxiliary=cfg.auxiliary_weight > 0,
                          drop_path_prob=cfg.drop_path_prob)
    model = prepare_model(network, device, cfg.channels_last, cfg.compile)
    scaler = grad_scaler(amp_dtype, device)
    train_loader, val_loader, test_loader = make_loaders(cfg, data, device)
    training = Recipe(cfg, model, len(train_loader))
    state = dict(epoch=0, best=dict(val_acc=-1.0, epoch=0), epochs_since_best=0, history=[], train_time=0.0)
    best_weights = None
    if checkpoint:
        restore(checkpoint, network, training, scaler, train_loader, device, cfg.seed)
        state, best_weights = checkpoint['state'], checkpoint['best_model']
        if best_weights is not None:  # a kill between the two writes may have left a newer best.pt
            save_best(output_dir / BEST_CHECKPOINT, best_weights, state['best'], arch, cfg)
    atomic_write_json(arch, output_dir / 'arch.json')
    plot_cells(arch, output_dir / 'arch.png', f'{cfg.arch or "resumed"}: {cfg.num_cells} cells, width {cfg.width}')
    log(describe(arch))
    log(f'DARTS network of {cfg.num_cells} cells, width {cfg.width}: {format_count(count_parameters(network))} '
        f'parameters without the auxiliary head | {cfg.dataset}: {len(data.train)} train / {len(data.val)} val / '
        f'{len(data.test)} test images | device {device}, autocast {amp_dtype} | output {output_dir}')

    steps_per_epoch = len(train_loader)
    model_forward = auxiliary_forward(training.loss, cfg.auxiliary_weight) if cfg.auxiliary_weight > 0 else None
    reporter = Reporter(output_dir, cfg.logdir or output_dir / 'tensorboard')
    stopped_early = None
    first_epoch = state['epoch']
    log(f'setup took {time.perf_counter() - setup_start:.1f}s; '
        + (f'resuming at epoch {first_epoch + 1}' if checkpoint else 'training')
        + f' of {cfg.epochs} epochs of {steps_per_epoch} steps')
    loop_start = time.perf_counter()  # the ETA counts validation and checkpoints too
    for epoch in range(first_epoch, cfg.epochs):
        if cfg.patience and state['epochs_since_best'] >= cfg.patience:
            stopped_early = f'no better validation accuracy in {cfg.patience} epochs (--patience)'
            break
        set_drop_path_prob(network, drop_path_at(epoch, cfg.epochs, cfg.drop_path_prob))
        number = epoch + 1  # what every output calls this epoch, as the WebUI's "epoch N/M"
        try:
            stats = train_epoch(model, train_loader, training.optimizer, training.loss, training.lr,
                                epoch * steps_per_epoch, number, amp_dtype, cfg.grad_clip, scaler, cfg.log_frequency,
                                log, model_forward, training.after_step)
        except Diverged as reason:
            stopped_early = str(reason)
            break
        val = evaluate(model, val_loader, data.num_classes, amp_dtype, logit_scale=cfg.logit_scale)
        metrics = {'default': val.accuracy, 'val_acc': val.accuracy, 'val_loss': val.loss,
                   'train_loss': stats.train_loss, 'train_acc': stats.train_acc, 'lr': stats.lr,
                   'drop_path_prob': drop_path_at(epoch, cfg.epochs, cfg.drop_path_prob),
                   'epoch_time': stats.epoch_time,
                   'epoch': number}
        reporter.intermediate(metrics)
        state['history'].append(metrics)
        state['train_time'] += stats.epoch_time
        state['epoch'] = number  # epochs done: a resumed run starts after it
        if val.accuracy > state['best']['val_acc']:
            state['best'] = dict(val_acc=val.accuracy, epoch=number)
            state['epochs_since_best'] = 0
            best_weights = cpu_state_dict(network)  # loads on a machine without a GPU, and frees GPU memory
            save_best(output_dir / BEST_CHECKPOINT, best_weights, state['best'], arch, cfg)
        else:
            state['epochs_since_best'] += 1
        save_checkpoint(output_dir / LAST_CHECKPOINT, cfg, arch, state, network, training, scaler, train_loader,
                        best_weights, device)
        remaining = (cfg.epochs - state['epoch']) * (time.perf_counter() - loop_start) / (state['epoch'] - first_epoch)
        log(f'epoch {number}/{cfg.epochs}: train loss {stats.train_loss:.4f} acc {stats.train_acc:.2f}% | '
            f'val loss {val.loss:.4f} acc {val.accuracy:.2f}% (best {state["best"]["val_acc"]:.2f}% at epoch '
            f'{state["best"]["epoch"]}) | lr {stats.lr:.4g} | {stats.epoch_time:.1f}s, '
            f'{stats.images_per_s:.0f} img/s, ETA {format_duration(remaining)}')
    if stopped_early:
        log(f'stopped early: {stopped_early}')
    final, per_class = test_best_epoch(model, output_dir / BEST_CHECKPOINT, state['best'], (val_loader, test_loader),
                                       data, amp_dtype, state['train_time'], state['epoch'], cfg.tta, cfg.logit_scale)
    details = {'per_class_test_acc': per_class, 'stopped_early': stopped_early, 'history': state['history'],
               'parameters': count_parameters(network), 'arch': arch, 'config': dataclasses.asdict(cfg)}
    reporter.final(final, details)
    log(f'wrote {output_dir / "metrics.json"}')
    return 0


def print_arch(arch, cfg):
    network = build_darts(arch, width=cfg.width, num_cells=cfg.num_cells, auxiliary=True)
    log(describe(arch))
    log(f'{cfg.num_cells} cells, width {cfg.width}: {format_count(count_parameters(network))} parameters without '
        f'the auxiliary head ({format_count(count_parameters(network, without_auxiliary=False))} with it, '
        f'used in training only)')
    return 0


def save_best(path, weights, best, arch, cfg):
    """The trial's best.pt format, plus the cell."""
    atomic_save({'model': weights, 'epoch': best['epoch'], 'val_acc': best['val_acc'], 'arch': arch,
                 'config': dataclasses.asdict(cfg)}, path)


def save_checkpoint(path, cfg, arch, state, network, training, scaler, train_loader, best_weights, device):
    """Everything that decides the next epoch, so that a resumed run continues as if never stopped:
    weights, optimizer moments, the lookahead's average, loss scale, the random streams of augmentation
    and drop path (with the device type they belong to); and the best epoch's weights, so that best.pt
    always matches the state a run resumes from. Only the training GPU's stream is kept: asking for
    every GPU's would wake each GPU of the machine."""
    atomic_save({'config': dataclasses.asdict(cfg), 'arch': arch, 'state': state, 'model': cpu_state_dict(network),
                 'best_model': best_weights, 'optimizer': training.optimizer.state_dict(),
                 'lookahead': training.lookahead.average if training.lookahead else None,
                 'scaler': scaler.state_dict() if scaler else None, 'rng_device': device.type,
                 'loader_rng': train_loader.generator.get_state(), 'torch_rng': torch.get_rng_state(),
                 'cuda_rng': torch.cuda.get_rng_state(device) if device.type == 'cuda' else None}, path)


def restore(checkpoint, network, training, scaler, train_loader, device, seed):
    network.load_state_dict(checkpoint['model'])
    training.optimizer.load_state_dict(checkpoint['optimizer'])
    if training.lookahead:  # the checkpoint was read onto the CPU
        training.lookahead.average = {name: value.to(device) for name, value in checkpoint['lookahead'].items()}
    train_loader.epoch = checkpoint['state']['epoch']  # the alternating flip's parity
    if scaler is not None and checkpoint['scaler'] is not None:
        scaler.load_state_dict(checkpoint['scaler'])
    restore_random_streams(checkpoint, train_loader, device, seed)


def restore_random_streams(checkpoint, train_loader, device, seed):
    """On the device type the run was saved on, augmentation and drop path continue their random streams
    exactly. A CPU generator's state does not fit a CUDA one, nor the reverse: on another device type both
    are reseeded from the seed and the epoch, so the run goes on with other random draws than an unbroken
    run would have made (the schedule and the weights are the same)."""
    torch.set_rng_state(checkpoint['torch_rng'])
    saved_on = checkpoint.get('rng_device', 'an unrecorded device')  # a checkpoint from before it was recorded
    if saved_on == device.type:
        train_loader.generator.set_state(checkpoint['loader_rng'])
        if device.type == 'cuda':
            torch.cuda.set_rng_state(checkpoint['cuda_rng'], device)
        return
    reseed = seed + checkpoint['state']['epoch']
    train_loader.generator.manual_seed(reseed)
    torch.manual_seed(reseed)  # the CPU's stream and every GPU's
    log(f'resuming on {device.type} a run saved on {saved_on}: the random streams of augmentation and drop path '
        f'are reseeded ({reseed}), so this run\'s draws differ from an uninterrupted one\'s')


def resumed_config(cfg, given):
    """The checkpoint and the config of the run in --output_dir. Flags given now may change only how
    it runs (RESUME_MAY_CHANGE); anything else would change the schedule, and is refused."""
    if not cfg.output_dir:
        raise ConfigError('--resume: name the run to continue with --output_dir DIR')
    path = Path(cfg.output_dir) / LAST_CHECKPOINT
    if not path.exists():
        raise ConfigError(f'--resume: {path} does not exist, so there is no run to continue in {cfg.output_dir}')
    checkpoint = torch.load(path, map_location='cpu', weights_only=False)
    saved = checkpoint['config']
    for name in sorted(given):
        if name in RESUME_MAY_CHANGE:
            continue
        same = load_arch(cfg.arch) == checkpoint['arch'] if name == 'arch' else getattr(cfg, name) == saved[name]
        if not same:
            raise ConfigError(f'--{name} {getattr(cfg, name)!r}: the run in {cfg.output_dir} was started with '
                              f'{saved[name]!r}; a resumed run keeps what it trains and its schedule (only '
                              f'{", ".join(n for n in RESUME_MAY_CHANGE if n != "resume")} may change)')
    values = {**saved, **{name: getattr(cfg, name) for name in given if name in RESUME_MAY_CHANGE}}
    return checkpoint, RetrainConfig(**{name: values.get(name, OPTIONS[name].default) for name in OPTIONS})


def format_count(count):
    return f'{count / 1e6:.2f}M' if count >= 100_000 else f'{count / 1e3:.1f}k'


def format_duration(seconds):
    if not math.isfinite(seconds):
        return '?'
    hours, rest = divmod(int(seconds), 3600)
    return f'{hours}h{rest // 60:02d}m' if hours else f'{rest // 60}m{rest % 60:02d}s'
