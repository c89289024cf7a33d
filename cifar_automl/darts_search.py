"""DARTS cell search (Liu et al. 2019, "DARTS: Differentiable Architecture Search",
https://arxiv.org/abs/1806.09055) with NNI 3.0: `python nas/search_darts.py`.

NNI does the search: its spaces (`--space darts`, the DARTS paper's, or `--space nb201`,
NAS-Bench-201's), its one-shot strategies (`nni.nas.strategy.DARTS`, first order, or `GumbelDARTS`),
its Lightning evaluator and `nni.nas.experiment.NasExperiment`. This module is the one search loop
over either space (space_darts.py, space_nb201.py): the paper's hyperparameters as flags, the
training images on the device split 1:1 between the weights and the architecture, the architecture
exported, drawn, diagnosed (search_diagnostics.py) and checkpointed every epoch, progress on the
terminal, TensorBoard scalars, and `--resume`.

Every epoch N (from 0) writes to --output_dir:
    epoch_N.json        the architecture, NNI's exported dict (what retrain/retrain.py --arch reads)
    epoch_N.png         its cells
    epoch_N_probs.json  the softmax of every edge's architecture weights
    search.csv          a row per epoch: losses, the diagnostics, skip counts and, for nb201, the
                        cell's NAS-Bench-201 accuracy and rank on each of its three datasets
    skip_counts.json    skip_connect edges of every epoch's cell, before and after --max_skip
    checkpoint.ckpt     supernet, architecture weights, both optimizers, schedule, epoch (--resume)
and at the end final.json and final.png: the last epoch's cell, or with --skip_patience the cell of
the epoch before the skip count grew, or with --select perturbation the cell DARTS-PT's selection reads
from the trained supernet (perturbation.py), every measurement of which goes to selection.json.
--select_from DIR runs that selection again, with other selection flags, on the supernet a finished
search in DIR trained, into another --output_dir.

Skip-connection collapse (DARTS's known failure: parameter-free skip_connect edges crowd out the
convolutions as the search goes on) is reported every epoch, capped at export with --max_skip
(P-DARTS, Chen et al. 2019) and stopped early with --skip_patience (after DARTS+, Liang et al. 2019).
"""
import csv
import dataclasses
import io
import json
import logging
import math
import os
import shutil
import time
import types
import warnings
from pathlib import Path

import torch

from . import config, search_diagnostics, space_darts, space_nb201, tables
from .augment import BatchLoader
from .config import ConfigError, Option
from .data import balanced_split, load_train_test, take_subset
from .environment import import_nni_nas, require_working_nni_lock
from .files import atomic_write_json
from .training import autocast_dtype, log, lr_at, select_device

