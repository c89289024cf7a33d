"""One training run, standalone or as an NNI trial (`python trial/main.py`)."""
import dataclasses
import sys
import time
from pathlib import Path

import torch

from . import config
from .augment import normalize
from .files import atomic_save
from .lr_finder import lr_range_test, plot_lr_range, suggest_lr
from .models import DARTS_PREFIX, build_model
from .models.darts import auxiliary_forward, drop_path_at, set_drop_path_prob
from .recipe import fit_whitening, train_whitening_bias
from .reporting import Reporter, default_output_dir, nni_parameters, under_nni
from .search_space import main as check_space_main
from .training import (Diverged, Recipe, at_chance, cpu_state_dict, evaluate, grad_scaler, log, make_loaders,
                       prepare_model, start_run, test_best_epoch, train_epoch)

WHITENING_IMAGES = 5000  # training images whose 2x2 patches fit the whitening layer (airbench's number)
OUT_OF_MEMORY = 3  # exit status of a trial that ran out of GPU memory (2 is bad input)
# The course lab's learning rates are for the batch as given and reach 0.4 at most (its spaces,
# search_spaces/cifar10_lab_*.json); the recipe's are for a batch of lr_batch_size, 1.5 by default.
LAB_LR_MAX = 0.4
DESCRIPTION = ('One training run on CIFAR-10 (or digits). Under NNI the tuner\'s parameters override the flags of '
               'the same name and every epoch reports to the WebUI. Writes metrics.json and best.pt (docs/trial.md).')


def main(argv=None):
    space_file = vars(config.build_parser(DESCRIPTION).parse_args(argv)).get('check_space')
    if space_file:  # before asking NNI for parameters: a check is not a trial
        return check_space_main(space_file)
    return config.exit_status(lambda: run_or_fail_out_of_memory(config.resolve(argv, nni_parameters())))


def run_or_fail_out_of_memory(cfg):
    """A trial that runs out of GPU memory (a large model at a large batch, or two trials sharing a
    small GPU) ends at once with OUT_OF_MEMORY: NNI marks it FAILED and its tuner gets no result for
    those parameters. Anything already reported per epoch stays in NNI."""
    try:
        return run(cfg)
    except torch.OutOfMemoryError as error:
        gpu = ''
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(torch.cuda.current_device())
            gpu = f' on {props.name} ({props.total_memory / 2**30:.0f} GiB, shared with any other process on it)'
        first_line = str(error).splitlines()[0] if str(error) else 'out of memory'
        print(f'error: out of GPU memory{gpu} at batch size {cfg.batch_size} with --model {cfg.model} '
              f'--width {cfg.width}: {first_line} Lower --batch_size, or run one trial per GPU (docs/gpu.md).',
              file=sys.stderr, flush=True)
        return OUT_OF_MEMORY


