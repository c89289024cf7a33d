"""Does this machine run the repository's GPU paths, and how fast? One command that fits a 15-minute
GPU lease, the machine's start-up included, and always says where it stopped:

    python bench/gpu_check.py --data_dir DIR --airbench airbench94.py --output_dir OUT
    python bench/gpu_check.py --dry_run        # the same sequence at tiny sizes on the CPU, in under 3 minutes

First the environment (python, torch and its CUDA, NNI, filelock, Lightning: versions and the folder
each was imported from) and the filelock guard: a filelock NNI 3.0's experiment lock cannot use fails
it, and the checks that would take that lock are skipped. Then the checks (--checks picks some),
cheapest and most informative first, each in processes of its own with a time limit sized to it,
all within --budget_s:
  gpu               name, memory, compute capability, driver, whether bf16 is native (else fp16)
  search            DARTS search, 200 steps at the paper's size (16 channels, 8 cells, batch 64),
                    --log_frequency 1: steps/s and img/s after the first tenth of the steps
  nni               two 1-epoch trials with cifar10_tpe.yml's GPU settings (sharing the GPU): both
                    must succeed on cuda
  retrain           DARTS_V2 (36 channels, 20 cells, batch 96), 9,600 images, 2 epochs: img/s of the 2nd
  resume            a retrain checkpoint made on the GPU resumed on the CPU, and the reverse
  anchor            airbench94 (the upstream script, which this repository does not ship: --airbench)
                    and the default trial, 3 seeds each, and the default with --val_size 500: test
                    accuracy, plain and with TTA
  packing           1, 2 and 4 default trials at once: their total training img/s (what the GPU
                    configs' maxTrialNumberPerGpu should be set from)
  retrain_compiled  retrain with --compile, drop path on in epoch 2: fails on a recompilation
  trial_speed       the default trial without and with --compile: img/s of the fastest epoch after the
                    first, and its share of the GPU's dense bf16 peak (FLOPs counted by bench_trial.py)
Each check prints PASS, FAIL or SKIP with its reason and time, then a summary; exit 1 if any failed.
Every process a check starts prints every thread's Python stack (faulthandler) shortly before its
limit; at the limit its state (/proc/PID/status, wchan) and nvidia-smi are printed, and everything
it started is killed. Each process's output, stdout and stderr together with the second each line
came, stays in --output_dir. Without a usable GPU (and without --dry_run) it says why and exits 0.
What each check runs and what one H200 printed: docs/gpu.md.
"""
import argparse
import contextlib
import dataclasses
import faulthandler
import io
import json
import os
import pickle
import re
import runpy
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'tests'))  # nni_experiment: the tests' isolated, always-stopped NNI experiment

from cifar_automl.config import ArgumentParser, ConfigError  # noqa: E402
from cifar_automl.environment import describe_packages, require_working_nni_lock  # noqa: E402
from cifar_automl.training import cuda_unusable  # noqa: E402
from nni_experiment import processes_with_env  # noqa: E402

# Dense (no sparsity) bf16 tensor-core peaks from NVIDIA's datasheets, in TFLOP/s, matched in this
# order against torch.cuda.get_device_name() (A100 before A10, L40S before L4).
PEAK_BF16_TFLOPS = [('H100 PCIe', 756), ('H100 NVL', 835), ('H100', 989), ('H200', 989), ('GH200', 989),
                    ('B200', 2250), ('A100', 312), ('A10', 125), ('L40S', 362), ('L40', 181), ('L4', 121),
                    ('RTX A6000', 155), ('RTX 6000 Ada', 364)]

# Of a 15-minute lease about 3 minutes go to starting the machine and 1 to copying the results back, and
# one command on a lent machine may run at most 10 minutes: the checks get 9.
BUDGET_S = 540
DRY_RUN_BUDGET_S = 180
DRY_RUN_SCALE = 0.5  # the dry run's time limits are the GPU's, scaled: tiny sizes, processes as slow to start
MIN_LIMIT_S = 10  # no process is started with less of the budget left than this (scaled in the dry run)
MARKER = 'GPU_CHECK_PROCESS'  # in the environment of everything a check starts: how its leftovers are found

# Every process of a check runs its script through this, as `python SCRIPT ARGS` would, with faulthandler
# armed to print every thread's Python stack SECONDS after the start (just before the check's limit).
STACK_DUMP_PRELUDE = '''import faulthandler, os, runpy, sys
faulthandler.dump_traceback_later(float(sys.argv[1]))
sys.argv = sys.argv[2:]
sys.path[0] = os.path.dirname(os.path.abspath(sys.argv[0]))
runpy.run_path(sys.argv[0], run_name='__main__')'''