# ============================================================ Config
DESCRIPTION = __doc__.split('\n\n')[0].replace('\n', ' ')  # --help's first paragraph
# The DARTS paper's CIFAR-10 search (section 3.3 and its cnn/train_search.py) is the default.
# Options shared with the trial keep the trial's names and meanings.
_TRIAL = config.OPTIONS
OPTIONS = {
    'dataset': _TRIAL['dataset'],
    'data_dir': _TRIAL['data_dir'],
    'subset': Option(0, 'use only this many training images (0: all, 50000 for cifar10), split 1:1 between '
                        'the weights and the architecture', low=0),
    'space': Option('darts', 'search space: darts (the DARTS paper\'s normal and reduction cell) or nb201 '
                             '(NAS-Bench-201\'s cell, each exported cell looked up in its table)',
                    choices=('darts', 'nb201')),
    'width': Option(16, 'channels of the first cells (doubled at each reduction)', low=1, high=1024),
    'num_cells': Option(8, 'darts space: cells of the supernet; reduction cells at 1/3 and 2/3 of the depth',
                        low=3, high=100),
    'stage_cells': Option(5, 'nb201 space: cells in each of the supernet\'s 3 stages (5 in the benchmark\'s '
                             'networks)', low=1, high=100),
    'strategy': Option('darts', 'NNI one-shot strategy: darts (first-order DARTS) or gumbel (GumbelDARTS)',
                       choices=('darts', 'gumbel')),
    'epochs': Option(50, 'search epochs', low=1, high=100000),
    'batch_size': Option(64, 'batch size of the weights step and of the architecture step', low=1, high=65536),
    # weights
    'initial_lr': Option(0.025, 'weights SGD learning rate at the start of the cosine', low=1e-7, high=10.0),
    'ending_lr': Option(0.001, 'weights learning rate the cosine ends at, on the last step', low=0.0, high=10.0),
    'momentum': Option(0.9, 'weights SGD momentum', low=0.0, high=0.9999),
    'weight_decay': Option(3e-4, 'weights L2 weight decay', low=0.0, high=1.0),
    'grad_clip': Option(5.0, 'clip the weights\' gradient norm to this value; 0 means no clipping', low=0.0),
    # architecture
    'arch_lr': Option(3e-4, 'architecture Adam learning rate', low=1e-7, high=10.0),
    'arch_beta1': Option(0.5, 'architecture Adam beta1', low=0.0, high=0.9999),
    'arch_beta2': Option(0.999, 'architecture Adam beta2', low=0.0, high=0.9999),
    'arch_weight_decay': Option(1e-3, 'architecture Adam weight decay', low=0.0, high=1.0),
    'arch_warmup': Option(0, 'epochs that train the weights only, before the first architecture step (NNI DARTS\'s '
                             'warmup_epochs): the convolutions learn before the parameter-free ops can win', low=0),
    'beta_decay': Option(0.0, 'beta-DARTS\'s regularization (Ye et al. 2022): the architecture loss adds this weight '
                              'times the mean over edges of logsumexp of the edge\'s architecture weights, which holds '
                              'every op\'s softmax back in proportion to its size; the weight rises linearly from 0 at '
                              'the first step to this at the last (0: off)', low=0.0, high=1000.0),
    # skip-connection collapse
    'aux_skip': Option(0.0, 'DARTS- (Chu et al. 2021), nb201 space: every mixed edge adds its input times this weight, '
                            'decayed linearly to 0 over --aux_skip_epochs, so that the searchable skip_connect no '
                            'longer wins edges only because it carries the gradient (0: off)', low=0.0, high=10.0),
    'aux_skip_epochs': Option(0, 'the epochs over which --aux_skip decays to 0; the search goes on without it after '
                                 'them (0: the whole search, as DARTS- does)', low=0),
    'export_none': Option(False, 'nb201 space: the export may choose the zero op (none) for an edge, as NNI\'s '
                                 'does; by default an edge takes its strongest other op, DARTS\'s discretization rule '
                                 '(the darts space never exports it)'),
    'max_skip': Option(-1, 'P-DARTS cap at export: the normal cell (darts) or the cell (nb201) keeps at most this '
                           'many skip_connect edges (those of highest softmax weight); each other one takes its '
                           'edge\'s best op other than skip and none (-1: no cap)', low=-1, high=8),
    # architecture selection
    'select': Option('argmax', 'how the final cell is read from the trained supernet: argmax (each edge\'s op of '
                               'highest architecture weight, DARTS\'s rule) or perturbation (DARTS-PT\'s selection, Wang et '
                               'al. 2021: edge by edge, the op whose removal costs the supernet the most held-out '
                               'accuracy, then in the darts space each node\'s two edges whose removal costs the most; '
                               'cifar_automl/perturbation.py). With --arch_warmup equal to '
                               '--epochs the architecture weights never move, DARTS-PT\'s "fixed alpha"',
                     choices=('argmax', 'perturbation')),
    'select_tune_epochs': Option(1, '--select perturbation: epochs the supernet\'s weights train on after each '
                                    'edge is decided, at a tenth of --initial_lr', low=0),
    'select_once': Option(False, '--select perturbation: judge every edge on the trained supernet as it is, none '
                                 'decided before another is measured and nothing tuned (DARTS-PT\'s "once" '
                                 'projection; --select_tune_epochs is then unused)'),
    'select_images': Option(0, '--select perturbation: measure the supernet\'s accuracy on the first this many '
                               'architecture images (0: all of them); a DARTS cell takes 220 measurements', low=0),
    'select_from': Option('', 'select again from the trained supernet of the finished search in this directory: '
                              'its checkpoint and settings, with the selection flags given here (--select, '
                              '--select_once, --select_tune_epochs, --select_images, --export_none), written to --output_dir; '
                              'nothing trains but --select_tune_epochs'),
    'skip_patience': Option(0, 'stop the search once the capped cell has had more skip_connect edges than its fewest '
                               'so far for this many epochs in a row; final.json is then the cell of the epoch before '
                               'the growth (0: never stop early)', low=0),
    # augmentation (the paper's search crops and flips both halves)
    'crop_padding': dataclasses.replace(_TRIAL['crop_padding'], default=4, off=None),
    'flip': _TRIAL['flip'],
    # speed
    'device': _TRIAL['device'],
    'precision': dataclasses.replace(_TRIAL['precision'], help='autocast dtype; auto: bf16 mixed precision on GPUs '
                                     'with bf16, else fp32 (fp16 on such GPUs with --grad_clip 0); fp32 on CPUs'),
    'channels_last': dataclasses.replace(_TRIAL['channels_last'], help='NHWC memory format on GPUs (ignored on CPU, '
                                         'where a bf16 dilated 5x5 convolution gave non-finite gradients)'),
    'threads': _TRIAL['threads'],
    'cpu_ops': Option(True, 'on a CPU, run the supernet\'s 3x3 average pools and depthwise convolutions in faster '
                            'forms of the same arithmetic (cifar_automl/cpu_ops.py); no effect on GPUs'),
    # run control
    'seed': _TRIAL['seed'],
    'preset': Option('', 'a named group of the settings above (see PRESETS in cifar_automl/darts_search.py and '
                         'docs/darts.md), overridden by explicit flags', choices=('', 'cifar_cpu', 'nb201_cpu')),
    'log_frequency': Option(20, 'print progress every this many steps (0: only per epoch)', low=0),
    'output_dir': Option('', 'where the per-epoch architectures, drawings, TensorBoard logs and the checkpoint go '
                             '(default: outputs/darts-<time>)'),
    'resume': Option(False, 'continue the search in --output_dir from its last checkpoint'),
}

# What a resumed search must share with the one it continues: the supernet, the data and the
# schedule are built from these, so a different value cannot load the checkpoint or would
# silently change the search. The other options (device, threads, ...) may change.
SEARCH_DEFINING = ('dataset', 'space', 'subset', 'width', 'num_cells', 'stage_cells', 'strategy', 'epochs',
                   'batch_size', 'initial_lr', 'ending_lr', 'momentum', 'weight_decay', 'grad_clip', 'arch_lr',
                   'arch_beta1', 'arch_beta2', 'arch_weight_decay', 'arch_warmup', 'beta_decay', 'aux_skip',
                   'aux_skip_epochs', 'export_none', 'select', 'select_tune_epochs', 'select_once', 'select_images',
                   'max_skip', 'skip_patience', 'crop_padding', 'flip', 'seed', 'preset')
# What --select_from may set apart from the finished search it selects from.
SELECTION_DEFINING = ('select', 'select_tune_epochs', 'select_once', 'select_images', 'export_none')

