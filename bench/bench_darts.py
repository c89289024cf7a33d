"""A search step on the CPU: what NNI's machinery costs, and what the supernet's arithmetic runs at.

    python bench/bench_darts.py                      # DARTS space: width 8, 5 cells, batch 32, 1 thread
    python bench/bench_darts.py --width 8 --num_cells 5 --batch_size 64 --threads 2
    python bench/bench_darts.py --space nb201 --width 8 --stage_cells 1 --batch_size 64

One search step (an architecture step on one batch, then a weights step on another), three ways,
on the same supernet (NNI's space made differentiable by NNI's DARTS strategy, same seed), the same
batches (random 3x32x32 images, reused every step) and the same optimizers:
- plain: first-order DARTS written out in PyTorch: the architecture weights (alphas) in their own
  Adam, an architecture step, then an SGD step with clipping (the order of DARTS's train_search.py
  and of NNI; the cost does not depend on it);
- nni: what `nas/search_darts.py --cpu_ops false` runs: NasExperiment, the DARTS strategy's
  Lightning module (with gradient clipping and the cosine schedule), the Lightning Trainer (fp32),
  with the search's own subclasses and no export; the library's ops;
- nni+cpu_ops: the same with cifar_automl/cpu_ops.py's ops swapped in, as the search runs on CPUs.
Each runs in its own process, so that its peak resident memory (ru_maxrss) is its own, --repeats
times in alternating order. The step time is the median over --steps steps after --warmup (the
best run's), in wall-clock seconds and in the process's CPU seconds (which other work on a
shared machine disturbs less); the memory is the process's peak and its growth over the resident
memory just before the first step. A step's FLOPs are counted once with torch.utils.flop_counter on
the library's ops (two forward and backward passes), so that every variant is credited the same
work; divided by the step time and by a 2048x2048 fp32 matrix multiply's rate, measured in the same
run at the same thread count, they give the fraction of this CPU's fp32 rate a step reaches.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cifar_automl import darts_search  # noqa: E402
from cifar_automl.config import ArgumentParser, exit_status  # noqa: E402
from cifar_automl.environment import import_nni_nas, require_working_nni_lock  # noqa: E402
from cifar_automl.training import matmul_rate  # noqa: E402

VARIANTS = ('plain', 'nni', 'nni+cpu_ops')


def resident_mb():
    with open('/proc/self/statm') as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def batches(args):
    generator = torch.Generator().manual_seed(1)

    def batch():
        return (torch.randn(args.batch_size, 3, 32, 32, generator=generator),
                torch.randint(0, 10, (args.batch_size,), generator=generator))
    return batch(), batch()


class RepeatedBatch:
    """The same batch `steps` times, as a loader Lightning iterates."""

    def __init__(self, batch, steps):
        self.batch, self.steps = batch, steps

    def __len__(self):
        return self.steps

    def __iter__(self):
        return iter([self.batch] * self.steps)


def search_config(args):
    return darts_search.resolve(['--space', args.space, '--width', str(args.width), '--num_cells', str(args.num_cells),
                                 '--stage_cells', str(args.stage_cells), '--batch_size', str(args.batch_size),
                                 '--epochs', '1', '--precision', 'fp32', '--device', 'cpu'])


def supernet(args):
    """The space's supernet as NNI's DARTS strategy makes it, from seed 0."""
    from nni.nas.strategy import DARTS
    torch.manual_seed(0)
    return DARTS().mutate_model(darts_search.SPACES[args.space].build(search_config(args), 10))


def step_flops(args):
    """FLOPs of one search step on the library's ops: two forward and backward passes."""
    from torch.utils.flop_counter import FlopCounterMode
    net = supernet(args)
    (images, labels), _ = batches(args)
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.cross_entropy(net(images), labels).backward()
    return 2 * counter.get_total_flops()