def run(cfg):
    setup_start = time.perf_counter()
    darts = cfg.model.startswith(DARTS_PREFIX)
    device, amp_dtype, data = start_run(cfg, cpu_bf16_pays=not darts)
    output_dir = Path(cfg.output_dir) if cfg.output_dir else default_output_dir()
    output_dir.mkdir(parents=True, exist_ok=True)
    # A darts: model trains as the retrain does (auxiliary head, drop path); the learning-rate range
    # test reads plain logits, so it goes without the head.
    auxiliary = darts and cfg.auxiliary_weight > 0 and not cfg.find_lr
    model = prepare_model(build_model(cfg.model, data.num_classes, cfg.width, cfg.num_cells, cfg.whiten, auxiliary,
                                      cfg.drop_path_prob if darts else 0.0),
                          device, cfg.channels_last, cfg.compile)
    if cfg.whiten:
        fit_whitening(model, normalize(data.train.images[:WHITENING_IMAGES].to(device)))
    train_loader, val_loader, test_loader = make_loaders(cfg, data, device)
    training = Recipe(cfg, model, len(train_loader))
    model_forward = auxiliary_forward(training.loss, cfg.auxiliary_weight) if auxiliary else None
    log(f'{cfg.model} on {cfg.dataset}: {len(data.train)} train / {len(data.val)} val / {len(data.test)} test '
        f'images, batch {cfg.batch_size}, {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, '
        f'device {device}, autocast {amp_dtype}, output {output_dir}')
    notice = lr_notice(cfg)
    if notice:
        log(notice)
    scaler = grad_scaler(amp_dtype, device)
    if cfg.find_lr:
        return find_lr(model, train_loader, training.optimizer, training.loss, amp_dtype, scaler, output_dir)

    reporter = Reporter(output_dir, cfg.logdir)
    best = dict(val_acc=-1.0, epoch=0)  # epochs count from 1, as in the WebUI's "epoch N/M"; 0: none yet
    history = []
    stopped_early = None
    train_start = time.perf_counter()
    log(f'setup took {train_start - setup_start:.1f}s; training {cfg.epochs} epochs of {len(train_loader)} steps')
    for epoch in range(cfg.epochs):
        train_whitening_bias(model, epoch < cfg.whiten_bias_epochs)
        if darts:
            set_drop_path_prob(model, drop_path_at(epoch, cfg.epochs, cfg.drop_path_prob))
        number = epoch + 1  # what every output calls this epoch
        try:
            stats = train_epoch(model, train_loader, training.optimizer, training.loss, training.lr,
                                epoch * len(train_loader), number, amp_dtype, cfg.grad_clip, scaler, cfg.log_frequency,
                                log, model_forward, training.after_step)
        except Diverged as reason:
            stopped_early = str(reason)
            break
        val = evaluate(model, val_loader, data.num_classes, amp_dtype, logit_scale=cfg.logit_scale)
        metrics = {'default': val.accuracy, 'val_loss': val.loss, 'train_loss': stats.train_loss,
                   'train_acc': stats.train_acc, 'lr': stats.lr, 'epoch_time': stats.epoch_time, 'epoch': number}
        history.append(metrics)
        reporter.intermediate(metrics)
        log(f'epoch {number}/{cfg.epochs}: train loss {stats.train_loss:.4f} acc {stats.train_acc:.2f}% | '
            f'val loss {val.loss:.4f} acc {val.accuracy:.2f}% | {stats.epoch_time:.1f}s, '
            f'{stats.images_per_s:.0f} img/s')
        if val.accuracy > best['val_acc']:
            best = dict(val_acc=val.accuracy, epoch=number)
            atomic_save({'model': cpu_state_dict(getattr(model, '_orig_mod', model)), 'epoch': number,
                         'val_acc': val.accuracy, 'config': dataclasses.asdict(cfg)}, output_dir / 'best.pt')
        if cfg.divergence_epochs and number >= cfg.divergence_epochs and at_chance(best['val_acc'], data.num_classes):
            stopped_early = f'validation accuracy still at chance ({best["val_acc"]:.1f}%) after {number} epochs'
            break
    train_time = time.perf_counter() - train_start
    if stopped_early:
        log(f'stopped early: {stopped_early}')
    final, per_class = test_best_epoch(model, output_dir / 'best.pt', best, (val_loader, test_loader), data,
                                       amp_dtype, train_time, len(history), cfg.tta, cfg.logit_scale)
    details = {'per_class_test_acc': per_class, 'stopped_early': stopped_early, 'history': history,
               'config': dataclasses.asdict(cfg), 'nni_trial': under_nni()}
    reporter.final(final, details)
    log(f'wrote {output_dir / "metrics.json"}')
    return 0


def lr_notice(cfg):
    """A `notice:` line for learning-rate flags that will not do what they look like: a lab's rate
    (meant for the batch as given) while the recipe scales rates with the batch, or an ending_lr
    above initial_lr, so that the rate rises over the run. None when the rates read as meant."""
    if not cfg.lr_batch_size or (cfg.initial_lr > LAB_LR_MAX and cfg.initial_lr >= cfg.ending_lr):
        return None
    scale = cfg.batch_size / cfg.lr_batch_size
    rises = cfg.initial_lr < cfg.ending_lr
    meaning = (f'notice: --initial_lr {cfg.initial_lr:g} and --ending_lr {cfg.ending_lr:g} are for a batch of '
               f'{cfg.lr_batch_size} (--lr_batch_size): at batch {cfg.batch_size} the learning rate peaks at '
               f'{cfg.initial_lr * scale:.3g} and then {"rises" if rises else "decays"} to '
               f'{cfg.ending_lr * scale:.3g}. '
               f'For a rate used as given, as in the lab (a cosine to 0, the recipe\'s parts off), add --preset plain')
    if not rises:
        return meaning + '; to keep the recipe\'s parts with the rate as given, --lr_batch_size 0.'
    ratio = config.OPTIONS['ending_lr'].default / config.OPTIONS['initial_lr'].default
    return (meaning + f'; to keep the recipe, give an --ending_lr below --initial_lr (the recipe ends at '
            f'{ratio:.0%} of its peak: --ending_lr {cfg.initial_lr * ratio:.3g}).')


def find_lr(model, loader, optimizer, loss_fn, amp_dtype, scaler, output_dir):
    lrs, losses = lr_range_test(model, loader, optimizer, loss_fn, amp_dtype, scaler)
    suggestion = suggest_lr(lrs, losses)
    plot = output_dir / 'lr_finder.png'
    plot_lr_range(lrs, losses, suggestion, plot)
    log(f'learning-rate range test over {len(lrs)} steps ({lrs[0]:.2g} to {lrs[-1]:.2g}): '
        f'suggested --initial_lr {suggestion:.3g}; plot {plot}')
    return 0