# Named settings for a whole kind of search; explicit flags win.
PRESETS = {
    # CIFAR-10 on 2 CPU cores in about an hour: a width-8, 5-cell supernet step (weights and architecture)
    # at batch 64 took 8.6-9.6 s in fp32 on this project's 2 idle cores (docs/results/darts_cpu/search.log), so
    # 5000 images (2500 a half, 39 steps an epoch) give about 6 min an epoch and 10 epochs 61 min. The
    # architecture then takes 390 steps, 50x fewer than the paper's 19550: its Adam learning rate is 3.3x the
    # paper's so that the edges' softmax can still separate, and the P-DARTS cap guards the normal cell against
    # the skip connections that a short, fast search favours.
    'cifar_cpu': dict(dataset='cifar10', subset=5000, width=8, num_cells=5, epochs=10, batch_size=64, arch_lr=1e-3,
                      max_skip=2),
    # NAS-Bench-201 on CIFAR-10 on 2 CPU cores (docs/results/nb201_cpu, the tries in docs/results/nb201_tries):
    # DARTS-PT with fixed alpha. A width-8 supernet of the benchmark's depth, 5 cells a stage, trains every op
    # at once for 15 epochs of 5000 images (its architecture weights never step), then the selection by
    # perturbation reads the cell from it, edge by edge; about 33 minutes here, idle (15 of training, 18 of
    # selection). Its supernet finds the skip connection on edge 0->3 that 123 of the 135 cells at 91 or
    # more have in every seed; at 3 cells a stage (docs/results/nb201_cpu_3cells) two seeds of four chose a
    # convolution there, and one cell a stage chose one in all three.
    'nb201_cpu': dict(space='nb201', dataset='cifar10', subset=10000, width=8, stage_cells=5, epochs=15,
                      batch_size=64, arch_warmup=15, select='perturbation'),
}

SearchConfig = dataclasses.make_dataclass(
    'SearchConfig', [(name, opt.type, dataclasses.field(default=opt.default)) for name, opt in OPTIONS.items()])

CONFIG_FILE = 'search_config.json'
CHECKPOINT_FILE = 'checkpoint.ckpt'
FINAL_NAME = 'final'
GUMBEL_TEMPERATURE = (1.0, 0.33)  # NNI's GumbelDARTS default: linear from 1.0 to 0.33 over the search
SPACES = {space.NAME: space for space in (space_darts, space_nb201)}


def resolve(argv=None):
    """Defaults < (with --resume) the resumed search's config < flags. Raises ConfigError."""
    given = config.parse_flags(DESCRIPTION, OPTIONS, argv)
    values = {name: opt.default for name, opt in OPTIONS.items()}
    values.update(PRESETS.get(given.get('preset', ''), {}))
    if given.get('resume') and given.get('select_from'):
        raise ConfigError('--resume and --select_from: continue a search, or select again from a finished one')
    if given.get('select_from'):
        values.update(finished_search(Path(given['select_from']), given))
    elif given.get('resume'):
        if not given.get('output_dir'):
            raise ConfigError('--resume needs --output_dir: the directory of the search to continue')
        output_dir = Path(given['output_dir'])
        for needed in (CONFIG_FILE, CHECKPOINT_FILE):
            if not (output_dir / needed).is_file():
                raise ConfigError(f'--resume: {output_dir / needed} is missing; no search to continue in {output_dir}')
        saved = json.loads((output_dir / CONFIG_FILE).read_text())
        if epochs_done(output_dir) >= saved['epochs']:
            raise ConfigError(f'--resume: the search in {output_dir} finished all its {saved["epochs"]} epochs; '
                              f'nothing is left to continue (to select again from its supernet: --select_from '
                              f'{output_dir} --output_dir ANOTHER_DIR)')
        for name, value, was in changed_settings(saved, given):
            raise ConfigError(f'--resume: --{name} {value!r} differs from the search being resumed '
                              f'({was!r} in {output_dir / CONFIG_FILE}); leave it out to continue')
        values.update({name: saved[name] for name in OPTIONS if name in saved})
    values.update(given)
    cfg = SearchConfig(**values)
    if cfg.ending_lr > cfg.initial_lr:
        raise ConfigError(f'--ending_lr {cfg.ending_lr} exceeds --initial_lr {cfg.initial_lr}: the cosine decays')
    if cfg.select_from and cfg.select != 'perturbation':
        raise ConfigError(f'--select_from {cfg.select_from}: give --select perturbation (the finished search\'s '
                          f'argmax exports are its epoch_N.json already)')
    return cfg


def changed_settings(saved, given, may_change=()):
    """(name, given value, saved value) of each search-defining flag given that differs from the saved
    search's; a search saved before an option existed had its default."""
    for name in SEARCH_DEFINING:
        was = saved.get(name, OPTIONS[name].default)
        if name in given and name not in may_change and given[name] != was:
            yield name, given[name], was


def epochs_done(output_dir):
    """How many epochs the search in `output_dir` has finished (skip_counts.json has a line per epoch)."""
    done = output_dir / SKIP_COUNTS_FILE
    return len(json.loads(done.read_text())) if done.is_file() else 0


def finished_search(source, given):
    """The settings of the finished search in `source` that a --select_from run keeps. Raises ConfigError
    for a search not finished, for a flag that would change what it trained, and for --output_dir `source`,
    whose selection would be overwritten."""
    for needed in (CONFIG_FILE, CHECKPOINT_FILE, SKIP_COUNTS_FILE):
        if not (source / needed).is_file():
            raise ConfigError(f'--select_from: {source / needed} is missing; no finished search in {source}')
    saved = json.loads((source / CONFIG_FILE).read_text())
    if epochs_done(source) < saved['epochs']:
        raise ConfigError(f'--select_from: the search in {source} finished {epochs_done(source)} of its '
                          f'{saved["epochs"]} epochs; continue it first with --resume --output_dir {source}')
    for name, value, was in changed_settings(saved, given, may_change=SELECTION_DEFINING):
        raise ConfigError(f'--select_from: --{name} {value!r} differs from the search that trained the '
                          f'supernet ({was!r} in {source / CONFIG_FILE}); only '
                          + ', '.join(f'--{n}' for n in SELECTION_DEFINING) + ' may change')
    if not given.get('output_dir') or Path(given['output_dir']).resolve() == source.resolve():
        raise ConfigError(f'--select_from {source}: give another --output_dir, so that its selection is kept')
    return {name: saved[name] for name in OPTIONS if name in saved and name not in ('output_dir', 'resume')}


def build_parser():
    return config.build_parser(DESCRIPTION, OPTIONS)


def default_output_dir():
    return Path('outputs') / time.strftime('darts-%Y%m%d-%H%M%S')


# ============================================================ Data