def plain_steps(args):
    cfg = search_config(args)
    net = supernet(args)
    named = list(net.named_parameters())
    alphas = [p for name, p in named if '_arch_alpha' in name]
    weights = [p for name, p in named if '_arch_alpha' not in name]
    weights_optimizer = torch.optim.SGD(weights, lr=cfg.initial_lr, momentum=cfg.momentum,
                                        weight_decay=cfg.weight_decay)
    arch_optimizer = torch.optim.Adam(alphas, lr=cfg.arch_lr, betas=(cfg.arch_beta1, cfg.arch_beta2),
                                      weight_decay=cfg.arch_weight_decay)
    (train_x, train_y), (val_x, val_y) = batches(args)
    loss_fn = torch.nn.CrossEntropyLoss()
    net.train()
    times, cpu_times = [], []
    before = resident_mb()
    for _ in range(args.warmup + args.steps):
        start, cpu_start = time.perf_counter(), time.process_time()
        arch_optimizer.zero_grad(set_to_none=True)
        loss_fn(net(val_x), val_y).backward()
        arch_optimizer.step()
        weights_optimizer.zero_grad(set_to_none=True)
        loss_fn(net(train_x), train_y).backward()
        torch.nn.utils.clip_grad_norm_(weights, cfg.grad_clip)
        weights_optimizer.step()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    return times, cpu_times, before, sum(p.numel() for p in weights), sum(p.numel() for p in alphas)