@dataclasses.dataclass(frozen=True)
class Sizes:
    """What the checks run: on a GPU what a user runs; in the dry run the same commands, tiny, on the CPU."""
    device: str
    images_per_file: int  # synthetic CIFAR-10 without --data_dir: 5 training files and a test file of this many
    held_out: tuple  # flags of every trial and retrain: the validation split, threads
    trial: tuple  # flags of every default trial (the dry run's are smaller)
    search: tuple
    retrain: tuple
    resume: tuple
    nni_trial: tuple
    resume_devices: tuple
    anchor_seeds: int
    anchor_val_size: int  # the smallest is 1, but a trial reports the test accuracy of its best-validation
    # epoch, and on a handful of images that is an early one; 500 (1%) keeps the last epoch best in practice
    packing: tuple  # default trials at once
    packing_epochs: int
    speed_epochs: int  # 87 steps each at batch 512: the first pays for cuDNN's autotuning and compilation


GPU = Sizes(device='cuda', images_per_file=10000, held_out=(), trial=(),
            search=('--subset', 25600, '--width', 16, '--num_cells', 8, '--batch_size', 64),  # 200 steps
            retrain=('--subset', 9600), resume=('--subset', 512, '--width', 8, '--num_cells', 5, '--batch_size', 64),
            nni_trial=('--subset', 5000), resume_devices=(('cuda', 'cpu'), ('cpu', 'cuda')), anchor_seeds=3,
            anchor_val_size=500, packing=(1, 2, 4), packing_epochs=10, speed_epochs=4)
DRY_RUN = Sizes(device='cpu', images_per_file=400, held_out=('--val_size', 200, '--threads', 1),
                trial=('--width', 16, '--subset', 512, '--epochs', 2),
                search=('--subset', 96, '--width', 4, '--num_cells', 3, '--batch_size', 16, '--threads', 1),
                retrain=('--subset', 128, '--width', 4, '--num_cells', 3, '--batch_size', 32),
                resume=('--subset', 128, '--width', 4, '--num_cells', 3, '--batch_size', 32),
                nni_trial=('--width', 16, '--subset', 512, '--batch_size', 64), resume_devices=(('cpu', 'cpu'),),
                anchor_seeds=2, anchor_val_size=20, packing=(1, 2), packing_epochs=3, speed_epochs=2)


class Run:
    """One gpu_check: its options, sizes, folders, and what is left of its time budget."""

    def __init__(self, args, data_dir, output_dir, start):
        self.args = args
        self.dry = args.dry_run
        self.sizes = DRY_RUN if self.dry else GPU
        self.scale = DRY_RUN_SCALE if self.dry else 1.0
        self.data_dir = data_dir
        self.output_dir = output_dir
        self.deadline = start + args.budget_s
        self.started = 0  # processes started, for their log names and markers

    def left(self):
        return self.deadline - time.monotonic()

    def run(self, name, commands, limit_s, env=None):
        """Run `commands` ([script, *args] each, all at once) under one limit: limit_s GPU seconds, scaled
        in the dry run, and never past the budget. Returns their Processes, ended."""
        if self.left() < MIN_LIMIT_S * self.scale:
            raise OutOfBudget(f'{max(0, self.left()):.0f} s of the budget left, too little to start {name}')
        own = limit_s * self.scale
        limit = min(own, self.left())
        processes = []
        for command in commands:
            self.started += 1
            processes.append(Process(command, limit, self.output_dir / f'{self.started:02d}-{name}.log',
                                     f'{os.getpid()}-{self.started}', env, cut_by_budget=limit < own))
        finish(processes, limit)
        return processes



class OutOfBudget(Exception):
    pass


@dataclasses.dataclass
class Result:
    status: str  # PASS, FAIL or SKIP
    line: str
    shown: list = dataclasses.field(default_factory=list)  # Processes whose output a failure shows