def search_splits(cfg):
    """(weights half, architecture half) of the training images, class-balanced and seeded.
    The DARTS paper searches on the 50000 CIFAR-10 training images split 25000/25000; the
    test images are never seen."""
    train, _, classes = load_train_test(cfg.dataset, cfg.data_dir)
    images = take_subset(train, cfg.subset, len(classes), cfg.seed + 1)
    weights, arch = balanced_split(images, len(images) // 2, len(classes), cfg.seed, source='--subset')
    if min(len(weights), len(arch)) < cfg.batch_size:
        raise ConfigError(f'--batch_size {cfg.batch_size} exceeds the {min(len(weights), len(arch))} images of a half '
                          f'of the {len(images)} training images: lower --batch_size or raise --subset')
    return weights, arch, len(classes)


def use_channels_last(cfg, device):
    """Only on GPUs: on CPU, torch 2.14's bf16 backward of a channels-last depthwise 5x5 conv with
    dilation 2 (DARTS's dil_conv_5x5) returns non-finite weight gradients, and the search diverges."""
    return cfg.channels_last and device.type == 'cuda'


def search_loaders(cfg, device):
    weights, arch, num_classes = search_splits(cfg)
    augmentation = dict(crop_padding=cfg.crop_padding, flip=cfg.flip, channels_last=use_channels_last(cfg, device))
    weights_loader = BatchLoader(weights, cfg.batch_size, device, train=True, seed=cfg.seed, **augmentation)
    arch_loader = BatchLoader(arch, cfg.batch_size, device, train=True, seed=cfg.seed + 1, **augmentation)
    return weights_loader, arch_loader, num_classes


# ============================================================ NNI, quietened

def quiet_nni_and_lightning():
    """Keep the terminal for progress: NNI logs every exported node's sorted weights (lines of
    thousands of characters) at every export and warns about settings a one-shot search ignores;
    Lightning announces accelerators and deprecations that are not the user's to fix."""
    logging.getLogger('nni.nas.oneshot.pytorch.supermodule.differentiable').setLevel(logging.WARNING)
    # "`training_service` will be ignored for sequential execution engine", on every config copy.
    logging.getLogger('nni.nas.experiment.config.experiment').setLevel(logging.ERROR)
    # "Checkpoint callback is found to be None": this module checkpoints itself (SearchMonitor).
    logging.getLogger('nni.nas.oneshot.pytorch.strategy').setLevel(logging.ERROR)
    # "Validation dataloaders are missing. Safe to ignore ... when using one-shot strategy."
    logging.getLogger('nni.nas.evaluator.pytorch.lightning').setLevel(logging.ERROR)
    # NNI's "Checkpoint saved to", "Experiment initialized", ...: its log file keeps them.
    logging.getLogger('nni.nas.experiment.experiment').setLevel(logging.WARNING)
    # Lightning sets its loggers to INFO on import, hence this runs after importing NNI.
    for name in ('pytorch_lightning', 'lightning_fabric'):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings('ignore', message='.*isinstance\\(treespec, LeafSpec\\).*')
    warnings.filterwarnings('ignore', message='.*does not have many workers.*')
    warnings.filterwarnings('ignore', message='.*is found to be not a nn.Module.*')


# ============================================================ The search, as NNI Lightning modules

class EpochStats:
    """Loss and accuracy sums of one kind of step over an epoch, kept on the device (reading
    them syncs a GPU, so that happens only where they are printed)."""

    def __init__(self):
        self.loss_sum = self.correct = None
        self.seen = 0

    def add(self, loss, logits, labels):
        loss_sum = loss.detach().float() * len(labels)
        correct = (logits.detach().argmax(1) == labels).sum()
        self.loss_sum = loss_sum if self.loss_sum is None else self.loss_sum + loss_sum
        self.correct = correct if self.correct is None else self.correct + correct
        self.seen += len(labels)

    def means(self):
        """(mean loss, accuracy in percent)."""
        if not self.seen:
            return math.nan, math.nan
        return self.loss_sum.item() / self.seen, 100 * self.correct.item() / self.seen


def build_modules(cfg, steps_per_epoch, num_classes, channels_last, cpu_ops=False):
    """NNI's Lightning classes are imported with NNI, so the subclasses are made here. `cpu_ops`:
    swap the supernet's slow CPU ops once NNI's strategy has built it (cifar_automl/cpu_ops.py)."""
    from nni.nas.evaluator.pytorch import ClassificationModule
    from nni.nas.oneshot.pytorch.differentiable import (DartsLightningModule, GumbelDartsLightningModule,
                                                        LinearTemperatureScheduler)
    from nni.nas.strategy import DARTS, GumbelDARTS

    class SearchModule(ClassificationModule):
        """NNI's ClassificationModule, with the DARTS paper's weights optimizer (SGD with momentum,
        a per-step cosine from initial_lr to ending_lr; Classification only offers an optimizer class
        called with lr and weight decay, and no schedule) and a record of both steps: NNI's DARTS calls
        training_step twice per batch and both would log as 'train_loss'."""

        def __init__(self):
            super().__init__(learning_rate=cfg.initial_lr, weight_decay=cfg.weight_decay,
                             optimizer=torch.optim.SGD, num_classes=num_classes)
            self.stats = {'weights': EpochStats(), 'arch': EpochStats()}

        def training_step(self, batch, batch_idx):
            step = self.trainer.current_epoch * steps_per_epoch + batch_idx // 2
            schedule.progress = step / max(1, cfg.epochs * steps_per_epoch - 1)  # 0 at the first step, 1 at the last
            schedule.aux_skip = aux_skip_weight(cfg, step, steps_per_epoch)
            images, labels = batch
            logits = self(images)
            loss = self.criterion(logits, labels)
            # NNI's DARTS passes the architecture half's batch with the index 2i (architecture
            # step), then the weights half's with 2i + 1 (weights step).
            kind = 'arch' if batch_idx % 2 == 0 else 'weights'
            self.stats[kind].add(loss, logits, labels)
            if kind == 'weights':  # what NNI's Classification logs, and reports as the search's final result
                self.log('train_loss', loss)
                self.log('train_acc', (logits.argmax(1) == labels).float().mean())
            elif cfg.beta_decay:
                loss = loss + cfg.beta_decay * schedule.progress * beta_decay_loss(self.model)
            return loss

        def configure_optimizers(self):
            optimizer = torch.optim.SGD(self.parameters(), lr=cfg.initial_lr, momentum=cfg.momentum,
                                        weight_decay=cfg.weight_decay)
            total_steps = cfg.epochs * steps_per_epoch
            cosine = torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda step: lr_at(step, total_steps, cfg.initial_lr, cfg.ending_lr) / cfg.initial_lr)
            return [optimizer], [{'scheduler': cosine, 'interval': 'step'}]

        def _get_result_for_report(self):
            # NNI reports the last train_acc at the end of fit; a --select_from run trains nothing.
            return self.trainer.callback_metrics.get('train_acc', torch.tensor(math.nan)).item()

        def on_fit_start(self):
            if channels_last:
                self.model.to(memory_format=torch.channels_last)

    class ArchAdam:
        """The architecture optimizer with every hyperparameter from the flags: NNI's
        DartsLightningModule takes only its learning rate and fixes betas (0.5, 0.999) and weight
        decay 1e-3. Its architecture parameters come in a set's order, which differs between
        processes; a resumed Adam would give one edge another's moments, so they are ordered here."""

        def arch_parameters(self):
            unique = set(super().arch_parameters())
            return [p for _, p in self.named_parameters() if p in unique]

        def configure_architecture_optimizers(self):
            return torch.optim.Adam(self.arch_parameters(), lr=cfg.arch_lr, betas=(cfg.arch_beta1, cfg.arch_beta2),
                                    weight_decay=cfg.arch_weight_decay)

        def log_probs(self, probs):
            """NNI logs every edge's softmax every few steps to Lightning's logger;
            SearchMonitor writes them to TensorBoard once per epoch instead."""

    class DartsModule(ArchAdam, DartsLightningModule):
        pass

    class GumbelDartsModule(ArchAdam, GumbelDartsLightningModule):
        pass

    clip = cfg.grad_clip or None
    schedule = types.SimpleNamespace(progress=0.0, aux_skip=cfg.aux_skip)  # the regularizers' schedules, per step

    class SupernetChanges:
        """What this search changes in NNI's supernet, once NNI's strategy has built it (it builds each mixed
        op's candidates anew): the CPU ops, DARTS-'s auxiliary skips."""

        def mutate_model(self, model):
            model = super().mutate_model(model)
            if cpu_ops:
                from .cpu_ops import speed_up
                speed_up(model)
            if cfg.aux_skip:
                add_auxiliary_skips(model, lambda: schedule.aux_skip)
            return model

    class DartsStrategy(SupernetChanges, DARTS):
        def configure_oneshot_module(self, training_module):
            return DartsModule(training_module, gradient_clip_val=clip, warmup_epochs=cfg.arch_warmup)

    class GumbelDartsStrategy(SupernetChanges, GumbelDARTS):
        def configure_oneshot_module(self, training_module):
            return GumbelDartsModule(training_module, LinearTemperatureScheduler(*GUMBEL_TEMPERATURE),
                                     gradient_clip_val=clip, warmup_epochs=cfg.arch_warmup)

    strategy = DartsStrategy() if cfg.strategy == 'darts' else GumbelDartsStrategy(temperature=GUMBEL_TEMPERATURE)
    return SearchModule(), strategy