def nni_steps(args):
    import pytorch_lightning as pl
    from nni.nas.evaluator.pytorch import Lightning, Trainer
    from nni.nas.experiment import NasExperiment
    cfg = search_config(args)
    darts_search.quiet_nni_and_lightning()
    steps = args.warmup + args.steps
    torch.manual_seed(0)
    space = darts_search.SPACES[args.space].build(cfg, 10)
    search_module, strategy = darts_search.build_modules(cfg, steps, num_classes=10, channels_last=False,
                                                         cpu_ops=args.variant == 'nni+cpu_ops')
    train_batch, val_batch = batches(args)
    record = {'times': [], 'cpu_times': [], 'before': None}

    class StepTimer(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if record['before'] is None:
                record['before'] = resident_mb()
            record['start'], record['cpu_start'] = time.perf_counter(), time.process_time()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            record['times'].append(time.perf_counter() - record['start'])
            record['cpu_times'].append(time.process_time() - record['cpu_start'])

    trainer = Trainer(max_epochs=1, accelerator='cpu', devices=1, precision='32-true', callbacks=[StepTimer()],
                      logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False)
    evaluator = Lightning(search_module, trainer, train_dataloaders=RepeatedBatch(train_batch, steps),
                          val_dataloaders=RepeatedBatch(val_batch, steps))
    experiment = NasExperiment(space, evaluator, strategy)
    with tempfile.TemporaryDirectory() as workdir:
        experiment.config.experiment_working_directory = workdir
        experiment.run()
    net = strategy.supernet
    alphas = sum(p.numel() for name, p in net.named_parameters() if '_arch_alpha' in name)
    weights = sum(p.numel() for name, p in net.named_parameters() if '_arch_alpha' not in name)
    return record['times'], record['cpu_times'], record['before'], weights, alphas


def child(args):
    torch.set_num_threads(args.threads)
    import_nni_nas()
    if args.variant == 'flops':
        print(json.dumps({'flops': step_flops(args), 'matmul': matmul_rate(torch.float32)}))
        return
    times, cpu_times, before, weights, alphas = (plain_steps if args.variant == 'plain' else nni_steps)(args)
    print(json.dumps({'step_s': statistics.median(times[args.warmup:]), 'min_step_s': min(times[args.warmup:]),
                      'cpu_step_s': statistics.median(cpu_times[args.warmup:]), 'peak_mb': peak_mb(),
                      'before_mb': before, 'weights': weights, 'alphas': alphas}))


def measure(variant, args, home):
    shared = ('space', 'width', 'num_cells', 'stage_cells', 'batch_size', 'steps', 'warmup', 'threads')
    command = [sys.executable, __file__, '--variant', variant] + [f'--{name}={getattr(args, name)}' for name in shared]
    # NNI's NasExperiment registers itself in ~/nni-experiments/.experiment: a scratch HOME keeps it out.
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, 'HOME': home})
    if result.returncode:
        sys.exit(f'{variant} failed:\n{result.stdout}\n{result.stderr}')
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = ArgumentParser(description=__doc__.split('\n')[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--space', choices=('darts', 'nb201'), default='darts', help='the search space')
    parser.add_argument('--width', type=int, default=8, help='the supernet\'s channel width')
    parser.add_argument('--num_cells', type=int, default=5, help='the darts supernet\'s cells')
    parser.add_argument('--stage_cells', type=int, default=1, help='the nb201 supernet\'s cells per stage')
    parser.add_argument('--batch_size', type=int, default=32, help='images in the weights batch and in the '
                        'architecture batch')
    parser.add_argument('--steps', type=int, default=5, help='timed steps')
    parser.add_argument('--warmup', type=int, default=1, help='untimed steps first')
    parser.add_argument('--threads', type=int, default=1,
                        help='torch threads (on a shared machine, 1 is steadier and often faster)')
    parser.add_argument('--repeats', type=int, default=2, help='runs of each variant, alternating')
    parser.add_argument('--variant', choices=(*VARIANTS, 'flops'), help=argparse.SUPPRESS)
    args = parser.parse_args()
    refused = exit_status(require_working_nni_lock)  # the nni variant's NasExperiment.run() takes NNI's lock
    if refused:
        return refused
    if args.variant:
        return child(args)
    # The variants in a rotating order, so that a load change on a shared machine does not favour
    # one; each keeps its run with the fastest median step.
    results = {}
    with tempfile.TemporaryDirectory() as home:
        work = measure('flops', args, home)
        for repeat in range(args.repeats):
            for variant in VARIANTS[repeat % len(VARIANTS):] + VARIANTS[:repeat % len(VARIANTS)]:
                result = measure(variant, args, home)
                if variant not in results or result['step_s'] < results[variant]['step_s']:
                    results[variant] = result
    plain = results['plain']
    assert all((r['weights'], r['alphas']) == (plain['weights'], plain['alphas']) for r in results.values()), \
        'not the same supernet'
    size = f'{args.num_cells} cells' if args.space == 'darts' else f'3 stages of {args.stage_cells} cells'
    print(f'{args.space} search step on CPU: width {args.width}, {size}, batch {args.batch_size} (weights and '
          f'architecture), {args.threads} thread(s); supernet {plain["weights"] / 1e6:.2f}M weights, '
          f'{plain["alphas"]} architecture weights; median of {args.steps} steps after {args.warmup}, best of '
          f'{args.repeats} runs')
    print(f'a step: {work["flops"] / 1e9:.2f} GFLOP (library ops, counted); fp32 matmul {work["matmul"] / 1e9:.1f} '
          f'GFLOP/s on {args.threads} thread(s)')
    print(f'{"":12} {"step s":>8} {"min s":>8} {"CPU s":>8} {"GFLOP/s":>8} {"of fp32":>8} {"peak MB":>9} '
          f'{"growth MB":>10}')
    for name, result in results.items():
        rate = work['flops'] / result['step_s']
        print(f'{name:12} {result["step_s"]:8.3f} {result["min_step_s"]:8.3f} {result["cpu_step_s"]:8.3f} '
              f'{rate / 1e9:8.2f} {rate / work["matmul"]:8.1%} {result["peak_mb"]:9.0f} '
              f'{result["peak_mb"] - result["before_mb"]:10.0f}')
    nni, fast = results['nni'], results['nni+cpu_ops']
    print(f'nni / plain: step time {nni["step_s"] / plain["step_s"]:.2f}x (CPU time '
          f'{nni["cpu_step_s"] / plain["cpu_step_s"]:.2f}x), peak memory {nni["peak_mb"] / plain["peak_mb"]:.2f}x')
    print(f'nni+cpu_ops: a step {nni["step_s"] / fast["step_s"]:.2f}x as fast as nni (CPU time '
          f'{nni["cpu_step_s"] / fast["cpu_step_s"]:.2f}x)')
    return 0

if __name__ == '__main__':
    sys.exit(main())