def main(argv=None):
    parser = ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data_dir', default='', help='a directory holding cifar-10-batches-py (default: synthetic '
                        'images of the same size, in a temporary directory: speeds, no accuracies)')
    parser.add_argument('--airbench', default='', help='airbench94.py from github.com/KellerJordan/cifar10-airbench, '
                        'the anchor of the recipe (not part of this repository; without it that part is skipped)')
    parser.add_argument('--output_dir', default='', help='where every process\'s output goes (default: '
                        'outputs/gpu_check-<time>)')
    parser.add_argument('--budget_s', type=float, default=None, help=f'seconds for all checks; a check that would '
                        f'start past them is skipped (default: {BUDGET_S}, {DRY_RUN_BUDGET_S} with --dry_run)')
    parser.add_argument('--dry_run', action='store_true', help='the same checks at tiny sizes on the CPU, with '
                        f'the time limits scaled by {DRY_RUN_SCALE}: tests the sequence, not a GPU')
    parser.add_argument('--checks', default=','.join(CHECKS), help='the checks to run, comma-separated; they run '
                        'in the order of the default (default: all of them)')
    parser.add_argument('--child', choices=('resume', 'nni_experiment', 'airbench'), help=argparse.SUPPRESS)
    parser.add_argument('--work_dir', default='', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = sorted(set(args.checks.split(',')) - set(CHECKS))
    if unknown:
        parser.error(f'--checks: unknown {", ".join(unknown)}; expected some of {",".join(CHECKS)}')
    if args.airbench and not Path(args.airbench).is_file():
        parser.error(f'--airbench: {args.airbench} is not a file; give the path of airbench94.py')
    if args.child:
        return CHILDREN[args.child](args)
    start = time.monotonic()
    args.budget_s = args.budget_s or (DRY_RUN_BUDGET_S if args.dry_run else BUDGET_S)
    # Were this process itself to hang (in the CUDA driver, say), it prints its stack and ends.
    faulthandler.dump_traceback_later(args.budget_s + 120, exit=True, file=sys.__stderr__)
    try:
        return check_all(args, start)
    finally:
        faulthandler.cancel_dump_traceback_later()


def check_all(args, start):
    print(f'python {sys.version.split()[0]} ({sys.executable})', *describe_packages(), sep='\n', flush=True)
    guard = filelock_guard()
    print(f'{guard.status} {guard.line}', flush=True)
    if not args.dry_run and not torch.cuda.is_available():
        print(f'no CUDA GPU: {cuda_unusable()}\nnothing to check on this machine (--dry_run runs the checks on '
              f'the CPU at tiny sizes).')
        return 0
    output_dir = Path(args.output_dir or REPO / 'outputs' / time.strftime('gpu_check-%Y%m%d-%H%M%S'))
    output_dir.mkdir(parents=True, exist_ok=True)
    print(f'budget {args.budget_s:.0f} s; each process\'s output: {output_dir}', flush=True)
    with tempfile.TemporaryDirectory(prefix='gpu_check-') as scratch:
        sizes = DRY_RUN if args.dry_run else GPU
        data_dir = Path(args.data_dir) if args.data_dir else write_synthetic_cifar(Path(scratch) / 'data',
                                                                                  sizes.images_per_file)
        run = Run(args, data_dir.resolve(), output_dir.resolve(), start)
        chosen = args.checks.split(',')
        results = [guard] + [run_check(run, name, check, guard) for name, check in CHECKS.items() if name in chosen]
    counts = {status: sum(result.status == status for result in results) for status in ('PASS', 'FAIL', 'SKIP')}
    print(f'{counts["PASS"]} passed, {counts["FAIL"]} failed, {counts["SKIP"]} skipped of {len(results)} checks; '
          f'output of each process in {output_dir}')
    return 1 if counts['FAIL'] else 0


def run_check(run, name, check, guard):
    """Print the check's start (where a lease that ends abruptly stopped), run it, print its line."""
    print(f'-- {name}, {max(0, run.left()):.0f} s of the budget left', flush=True)
    start = time.monotonic()
    if check in NEEDS_NNI_LOCK and guard.status != 'PASS':
        result = Result('SKIP', f'{name}: the filelock guard failed, and NNI\'s experiment lock would hang it')
    elif run.left() < MIN_LIMIT_S * run.scale:
        result = Result('SKIP', f'{name}: {max(0, run.left()):.0f} s of the budget left, too little to start it')
    else:
        try:
            result = check(run)
        except OutOfBudget as reason:
            result = Result('SKIP', f'{name}: {reason}')
        except Exception as error:  # a check that crashed is a failed check; the others still run
            result = Result('FAIL', f'{name}: {type(error).__name__}: {error}')
        stopped = [process for process in result.shown if process.returncode != 0]
        if result.status == 'FAIL' and stopped and all(p.returncode is None and p.cut_by_budget for p in stopped):
            result = Result('SKIP', f'{name}: the budget ran out during it; {result.line}')
    print(f'{result.status} {result.line} [{time.monotonic() - start:.0f}s]', flush=True)
    if result.status == 'FAIL':
        for outcome in result.shown:
            print(excerpt(outcome), flush=True)
    return result


def filelock_guard():
    try:
        require_working_nni_lock()
    except ConfigError as error:
        return Result('FAIL', f'filelock guard: {error}')
    import filelock
    return Result('PASS', f'filelock guard: filelock {filelock.__version__} is older than 3.12, NNI 3.0\'s '
                          f'experiment lock works')


# ============================================================ Checks

def gpu_info(run):
    if run.dry:
        return Result('SKIP', f'gpu: dry run, on the CPU ({torch.get_num_threads()} threads)')
    device = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(device)
    native_bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
    driver = run_text(['nvidia-smi', '--query-gpu=driver_version', '--format=csv,noheader'])
    return Result('PASS', f'gpu: {props.name}, {props.total_memory / 2**30:.0f} GiB, compute capability '
                          f'{props.major}.{props.minor}, {torch.cuda.device_count()} visible; driver {driver or "?"}; '
                          f'torch {torch.__version__} (CUDA {torch.version.cuda}, cuDNN '
                          f'{torch.backends.cudnn.version()}); autocast '
                          f'{"bf16" if native_bf16 else "fp16 with loss scaling (no native bf16)"}')


def darts_search(run):
    [search] = run.run('search', [['nas/search_darts.py', '--data_dir', run.data_dir, *run.sizes.search,
                                   '--epochs', 1, '--device', run.sizes.device, '--log_frequency', 1,
                                   '--output_dir', run.output_dir / 'search']], limit_s=150)
    setup = re.search(r'batch (\d+) \((\d+) steps per epoch\); (\d+) cells of width (\d+); device (\S+),', search.text)
    if not setup:
        return Result('FAIL', f'DARTS search: {search.ended()} before its setup line', [search])
    batch, steps, cells, width, device = setup.groups()
    done = [(seconds, int(step)) for seconds, line in search.lines
            for step in re.findall(r'^epoch 1/1 step (\d+)/', line)]
    what = f'DARTS search, {width} channels, {cells} cells, batch {batch}'
    speed = ''
    if len(done) >= 2:
        first = next((point for point in done if point[1] >= max(1, int(steps) // 10)), done[0])
        last = done[-1]
        if last[1] > first[1]:
            rate = (last[1] - first[1]) / (last[0] - first[0])
            speed = f'; {rate:.2f} steps/s, {rate * 2 * int(batch):,.0f} img/s (weights and architecture batches)'
    progress = f'{done[-1][1] if done else 0} of {steps} steps on {device}{speed}'
    if search.returncode != 0:
        return Result('FAIL', f'{what}: {search.ended()} after {progress}', [search])
    if device != run.sizes.device:
        return Result('FAIL', f'{what}: ran on {device}, not {run.sizes.device}', [search])
    return Result('PASS', f'{what}: {progress}')


def nni_experiment(run):
    child, result = run_child(run, 'nni_experiment', limit_s=150)
    if result is None:
        return Result('FAIL', f'NNI experiment: {child.ended()}', [child])
    ok = result['states'] == ['SUCCEEDED', 'SUCCEEDED'] and result['on_device'] == 2
    return Result('PASS' if ok else 'FAIL', f'NNI experiment (cifar10_tpe.yml settings): {result["status"]}, trials '
                                            f'{result["states"]}, {result["on_device"]} of 2 on {run.sizes.device}',
                  [child])


def retrain(run):
    return retrain_speed(run, compiled=False)


def retrain_compiled(run):
    return retrain_speed(run, compiled=True)


def retrain_speed(run, compiled):
    name = 'retrain-compiled' if compiled else 'retrain'
    output = run.output_dir / name
    [process] = run.run(name, [['retrain/retrain.py', '--arch', 'DARTS_V2', '--data_dir', run.data_dir,
                                *run.sizes.retrain, *run.sizes.held_out, '--epochs', 2, '--compile', compiled,
                                '--device', run.sizes.device, '--log_frequency', 0, '--tta', 0,
                                '--output_dir', output]],
                        limit_s=240 if compiled else 90, env=without_compilation(run) if compiled else None)
    what = f'retrain DARTS_V2{" --compile" if compiled else ""}{compilation_note(run) if compiled else ""}'
    if process.returncode != 0:
        return Result('FAIL', f'{what}: {process.ended()}', [process])
    metrics = json.loads((output / 'metrics.json').read_text())
    speed = images_per_epoch(process, metrics) / metrics['history'][-1]['epoch_time']
    line = (f'{what}, {metrics["config"]["width"]} channels, {metrics["config"]["num_cells"]} cells, batch '
            f'{metrics["config"]["batch_size"]}, drop path {metrics["history"][-1]["drop_path_prob"]:.2f} and '
            f'auxiliary head: {speed:,.0f} img/s in epoch 2')
    recompiles = [text for text in process.text.splitlines() if 'recompil' in text.lower()]
    if compiled and recompiles:
        return Result('FAIL', f'{line}; torch recompiled: {recompiles[0].strip()}', [process])
    return Result('PASS', line)


def resume(run):
    child, result = run_child(run, 'resume', limit_s=90)
    if result is None:
        return Result('FAIL', f'retrain resumed across devices: {child.ended()}', [child])
    if result['failed']:
        return Result('FAIL', f'retrain resumed across devices: {result["failed"]}', [child])
    return Result('PASS', 'retrain resumed across devices: ' + ', '.join(result['done']))


def anchor(run):
    """The recipe against airbench94 on the same device and data, and against its own 5,000 held-out images."""
    if not (run.args.data_dir or run.dry):
        return Result('SKIP', 'anchor: synthetic images say nothing of accuracy; pass --data_dir')
    sizes, shown, parts, failed = run.sizes, [], [], False
    seeds = range(sizes.anchor_seeds)
    if run.args.airbench:
        airbench, result = run_child(run, 'airbench', 150, '--airbench', Path(run.args.airbench).resolve())
        shown.append(airbench)
        if result is None:
            failed = True
            parts.append(f'airbench94: {airbench.ended()}')
        else:
            parts.append(f'airbench94 ({Path(run.args.airbench).name}, {result["train_images"]:,} images): '
                         f'{mean_std([r["test_acc"] for r in result["runs"] if r["test_acc"] is not None])} '
                         f'({mean_std([r["test_acc_tta"] for r in result["runs"]])} with TTA), '
                         f'{mean_std([r["seconds"] for r in result["runs"]], "s")} each')
    else:
        parts.append('airbench94: no --airbench script given (github.com/KellerJordan/cifar10-airbench; not part '
                     'of this repository)')
    runs, cut = {}, None
    try:
        for seed in seeds:
            runs[f'default trial, seed {seed}'] = default_trial(run, f'anchor-seed{seed}', limit_s=60, seed=seed)
        runs['val_size'] = default_trial(run, 'anchor-val', limit_s=60, seed=0, val_size=sizes.anchor_val_size)
    except OutOfBudget as reason:
        cut = f'anchor: {reason}'
    for label, (process, metrics) in runs.items():
        if metrics is None:
            failed = True
            shown.append(process)
            parts.append(f'{label}: {process.ended()}')
    trials = [metrics for label, (_, metrics) in runs.items() if label != 'val_size' and metrics]
    if trials:
        parts.append(f'default trial ({trials[0]["train_images"]:,} images), {len(trials)} seeds: '
                     f'{mean_std([m["test_acc"] for m in trials])} ({mean_std([m["test_acc_tta"] for m in trials])}'
                     f' with TTA)')
    val = runs.get('val_size', (None, None))[1]
    if val:
        parts.append(f'--val_size {sizes.anchor_val_size} ({val["train_images"]:,} images), seed 0: '
                     f'{val["test_acc"]:.2f}% ({val["test_acc_tta"]:.2f}% with TTA), best epoch {val["best_epoch"]} '
                     f'of {val["epochs_run"]}')
    if cut and not failed:
        return Result('SKIP', '; '.join([cut] + parts))
    return Result('FAIL' if failed else 'PASS', 'anchor, test accuracy: ' + '; '.join(parts), shown)


def packing(run):
    """Default trials sharing the device: total training img/s with 1, 2 and 4 at once."""
    totals, parts = {}, []
    for count in run.sizes.packing:
        if parts and run.left() < MIN_LIMIT_S * run.scale:
            return Result('SKIP', f'default trials at once: the budget ran out before {count}; ' + '; '.join(parts))
        processes = run.run(f'packed{count}', [trial_command(run, run.output_dir / f'packed{count}-{i}', seed=i,
                                                             extra=('--epochs', run.sizes.packing_epochs, '--tta', 0))
                                               for i in range(count)], limit_s={1: 60, 2: 75, 4: 120}[count])
        failed = [process for process in processes if process.returncode != 0]
        if failed:
            return Result('FAIL', f'trials at once on one {run.sizes.device}: {count}: {failed[0].ended()}', failed)
        totals[count] = 0.0
        for i, process in enumerate(processes):
            metrics = json.loads((run.output_dir / f'packed{count}-{i}' / 'metrics.json').read_text())
            epoch_time = statistics.median(row['epoch_time'] for row in metrics['history'][1:])
            totals[count] += images_per_epoch(process, metrics) / epoch_time
        parts.append(f'{count}: {totals[count]:,.0f}' + (f' ({totals[count] / totals[1]:.2f}x)' if count > 1 else ''))
    return Result('PASS', f'default trials at once on one {run.sizes.device}, their total training img/s (median '
                          f'epoch after the first): ' + '; '.join(parts))


def trial_speed(run):
    from bench_trial import training_flops_per_image  # beside this script; FLOPs are the same on any device
    flops = training_flops_per_image('airbench')
    peak = None if run.dry else peak_bf16_tflops(torch.cuda.get_device_name())
    figures = []
    for compiled in (False, True):
        output = run.output_dir / f'trial-compile-{compiled}'
        [process] = run.run(f'trial-compile-{compiled}',
                            [trial_command(run, output, extra=('--epochs', run.sizes.speed_epochs, '--compile',
                                                               compiled, '--tta', 0))],
                            limit_s=150 if compiled else 60, env=without_compilation(run) if compiled else None)
        if process.returncode != 0:
            return Result('FAIL', f'default trial --compile {str(compiled).lower()}: {process.ended()}', [process])
        metrics = json.loads((output / 'metrics.json').read_text())
        speed = max(images_per_epoch(process, metrics) / row['epoch_time'] for row in metrics['history'][1:])
        share = f', {speed * flops / (peak * 1e12):.1%} of its bf16 peak' if peak else ''
        figures.append(f'--compile {str(compiled).lower()}: {speed:,.0f} img/s{share}')
    config = metrics['config']
    return Result('PASS', f'default trial (width {config["width"]}, batch {config["batch_size"]}, {flops / 1e9:.2f} '
                          f'GFLOP per training image at width 64){compilation_note(run)}: ' + '; '.join(figures))


# Cheapest and most informative first: the search hung on the one GPU this ran on; the NNI experiment,
# the retrain and the resume never ran on a GPU; the anchor and the packing answer open questions;
# compilation is slow to pay off and the trial's speed was measured once already.
CHECKS = {'gpu': gpu_info, 'search': darts_search, 'nni': nni_experiment, 'retrain': retrain, 'resume': resume,
          'anchor': anchor, 'packing': packing, 'retrain_compiled': retrain_compiled, 'trial_speed': trial_speed}
NEEDS_NNI_LOCK = (darts_search, nni_experiment)  # NasExperiment.run() and nnictl take NNI's experiment lock


# ============================================================ The checks' own processes (--child)

def resume_child(args):
    """A retrain killed after its first epoch on one device, resumed on the other, in this process."""
    from cifar_automl import retrain as retrain_module
    sizes = DRY_RUN if args.dry_run else GPU
    tiny = ['--arch', 'DARTS_V2', '--data_dir', args.data_dir, *sizes.resume, *sizes.held_out, '--epochs', 2,
            '--log_frequency', 0, '--tta', 0]
    done, failed = [], ''
    for first, then in sizes.resume_devices:
        output = Path(args.work_dir) / f'{first}-{then}'
        with killed_after_one_epoch(retrain_module), contextlib.suppress(Killed):
            retrain_module.main(list(map(str, tiny + ['--device', first, '--output_dir', output])))
        log = io.StringIO()
        with contextlib.redirect_stdout(log):
            status = retrain_module.main(['--resume', 'true', '--output_dir', str(output), '--device', then])
        print(log.getvalue(), end='')
        # Across device types the random streams are reseeded, and the log says so.
        if status != 0 or (first != then) != ('reseeded' in log.getvalue()):
            failed = f'resume of a {first} checkpoint on {then}: exit {status}'
            break
        done.append(f'{first} -> {then}')
    print('RESULT ' + json.dumps({'done': done, 'failed': failed}))
    return 0


def nni_experiment_child(args):
    """cifar10_tpe.yml as shipped (one GPU shared by two trials), two 1-epoch trials; in the dry run on
    the CPU, without the GPU settings and with a one-parameter space, so the trials stay tiny."""
    from nni_experiment import nni_experiment as start_experiment
    sizes = DRY_RUN if args.dry_run else GPU
    command = ' '.join(map(str, [sys.executable, 'trial/main.py', '--device', sizes.device, '--data_dir', args.data_dir,
                                 '--epochs', 1, *sizes.nni_trial, *sizes.held_out, '--divergence_epochs', 0,
                                 '--log_frequency', 0]))
    overrides = {}
    if args.dry_run:
        from nni.experiment.config import LocalConfig
        overrides = dict(trial_gpu_number=None, training_service=LocalConfig(), search_space_file=None,
                         search_space={'momentum': {'_type': 'uniform', '_value': [0.8, 0.9]}})
    with start_experiment(REPO / 'nni_configs/cifar10_tpe.yml', Path(args.work_dir), max_trial_number=2,
                          trial_concurrency=2, trial_command=command, **overrides) as experiment:
        print(f'experiment {experiment.id} on port {experiment.port}: waiting for its two trials', flush=True)
        status = experiment.wait(timeout=3600)  # the parent's limit ends it sooner
        jobs = experiment.api('trial-jobs')
        logs = [path.read_text() for path in experiment.directory.glob('environments/*/trials/*/trial.log')]
    print(*logs, sep='\n')
    print('RESULT ' + json.dumps({'status': status['status'], 'states': sorted(job['status'] for job in jobs),
                                  'on_device': sum(f'device {sizes.device}' in text for text in logs)}))
    return 0


def airbench_child(args):
    """Run the airbench script's own main(run) once per seed, on --data_dir. airbench94.py reads
    cifar10/train.pt and test.pt in its working directory (and downloads CIFAR-10 where they are
    missing, which a machine without internet cannot), so they are written from --data_dir first.
    Its __main__ block (25 runs) stays off: the script is run under another name."""
    from cifar_automl.data import CIFAR10_CLASSES, load_cifar10
    work = Path(args.work_dir)
    (work / 'cifar10').mkdir(parents=True, exist_ok=True)
    train, test = load_cifar10(args.data_dir)
    for name, split in (('train.pt', train), ('test.pt', test)):  # airbench's layout: uint8 N x 32 x 32 x 3
        torch.save({'images': split.images.permute(0, 2, 3, 1).contiguous(), 'labels': split.labels,
                    'classes': list(CIFAR10_CLASSES)}, work / 'cifar10' / name)
    os.chdir(work)
    airbench_main = runpy.run_path(args.airbench, run_name='airbench_anchor')['main']
    runs = []
    for seed in range((DRY_RUN if args.dry_run else GPU).anchor_seeds):
        torch.manual_seed(seed)
        printed = io.StringIO()
        start = time.perf_counter()
        with contextlib.redirect_stdout(printed):
            tta = airbench_main(seed)
        seconds = time.perf_counter() - start
        print(printed.getvalue(), end='', flush=True)
        runs.append({'seed': seed, 'test_acc': airbench_eval_row(printed.getvalue()), 'test_acc_tta': 100 * tta,
                     'seconds': seconds})
    print('RESULT ' + json.dumps({'runs': runs, 'train_images': len(train)}))
    return 0


def airbench_eval_row(printed):
    """The plain test accuracy (%) in the last row of airbench94's table, the one of epoch 'eval':
    | run | epoch | train_loss | val_loss | train_acc | val_acc | tta_val_acc | total_time_seconds |
    (its val_acc is the test set's). None where no such row was printed."""
    for line in reversed(printed.splitlines()):
        cells = [cell.strip() for cell in line.strip().strip('|').split('|')]
        if len(cells) == 8 and cells[1] == 'eval':
            return 100 * float(cells[5])
    return None


CHILDREN = {'resume': resume_child, 'nni_experiment': nni_experiment_child, 'airbench': airbench_child}


# ============================================================ Processes: limits, stacks, leftovers

class Process:
    """A check's process, started at once: its own process group, stdout and stderr in one stream,
    each line kept with the second it came and written to `log`. MARKER=`marker` in its environment
    (inherited by everything it starts, NNI's manager and trials too) finds whatever outlives it."""

    def __init__(self, command, limit, log, marker, env=None, cut_by_budget=False):
        self.command = [str(part) for part in command]
        self.cut_by_budget = cut_by_budget  # its limit is what was left of the budget, less than its own
        self.log, self.marker = log, marker
        self.lines = []
        self.returncode = None  # None: killed at its limit
        self.limit = limit
        lead = min(10.0, max(1.0, limit / 10))  # the stack is printed this long before the limit
        environment = {**os.environ, **(env or {}), MARKER: marker, 'PYTHONUNBUFFERED': '1'}
        self.start = time.monotonic()
        self.popen = subprocess.Popen(
            [sys.executable, '-X', 'faulthandler', '-c', STACK_DUMP_PRELUDE, f'{max(0.5, limit - lead):.1f}',
             *self.command], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
            env=environment)
        self.reader = threading.Thread(target=self.read, daemon=True)
        self.reader.start()

    def read(self):
        with open(self.log, 'w') as log:
            log.write(' '.join(self.command) + '\n')
            for raw in iter(self.popen.stdout.readline, b''):
                seconds = time.monotonic() - self.start
                line = raw.decode(errors='replace')
                self.lines.append((seconds, line))
                log.write(f'[{seconds:6.1f}s] {line}')
                log.flush()

    @property
    def text(self):
        return ''.join(line for _, line in self.lines)

    def ended(self):
        if self.returncode is None:
            return f'stopped at the end of the budget, {self.limit:.0f} s' if self.cut_by_budget \
                else f'killed at its {self.limit:.0f} s limit'
        return f'exit {self.returncode}'


def finish(processes, limit):
    """Wait for every process until `limit` seconds after the first started; at the limit show what
    each still running is doing (its processes' kernel state, nvidia-smi) and kill it with everything
    it started. Then kill anything that escaped its process group (NNI's manager does)."""
    deadline = processes[0].start + limit
    for process in processes:
        try:
            process.returncode = process.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f'    {Path(process.command[0]).name} reached its {limit:.0f} s limit; its processes:', flush=True)
            started = processes_with_env(MARKER, process.marker)
            for pid in [process.popen.pid] + [pid for pid in started if pid != process.popen.pid]:
                print(f'    {process_state(pid)}', flush=True)
            if shutil.which('nvidia-smi'):
                print('    nvidia-smi:', *('    ' + line for line in run_text(['nvidia-smi']).splitlines()),
                      sep='\n', flush=True)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.popen.pid, signal.SIGKILL)
            process.popen.wait()
    for process in processes:
        for _ in range(50):  # a process still starting may start another: kill until none is left
            leftovers = processes_with_env(MARKER, process.marker)
            if not leftovers:
                break
            for pid in leftovers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        process.reader.join(timeout=5)


def process_state(pid):
    """'pid 123 (python): State: S (sleeping), wchan futex_wait_queue': where a stuck process waits."""
    proc = Path('/proc') / str(pid)
    try:
        status = (proc / 'status').read_text()
        wchan = (proc / 'wchan').read_text().strip() or '0'
        name = re.search(r'^Name:\s*(.*)$', status, re.M).group(1)
        state = re.search(r'^State:\s*(.*)$', status, re.M).group(1)
    except OSError:
        return f'pid {pid}: gone'
    return f'pid {pid} ({name}): State: {state}, wchan {wchan}'


def excerpt(process, before=15, lines=60):
    """The output a failure shows: the stack faulthandler printed and what came before it, else the last lines."""
    text = [line.rstrip('\n') for _, line in process.lines]
    dump = next((i for i, line in enumerate(text) if re.match(r'Timeout \(\d+:\d\d:\d\d(\.\d+)?\)!', line)), None)
    shown = text[max(0, dump - before):dump + lines] if dump is not None else text[-30:]
    return '\n'.join([f'    {Path(process.command[0]).name}, {process.ended()}; all of it: {process.log}']
                     + [f'    | {line}' for line in shown])


def run_child(run, role, limit_s, *args):
    """This script in one of its --child roles, working in OUTPUT/ROLE: (its Process, the JSON it printed
    last on a 'RESULT ' line, or None where it printed none or failed)."""
    [child] = run.run(role, [['bench/gpu_check.py', '--child', role, '--data_dir', run.data_dir, '--work_dir',
                              run.output_dir / role, *(['--dry_run'] if run.dry else []), *args]], limit_s)
    results = [line[len('RESULT '):] for _, line in child.lines if line.startswith('RESULT ')]
    return child, (json.loads(results[-1]) if results and child.returncode == 0 else None)


# ============================================================ Helpers

class Killed(Exception):
    pass


@contextlib.contextmanager
def killed_after_one_epoch(module):
    """As if the process were killed during the second epoch: last.pt holds the first."""
    train_epoch = module.train_epoch
    calls = []

    def train_then_die(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise Killed
        return train_epoch(*args, **kwargs)

    module.train_epoch = train_then_die
    try:
        yield
    finally:
        module.train_epoch = train_epoch


def trial_command(run, output_dir, seed=0, extra=()):
    return ['trial/main.py', '--data_dir', run.data_dir, *run.sizes.trial, *run.sizes.held_out, '--device',
            run.sizes.device, '--seed', seed, '--log_frequency', 0, '--divergence_epochs', 0, *extra,
            '--output_dir', output_dir]


def default_trial(run, name, limit_s, seed, val_size=None):
    """The default trial (tiny in the dry run): (its Process, its metrics.json with train_images added, or None)."""
    output = run.output_dir / name
    held_out = ('--val_size', val_size) if val_size is not None else ()
    [process] = run.run(name, [trial_command(run, output, seed, extra=held_out)], limit_s)
    if process.returncode != 0:
        return process, None
    images = re.search(r': (\d+) train /', process.text)
    return process, json.loads((output / 'metrics.json').read_text()) | {'train_images': int(images.group(1))}


def images_per_epoch(process, metrics):
    """Training images of one epoch: its steps (from the 'training N epochs of S steps' line) times the batch."""
    steps = int(re.search(r'epochs of (\d+) steps', process.text).group(1))
    return steps * metrics['config']['batch_size']


def without_compilation(run):
    """torch.compile on the CPU takes minutes even for tiny models: the dry run passes --compile true
    with compilation switched off, which exercises every path but the compiler's."""
    return {'TORCH_COMPILE_DISABLE': '1'} if run.dry else None


def compilation_note(run):
    return ' (dry run: TORCH_COMPILE_DISABLE=1)' if run.dry else ''


def mean_std(values, unit='%'):
    if not values:
        return '?'
    spread = f' ± {statistics.stdev(values):.2f}' if len(values) > 1 else ''
    return f'{statistics.mean(values):.2f}{unit}{spread}'


def peak_bf16_tflops(name):
    return next((tflops for key, tflops in PEAK_BF16_TFLOPS if key in name), None)


def write_synthetic_cifar(folder, images_per_file, seed=0):
    """Random images in CIFAR-10's "python version" layout (5 training files and a test file): the
    speed of real images, none of their accuracy."""
    rng = np.random.default_rng(seed)
    batches = folder / 'cifar-10-batches-py'
    batches.mkdir(parents=True)
    for name in [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']:
        with open(batches / name, 'wb') as f:
            pickle.dump({b'data': rng.integers(0, 256, (images_per_file, 3072), dtype=np.uint8),
                         b'labels': [int(label) for label in rng.integers(0, 10, images_per_file)]}, f)
    with open(batches / 'batches.meta', 'wb') as f:
        pickle.dump({b'label_names': [b'class%d' % i for i in range(10)]}, f)
    return folder


def run_text(command):
    """What `command` prints, or '' (nvidia-smi itself can hang on a sick driver: 10 s at most)."""
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ''


if __name__ == '__main__':
    sys.exit(main())