def architecture_weights(model):
    """The one-shot supernet's architecture weight vectors, each once (cells that share a choice share
    its vector): NNI's mixed layers hold one as `_arch_alpha`, its mixed cells a dict of them."""
    unique = {}
    for module in model.modules():
        alpha = getattr(module, '_arch_alpha', None)
        vectors = alpha.values() if isinstance(alpha, torch.nn.ParameterDict) else [alpha] if alpha is not None else []
        unique.update({id(vector): vector for vector in vectors})
    return list(unique.values())


def aux_skip_weight(cfg, step, steps_per_epoch):
    """--aux_skip at the search's first step, falling linearly to 0 at the end of --aux_skip_epochs (of
    the whole search when 0) and 0 after it."""
    decay_steps = (cfg.aux_skip_epochs or cfg.epochs) * steps_per_epoch
    return cfg.aux_skip * max(0.0, 1 - step / decay_steps)


def add_auxiliary_skips(model, weight):
    """DARTS-'s auxiliary skip connection: each mixed layer (an edge of one architecture weight vector)
    whose output has its input's shape adds its input times weight(). Returns how many were added."""
    added = 0
    for module in model.modules():
        if isinstance(getattr(module, '_arch_alpha', None), torch.nn.Parameter):
            module.register_forward_hook(
                lambda _, inputs, out: out + weight() * inputs[0] if out.shape == inputs[0].shape else out)
            added += 1
    return added


def beta_decay_loss(model):
    """beta-DARTS's Beta-Decay term: the mean over edges of logsumexp(alpha). Its gradient on each
    op's weight is that op's softmax, so descending it shrinks the strongest ops the most."""
    return torch.stack([torch.logsumexp(alpha, -1) for alpha in architecture_weights(model)]).mean()


# ============================================================ Skip-connection collapse

SKIP = 'skip_connect'
SKIP_COUNTS_FILE = 'skip_counts.json'
SEARCHED = 'searched'  # skip_counts.json's key for the capped cell's count before the cap


def cap_skips(arch, probs, max_skip, edges):
    """P-DARTS's cap (Chen et al. 2019, sec. 3.3): of the skip_connect `edges` [(arch key,
    edge_softmax key)] (the space's skip_edges: the DARTS normal cell's, the NAS-Bench-201 cell's),
    keep the `max_skip` of highest softmax weight; each other one takes the op of highest softmax
    weight on its edge other than skip_connect and the zero op. Returns (the capped arch, ['<edge>:
    <new op>'] for each edge changed). A DARTS edge keeps its input."""
    skips = sorted(((probs[edge][SKIP], key, edge) for key, edge in edges), reverse=True)
    capped, changes = dict(arch), []
    for _, key, edge in skips[max(0, max_skip):]:
        op = max((p, op) for op, p in probs[edge].items() if op not in (SKIP, 'none'))[1]
        capped[key] = op
        changes.append(f'{edge}: {op}')
    return capped, sorted(changes)


