"""One training run, standalone or as an NNI trial (`python trial/main.py`)."""
import dataclasses
import time
from pathlib import Path

from . import config
from .augment import normalize
from .files import atomic_save
from .lr_finder import lr_range_test, plot_lr_range, suggest_lr
from .models import DARTS_PREFIX, build_model
from .recipe import fit_whitening, train_whitening_bias
from .reporting import Reporter, default_output_dir, nni_parameters, under_nni
from .search_space import main as check_space_main
from .training import (Diverged, Recipe, at_chance, evaluate, grad_scaler, log, make_loaders, prepare_model, start_run,
                       test_best_epoch, train_epoch)

WHITENING_IMAGES = 5000  # training images whose 2x2 patches fit the whitening layer (airbench's number)


def main(argv=None):
    space_file = vars(config.build_parser().parse_args(argv)).get('check_space')
    if space_file:  # before asking NNI for parameters: a check is not a trial
        return check_space_main(space_file)
    return config.exit_status(lambda: run(config.resolve(argv, nni_parameters())))


def run(cfg):
    setup_start = time.perf_counter()
    device, amp_dtype, data = start_run(cfg, cpu_bf16_pays=not cfg.model.startswith(DARTS_PREFIX))
    output_dir = Path(cfg.output_dir) if cfg.output_dir else default_output_dir()
    output_dir.mkdir(parents=True, exist_ok=True)
    model = prepare_model(build_model(cfg.model, data.num_classes, cfg.width, cfg.num_cells, cfg.whiten), device,
                          cfg.channels_last, cfg.compile)
    if cfg.whiten:
        fit_whitening(model, normalize(data.train.images[:WHITENING_IMAGES].to(device)))
    train_loader, val_loader, test_loader = make_loaders(cfg, data, device)
    training = Recipe(cfg, model, len(train_loader))
    log(f'{cfg.model} on {cfg.dataset}: {len(data.train)} train / {len(data.val)} val / {len(data.test)} test '
        f'images, batch {cfg.batch_size}, {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, '
        f'device {device}, autocast {amp_dtype}, output {output_dir}')
    if cfg.find_lr:
        return find_lr(model, train_loader, training.optimizer, training.loss, amp_dtype, output_dir)

    reporter = Reporter(output_dir, cfg.logdir)
    scaler = grad_scaler(amp_dtype, device)
    best = dict(val_acc=-1.0, epoch=-1)
    history = []
    stopped_early = None
    train_start = time.perf_counter()
    log(f'setup took {train_start - setup_start:.1f}s; training {cfg.epochs} epochs of {len(train_loader)} steps')
    for epoch in range(cfg.epochs):
        train_whitening_bias(model, epoch < cfg.whiten_bias_epochs)
        try:
            stats = train_epoch(model, train_loader, training.optimizer, training.loss, training.lr,
                                epoch * len(train_loader), epoch, amp_dtype, cfg.grad_clip, scaler, cfg.log_frequency,
                                log, after_step=training.after_step)
        except Diverged as reason:
            stopped_early = str(reason)
            break
        val = evaluate(model, val_loader, data.num_classes, amp_dtype, logit_scale=cfg.logit_scale)
        metrics = {'default': val.accuracy, 'val_loss': val.loss, 'train_loss': stats.train_loss,
                   'train_acc': stats.train_acc, 'lr': stats.lr, 'epoch_time': stats.epoch_time, 'epoch': epoch}
        history.append(metrics)
        reporter.intermediate(metrics)
        log(f'epoch {epoch + 1}/{cfg.epochs}: train loss {stats.train_loss:.4f} acc {stats.train_acc:.2f}% | '
            f'val loss {val.loss:.4f} acc {val.accuracy:.2f}% | {stats.epoch_time:.1f}s, '
            f'{stats.images_per_s:.0f} img/s')
        if val.accuracy > best['val_acc']:
            best = dict(val_acc=val.accuracy, epoch=epoch)
            atomic_save({'model': getattr(model, '_orig_mod', model).state_dict(), 'epoch': epoch,
                         'val_acc': val.accuracy, 'config': dataclasses.asdict(cfg)}, output_dir / 'best.pt')
        if cfg.divergence_epochs and epoch + 1 >= cfg.divergence_epochs and at_chance(best['val_acc'],
                                                                                      data.num_classes):
            stopped_early = f'validation accuracy still at chance ({best["val_acc"]:.1f}%) after {epoch + 1} epochs'
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


def find_lr(model, loader, optimizer, loss_fn, amp_dtype, output_dir):
    lrs, losses = lr_range_test(model, loader, optimizer, loss_fn, amp_dtype)
    suggestion = suggest_lr(lrs, losses)
    plot = output_dir / 'lr_finder.png'
    plot_lr_range(lrs, losses, suggestion, plot)
    log(f'learning-rate range test over {len(lrs)} steps ({lrs[0]:.2g} to {lrs[-1]:.2g}): '
        f'suggested --initial_lr {suggestion:.3g}; plot {plot}')
    return 0