def stop_epoch(counts, patience):
    """The early stop after DARTS+ (Liang et al. 2019): `counts` are the capped cell's skip_connect
    edges at each epoch so far, before the cap. Once the last `patience` epochs all had more than the
    fewest of the epochs before them, the search stops and keeps the epoch before that growth:
    returns its index, else None."""
    if not patience or len(counts) <= patience:
        return None
    fewest = min(counts[:-patience])
    if all(count > fewest for count in counts[-patience:]):
        return len(counts) - patience - 1
    return None


def chosen_epoch(skip_counts, patience):
    """The epoch whose cell is final.json: where --skip_patience stopped the search, else the last.
    The search stops at the first epoch stop_epoch answers, so the whole history gives the same answer."""
    keep = stop_epoch([counts[SEARCHED] for counts in skip_counts], patience)
    return skip_counts[-1]['epoch'] if keep is None else keep


def format_duration(seconds):
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f'{hours}h{minutes:02d}m' if hours else f'{minutes}m{seconds:02d}s' if minutes else f'{seconds}s'


# ============================================================ Every epoch: export, diagnose, score, log, checkpoint

EPOCHS_CSV = 'search.csv'


def epoch_row(epoch, epoch_time, stats, diagnosis, skips, score):
    """search.csv's row for an epoch: what a plot of the search over epochs needs."""
    row = {'epoch': epoch, 'seconds': round(epoch_time, 1)}
    for kind, record in stats.items():
        loss, accuracy = record.means()
        row[f'{kind}_loss'], row[f'{kind}_acc'] = round(loss, 4), round(accuracy, 2)
    row.update({key: round(value, 4) if isinstance(value, float) else value for key, value in diagnosis.items()})
    row.update({f'skip_{cell}': count for cell, count in skips.items() if cell != 'epoch'})
    return row | score


def write_rows(rows, path):
    """The whole CSV again each epoch (a few rows), renamed over the last: never half a file."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[-1]))
    writer.writeheader()
    writer.writerows(rows)
    partial = path.with_name(f'.{path.name}.partial')
    partial.write_text(buffer.getvalue())
    os.replace(partial, path)


def make_monitor(cfg, space, output_dir):
    import pytorch_lightning as pl

    class SearchMonitor(pl.Callback):
        """Progress on the terminal; every epoch the architecture as JSON and PNG, its diagnostics and
        table scores (search.csv, TensorBoard), then the checkpoint (last, so that a resumed search
        never skips an epoch's files)."""

        def __init__(self):
            self.writer = None
            self.epoch_start = self.run_start = 0.0
            self.first_epoch = 0
            self.skip_counts = []  # per epoch, as skip_counts.json
            self.rows = []  # per epoch, as search.csv
            self.oneshot_module = None

        def on_train_start(self, trainer, pl_module):
            from torch.utils.tensorboard import SummaryWriter
            self.first_epoch = trainer.current_epoch
            # A resumed search drops the TensorBoard points of the epochs it repeats.
            self.writer = SummaryWriter(str(output_dir / 'tensorboard'), purge_step=self.first_epoch)
            self.run_start = time.perf_counter()
            if self.first_epoch:  # --skip_patience and search.csv continue the history
                if (output_dir / SKIP_COUNTS_FILE).is_file():
                    self.skip_counts = json.loads((output_dir / SKIP_COUNTS_FILE).read_text())[:self.first_epoch]
                if (output_dir / EPOCHS_CSV).is_file():
                    with open(output_dir / EPOCHS_CSV, newline='') as f:
                        self.rows = list(csv.DictReader(f))[:self.first_epoch]
                log(f'resumed from {output_dir / CHECKPOINT_FILE}: continuing at epoch {self.first_epoch + 1}/'
                    f'{cfg.epochs} (next file epoch_{self.first_epoch}.json)')

        def on_train_epoch_start(self, trainer, pl_module):
            pl_module.training_module.stats = {'weights': EpochStats(), 'arch': EpochStats()}
            self.epoch_start = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            step = batch_idx + 1
            if not cfg.log_frequency or step % cfg.log_frequency:
                return
            steps = trainer.num_training_batches
            stats = pl_module.training_module.stats
            elapsed = time.perf_counter() - self.epoch_start
            log(f'epoch {trainer.current_epoch + 1}/{cfg.epochs} step {step}/{steps} | '
                f'{describe_stats(stats)} | lr {weights_lr(trainer):.4g} | {elapsed / step:.2f}s/step, '
                f'epoch ETA {format_duration(elapsed / step * (steps - step))}')

        def on_train_epoch_end(self, trainer, pl_module):
            epoch = trainer.current_epoch
            epoch_time = time.perf_counter() - self.epoch_start
            probs = space.edge_softmax(pl_module)
            searched = space.discretize(pl_module.export(), probs, cfg)
            arch, capped = (cap_skips(searched, probs, cfg.max_skip, space.skip_edges(searched))
                            if cfg.max_skip >= 0 else (searched, []))
            self.skip_counts.append({'epoch': epoch, SEARCHED: len(space.skip_edges(searched)),
                                     **space.skip_counts(arch)})
            atomic_write_json(self.skip_counts, output_dir / SKIP_COUNTS_FILE)
            previous = output_dir / f'epoch_{epoch - 1}.json'
            diagnosis = search_diagnostics.diagnose(
                probs, arch, json.loads(previous.read_text()) if epoch and previous.is_file() else None)
            score = space.scores(arch)
            space.write(arch, output_dir / f'epoch_{epoch}.json')
            atomic_write_json(probs, output_dir / f'epoch_{epoch}_probs.json')
            space.plot(arch, output_dir / f'epoch_{epoch}.png', describe_cell(f'epoch {epoch}', score))
            stats = pl_module.training_module.stats
            self.rows.append(epoch_row(epoch, epoch_time, stats, diagnosis, self.skip_counts[-1], score))
            write_rows(self.rows, output_dir / EPOCHS_CSV)
            self.write_scalars(epoch, stats, probs, epoch_time, weights_lr(trainer), self.skip_counts[-1],
                               diagnosis, score)
            done = epoch + 1 - self.first_epoch
            eta = (time.perf_counter() - self.run_start) / done * (cfg.epochs - epoch - 1)
            log(f'epoch {epoch + 1}/{cfg.epochs} done in {format_duration(epoch_time)} | {describe_stats(stats)} | '
                f'search ETA {format_duration(eta)}')
            for line in space.summary(arch):
                log(f'  {line}')
            if score:
                log(f'  NAS-Bench-201: {space_nb201.describe_scores(score)}')
            log(f'  {search_diagnostics.describe(diagnosis)}')
            log(f'  {describe_skips(self.skip_counts[-1], capped)}')
            keep = stop_epoch([counts[SEARCHED] for counts in self.skip_counts], cfg.skip_patience)
            if keep is not None:
                trainer.should_stop = True
                log(f'  stopping early (--skip_patience {cfg.skip_patience}): the cell has had more '
                    f'skip_connect edges than at epoch {keep} in each of the last {cfg.skip_patience}; final.json is '
                    f'epoch_{keep}.json')
            save_checkpoint(trainer, output_dir / CHECKPOINT_FILE)
            log(f'  wrote {output_dir / f"epoch_{epoch}.json"} (.png, _probs.json), {EPOCHS_CSV} and '
                f'{CHECKPOINT_FILE}')

        def write_scalars(self, epoch, stats, probs, epoch_time, lr, skip_counts, diagnosis, score):
            scalars = {'lr': lr, 'epoch_time': epoch_time}
            scalars.update({f'skip_connect/{cell}': count for cell, count in skip_counts.items() if cell != 'epoch'})
            for kind, record in stats.items():
                loss, accuracy = record.means()
                scalars[f'loss/{kind}'] = loss
                scalars[f'accuracy/{kind}'] = accuracy
            scalars.update({f'diagnostics/{key}': value for key, value in diagnosis.items()
                            if isinstance(value, (int, float))})
            scalars.update({f'entropy/{edge}': search_diagnostics.entropy(p) for edge, p in probs.items()})
            scalars.update({f'softmax/{edge}/{op}': p for edge, dist in probs.items() for op, p in dist.items()})
            scalars.update({f'nb201/{key}': value for key, value in score.items()})
            for tag, value in scalars.items():
                self.writer.add_scalar(tag, value, epoch)
            self.writer.flush()

        def setup(self, trainer, pl_module, stage):
            # The supernet, for --select perturbation: kept here because a resumed search whose epochs
            # were all done skips the training hooks, and a checkpoint loads into this same module.
            self.oneshot_module = pl_module

        def on_train_end(self, trainer, pl_module):
            self.writer.close()

        def on_exception(self, trainer, pl_module, exception):
            # Lightning turns Ctrl-C into a graceful stop and exit status 1.
            if isinstance(exception, KeyboardInterrupt):
                log(f'interrupted in epoch {trainer.current_epoch + 1}/{cfg.epochs}; continue with: '
                    f'python nas/search_darts.py --resume --output_dir {output_dir}')

    return SearchMonitor()


def describe_cell(title, score):
    """A drawing's title: the epoch, and the table's CIFAR-10 accuracy where there is one."""
    if not score:
        return title
    return f'{title}: NAS-Bench-201 CIFAR-10 {score["cifar10"]:.2f}% (rank {score["cifar10_rank"]})'


def describe_skips(counts, capped):
    """'skip_connect edges: normal 2 (3 as searched; capped: normal/4_1: sep_conv_3x3), reduce 1': the
    capped cell first."""
    cells = [f'{cell} {count}' for cell, count in counts.items() if cell not in ('epoch', SEARCHED)]
    if capped:
        cells[0] += f' ({counts[SEARCHED]} as searched; capped: {", ".join(capped)})'
    return f'skip_connect edges: {", ".join(cells)}'


def describe_stats(stats):
    weights_loss, weights_acc = stats['weights'].means()
    arch_loss, arch_acc = stats['arch'].means()
    return (f'weights loss {weights_loss:.4f} acc {weights_acc:.1f}% | '
            f'arch loss {arch_loss:.4f} acc {arch_acc:.1f}%')


def weights_lr(trainer):
    weights = [opt for opt in trainer.optimizers if not getattr(opt, 'is_arch_optimizer', False)]
    return weights[0].param_groups[0]['lr']


def save_checkpoint(trainer, path):
    """Lightning's checkpoint of the whole one-shot module, renamed over the last one only
    once complete: a search killed while writing keeps its previous checkpoint."""
    partial = path.with_name(f'.{path.name}.partial')
    trainer.save_checkpoint(str(partial), weights_only=False)
    os.replace(partial, path)


# ============================================================ Selection by perturbation

SELECTION_FILE = 'selection.json'


def select_by_perturbation(cfg, oneshot_module, weights_loader, arch_loader, output_dir):
    """DARTS-PT's cell from the trained supernet (cifar_automl/perturbation.py). selection.json gets the
    cell, every measurement in decision order and the selection's seconds. Returns (arch, how the log
    names it)."""
    from .perturbation import select
    space = SPACES[cfg.space]
    how = ('every choice judged on the trained supernet as it is (--select_once)' if cfg.select_once else
           f'{cfg.select_tune_epochs} epoch{"s" * (cfg.select_tune_epochs != 1)} of weight training after each choice')
    inputs = f', then each node\'s {space.INPUTS_PER_NODE} edges whose removal costs the most' * bool(space.INPUTS_PER_NODE)
    images = len(arch_loader.labels[:cfg.select_images or None])
    log(f'selecting the cell by perturbation (DARTS-PT): edge by edge, the op whose removal costs the supernet '
        f'the most accuracy on {images} architecture images{inputs}; {how}')
    training_module = oneshot_module.training_module
    start = time.perf_counter()
    edge_ops, record = select(training_module.model, training_module.criterion, weights_loader, arch_loader, cfg,
                              space.node_inputs, space.INPUTS_PER_NODE)
    arch = space.from_edge_ops(edge_ops)
    atomic_write_json({'seconds': round(time.perf_counter() - start, 1), 'cell': arch, 'edges': record},
                      output_dir / SELECTION_FILE)
    return arch, f'selected by perturbation, {SELECTION_FILE}'


# ============================================================ Run

def lightning_precision(cfg, device):
    """The trial's --precision choice in Lightning's words (mixed precision keeps fp32 weights).
    fp16 needs loss scaling, and NNI's DARTS clips the weights' gradients after the backward
    but before Lightning unscales them (in its optimizer step): the clip would act on gradients
    thousands of times too large. So a GPU without bf16 searches in fp32 when clipping."""
    dtype = autocast_dtype(cfg.precision, device, cpu_bf16_pays=False)
    if dtype == torch.float16 and cfg.grad_clip > 0:
        if cfg.precision == 'fp16':
            raise ConfigError('--precision fp16 with --grad_clip > 0: NNI\'s DARTS clips fp16 gradients before '
                              'they are unscaled; use --precision fp32 or bf16, or --grad_clip 0')
        dtype = None
    return {None: '32-true', torch.bfloat16: 'bf16-mixed', torch.float16: '16-mixed'}[dtype]


def main(argv=None):
    return config.exit_status(lambda: run(resolve(argv)))


def run(cfg):
    require_working_nni_lock()  # NasExperiment.run() takes NNI's lock, which a filelock >= 3.12 hangs
    setup_start = time.perf_counter()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    device = select_device(cfg.device)
    precision = lightning_precision(cfg, device)
    weights_loader, arch_loader, num_classes = search_loaders(cfg, device)
    output_dir = Path(cfg.output_dir) if cfg.output_dir else default_output_dir()
    output_dir.mkdir(parents=True, exist_ok=True)
    if not cfg.resume:
        atomic_write_json(dataclasses.asdict(cfg) | {'output_dir': str(output_dir)}, output_dir / CONFIG_FILE)
    if cfg.select_from:  # the finished search's files, which the selection reads and appends to
        for name in (CHECKPOINT_FILE, SKIP_COUNTS_FILE, EPOCHS_CSV):
            shutil.copyfile(Path(cfg.select_from) / name, output_dir / name)

    import_nni_nas()
    quiet_nni_and_lightning()
    from nni.nas.evaluator.pytorch import Lightning, Trainer
    from nni.nas.experiment import NasExperiment

    space = SPACES[cfg.space]
    monitor = make_monitor(cfg, space, output_dir)
    search_module, strategy = build_modules(cfg, len(weights_loader), num_classes, use_channels_last(cfg, device),
                                            cpu_ops=cfg.cpu_ops and device.type == 'cpu')
    trainer = Trainer(max_epochs=cfg.epochs, accelerator='gpu' if device.type == 'cuda' else 'cpu',
                      devices=[device.index or 0] if device.type == 'cuda' else 1,  # the GPU --device cuda:N names
                      precision=precision, callbacks=[monitor], logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      default_root_dir=str(output_dir))
    fit_kwargs = {'ckpt_path': str(output_dir / CHECKPOINT_FILE)} if cfg.resume or cfg.select_from else {}
    evaluator = Lightning(search_module, trainer, train_dataloaders=weights_loader, val_dataloaders=arch_loader,
                          fit_kwargs=fit_kwargs)
    experiment = NasExperiment(space.build(cfg, num_classes), evaluator, strategy)
    # NNI's experiment log and its own checkpoint go beside the search's files, not to ~/nni-experiments.
    experiment.config.experiment_working_directory = str(output_dir / 'nni')
    size = (f'{cfg.num_cells} cells' if cfg.space == 'darts'
            else f'3 stages of {cfg.stage_cells} cell{"s" * (cfg.stage_cells != 1)}')
    log(f'{space.TITLE} search ({cfg.strategy}) on {cfg.dataset}: {len(weights_loader.labels)} images for the weights, '
        f'{len(arch_loader.labels)} for the architecture, batch {cfg.batch_size} ({len(weights_loader)} steps per '
        f'epoch); {size} of width {cfg.width}; device {device}, precision {precision}, '
        f'{torch.get_num_threads()} thread{"s" * (torch.get_num_threads() != 1)}; output {output_dir}; '
        f'setup {time.perf_counter() - setup_start:.1f}s')
    if cfg.select_from:
        log(f'selecting again from the supernet that the search in {cfg.select_from} trained for its {cfg.epochs} '
            f'epochs (its files stay as they are)')
    search_start = time.perf_counter()
    experiment.run()
    if cfg.select == 'perturbation':
        arch, selected = select_by_perturbation(cfg, monitor.oneshot_module, weights_loader, arch_loader, output_dir)
    else:  # the epoch's cell as written (after --max_skip), not NNI's export_top_models (before it)
        final_epoch = chosen_epoch(json.loads((output_dir / SKIP_COUNTS_FILE).read_text()), cfg.skip_patience)
        arch = json.loads((output_dir / f'epoch_{final_epoch}.json').read_text())
        selected = f'epoch {final_epoch}'
    score = space.scores(arch)
    space.write(arch, output_dir / f'{FINAL_NAME}.json')
    space.plot(arch, output_dir / f'{FINAL_NAME}.png', describe_cell(f'final ({selected})', score))
    log(f'search done in {format_duration(time.perf_counter() - search_start)}; '
        f'architecture ({selected}) {output_dir / f"{FINAL_NAME}.json"}')
    if cfg.select == 'argmax':
        with open(output_dir / EPOCHS_CSV, newline='') as f:
            verdict = list(csv.DictReader(f))[final_epoch]['verdict']
        log(f'  {search_diagnostics.VERDICTS[verdict]}')
    else:
        for line in space.summary(arch):
            log(f'  {line}')
    if score:
        log(f'  NAS-Bench-201: {space_nb201.describe_scores(score)}; the table\'s best cell scores '
            f'{tables.load(space_nb201.TABLES["cifar10"]).best:.2f}% on CIFAR-10')
    else:
        log(f'  retrain it with python retrain/retrain.py --arch {output_dir / f"{FINAL_NAME}.json"}')
    return 0
