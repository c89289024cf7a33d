"""Does this machine run the repository's GPU paths, and how fast? One command, a few minutes:

    python bench/gpu_check.py                     # synthetic CIFAR-sized images (speed only)
    python bench/gpu_check.py --data_dir DIR      # DIR/cifar-10-batches-py: real images

On a machine where torch cannot use a CUDA GPU it says why (the driver torch needs, a CPU-only
torch) and exits 0. On a GPU it checks, one line each, and exits 1 if any check failed:
1. the GPU: name, memory, compute capability, driver, whether bf16 is native (else fp16);
2. the default trial (airbench, batch 512, ~350 steps) without and with --compile: training img/s
   of the fastest epoch after the first, and the fraction of the GPU's dense bf16 peak that is (model
   FLOPs per image counted by torch.utils.flop_counter, forward and backward);
3. a DARTS search epoch of a few steps at the paper's size (16 channels, 8 cells, batch 64);
4. a retrain of DARTS_V2 (36 channels, 20 cells, batch 96) with drop path and the auxiliary head
   under --compile, over two epochs so that drop path is on in the second, failing on any
   recompilation warning;
5. resume across devices: a retrain checkpoint made on the GPU resumed on the CPU, and the reverse;
6. a two-trial NNI experiment with cifar10_tpe.yml's settings (two trials sharing the GPU), checking
   that both trials succeeded and trained on cuda.
A check that runs longer than STEP_TIMEOUT is killed, with every process it started, and fails with
its last lines of output. What one H200 printed: docs/gpu.md.
"""
import contextlib
import io
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cifar_automl.config import ArgumentParser  # noqa: E402
from cifar_automl.training import cuda_unusable  # noqa: E402

# Dense (no sparsity) bf16 tensor-core peaks from NVIDIA's datasheets, in TFLOP/s, matched in this
# order against torch.cuda.get_device_name() (A100 before A10, L40S before L4).
PEAK_BF16_TFLOPS = [('H100 PCIe', 756), ('H100 NVL', 835), ('H100', 989), ('H200', 989), ('GH200', 989),
                    ('B200', 2250), ('A100', 312), ('A10', 125), ('L40S', 362), ('L40', 181), ('L4', 121),
                    ('RTX A6000', 155), ('RTX 6000 Ada', 364)]
TRIAL_EPOCHS = 4  # 87 steps each at batch 512: the first pays for cuDNN's autotuning and compilation
STEP_TIMEOUT = 300  # seconds for one check's process; the trial check, both runs, took 53 s on an H200


def main(argv=None):
    parser = ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data_dir', default='', help='a directory holding cifar-10-batches-py '
                        '(default: synthetic images of the same size, written to a temporary directory)')
    parser.add_argument('--skip_nni', action='store_true', help='leave out the NNI experiment')
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print(f'no CUDA GPU: {cuda_unusable()}\nnothing to check on this machine.')
        return 0
    with tempfile.TemporaryDirectory(prefix='gpu_check-') as scratch:
        scratch = Path(scratch)
        data_dir = Path(args.data_dir) if args.data_dir else write_synthetic_cifar(scratch / 'data')
        checks = [gpu_info, lambda: trial_speed(data_dir, scratch), lambda: darts_search_step(data_dir, scratch),
                  lambda: retrain_compiled(data_dir, scratch), lambda: resume_across_devices(data_dir, scratch)]
        if not args.skip_nni:
            checks.append(lambda: nni_experiment(data_dir, scratch))
        failed = 0
        for check in checks:
            start = time.perf_counter()
            try:
                ok, line = check()
            except Exception as error:  # a check that crashed is a failed check; the others still run
                ok, line = False, f'{type(error).__name__}: {error}'
            failed += not ok
            print(f'{"PASS" if ok else "FAIL"} {line} [{time.perf_counter() - start:.0f}s]', flush=True)
    print(f'{len(checks) - failed}/{len(checks)} checks passed')
    return 1 if failed else 0


# ============================================================ Checks

def gpu_info():
    device = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(device)
    native_bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
    driver = run_text(['nvidia-smi', '--query-gpu=driver_version', '--format=csv,noheader'])
    return True, (f'gpu: {props.name}, {props.total_memory / 2**30:.0f} GiB, compute capability '
                  f'{props.major}.{props.minor}, {torch.cuda.device_count()} visible; driver {driver or "?"}; '
                  f'torch {torch.__version__} (CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}); '
                  f'autocast {"bf16" if native_bf16 else "fp16 with loss scaling (no native bf16)"}')


def trial_speed(data_dir, scratch):
    from bench_trial import training_flops_per_image  # beside this script; FLOPs are the same on any device
    flops = training_flops_per_image('airbench')
    peak = peak_bf16_tflops(torch.cuda.get_device_name())
    figures = []
    for compiled in (False, True):
        out = scratch / f'trial-compile-{compiled}'
        result = run_script('trial/main.py', '--data_dir', data_dir, '--epochs', TRIAL_EPOCHS, '--device', 'cuda',
                            '--compile', str(compiled).lower(), '--divergence_epochs', '0', '--tta', '0',
                            '--log_frequency', '0', '--output_dir', out)
        if result.returncode != 0:
            return False, f'trial (--compile {compiled}): {ended(result)}: {tail(result)}'
        metrics = json.loads((out / 'metrics.json').read_text())
        batch = metrics['config']['batch_size']
        steps = int(re.search(r'(\d+) train /', result.stdout).group(1)) // batch
        speed = max(steps * batch / row['epoch_time'] for row in metrics['history'][1:])
        share = f', {speed * flops / (peak * 1e12):.1%} of its bf16 peak' if peak else ''
        figures.append(f'--compile {str(compiled).lower()}: {speed:,.0f} img/s{share}')
    return True, (f'default trial (airbench, batch {batch}, {steps * TRIAL_EPOCHS} steps, '
                  f'{flops / 1e9:.2f} GFLOP per training image): ' + '; '.join(figures))


def darts_search_step(data_dir, scratch):
    result = run_script('nas/search_darts.py', '--data_dir', data_dir, '--subset', 1280, '--epochs', 1,
                        '--width', 16, '--num_cells', 8, '--batch_size', 64, '--device', 'cuda', '--log_frequency', 1,
                        '--output_dir', scratch / 'search')
    if result.returncode != 0:
        return False, f'DARTS search: {ended(result)}: {tail(result)}'
    on_gpu = 'device cuda' in result.stdout
    where = 'on cuda' if on_gpu else 'NOT on cuda'
    return on_gpu, f'DARTS search, 16 channels, 8 cells, batch 64: one epoch of 10 steps {where}'


def retrain_compiled(data_dir, scratch):
    result = run_script('retrain/retrain.py', '--arch', 'DARTS_V2', '--data_dir', data_dir, '--subset', 1920,
                        '--epochs', 2, '--compile', 'true', '--device', 'cuda', '--log_frequency', 0, '--tta', 0,
                        '--output_dir', scratch / 'retrain')
    if result.returncode != 0:
        return False, f'retrain --compile: {ended(result)}: {tail(result)}'
    recompiles = [line for line in result.stderr.splitlines() if 'recompil' in line.lower()]
    history = json.loads((scratch / 'retrain' / 'metrics.json').read_text())['history']
    speed = 1920 // 96 * 96 / history[-1]['epoch_time']
    line = (f'retrain DARTS_V2 --compile, drop path {history[-1]["drop_path_prob"]:.2f} and auxiliary head: '
            f'{speed:,.0f} img/s in epoch 2')
    if recompiles:
        return False, f'{line}; torch recompiled: {recompiles[0]}'
    return True, line


def resume_across_devices(data_dir, scratch):
    """In this process: a retrain killed after its first epoch on one device, resumed on the other."""
    from cifar_automl import retrain
    tiny = ['--arch', 'DARTS_V2', '--data_dir', str(data_dir), '--subset', '512', '--width', '8', '--num_cells', '5',
            '--batch_size', '64', '--epochs', '2', '--log_frequency', '0', '--tta', '0']
    done = []
    for first, then in (('cuda', 'cpu'), ('cpu', 'cuda')):
        out = scratch / f'resume-{first}-{then}'
        with killed_after_one_epoch(retrain), contextlib.redirect_stdout(io.StringIO()):
            with contextlib.suppress(Killed):
                retrain.main(tiny + ['--device', first, '--output_dir', str(out)])
        log = io.StringIO()
        with contextlib.redirect_stdout(log):
            status = retrain.main(['--resume', 'true', '--output_dir', str(out), '--device', then])
        if status != 0 or 'reseeded' not in log.getvalue():
            return False, f'resume of a {first} checkpoint on {then}: exit {status}: {log.getvalue()[-500:]}'
        done.append(f'{first} -> {then}')
    return True, 'retrain resumed across devices: ' + ', '.join(done)


def nni_experiment(data_dir, scratch):
    """cifar10_tpe.yml as shipped (one GPU shared by two trials) but two 1-epoch trials on 5000 images."""
    sys.path.insert(0, str(REPO / 'tests'))
    from nni_experiment import nni_experiment as start_experiment
    command = (f'{sys.executable} trial/main.py --device cuda --data_dir {data_dir} --epochs 1 --subset 5000 '
               f'--divergence_epochs 0 --log_frequency 0')
    with start_experiment(REPO / 'nni_configs/cifar10_tpe.yml', scratch / 'nni', max_trial_number=2,
                          trial_concurrency=2, trial_command=command) as experiment:
        status = experiment.wait(timeout=STEP_TIMEOUT)
        jobs = experiment.api('trial-jobs')
        logs = [path.read_text() for path in experiment.directory.glob('environments/*/trials/*/trial.log')]
    states = sorted(job['status'] for job in jobs)
    on_gpu = sum('device cuda' in text for text in logs)
    ok = states == ['SUCCEEDED', 'SUCCEEDED'] and on_gpu == 2
    return ok, f'NNI experiment (cifar10_tpe.yml settings): {status["status"]}, trials {states}, {on_gpu} of 2 on cuda'


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


def peak_bf16_tflops(name):
    return next((tflops for key, tflops in PEAK_BF16_TFLOPS if key in name), None)


def write_synthetic_cifar(folder, seed=0):
    """Random images in CIFAR-10's "python version" layout (50,000 training, 10,000 test): the speed of
    real images, none of their accuracy."""
    rng = np.random.default_rng(seed)
    batches = folder / 'cifar-10-batches-py'
    batches.mkdir(parents=True)
    for name in [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']:
        with open(batches / name, 'wb') as f:
            pickle.dump({b'data': rng.integers(0, 256, (10000, 3072), dtype=np.uint8),
                         b'labels': [int(label) for label in rng.integers(0, 10, 10000)]}, f)
    with open(batches / 'batches.meta', 'wb') as f:
        pickle.dump({b'label_names': [b'class%d' % i for i in range(10)]}, f)
    return folder


def run_script(script, *args):
    """The script in a process group of its own with its output in files, so that a check that hangs
    is killed with all it started (loader workers, NNI's manager) and its last lines still come back."""
    with tempfile.TemporaryFile('w+') as out, tempfile.TemporaryFile('w+') as err:
        process = subprocess.Popen([sys.executable, str(REPO / script), *map(str, args)], cwd=REPO, stdout=out,
                                   stderr=err, text=True, start_new_session=True)
        try:
            returncode = process.wait(timeout=STEP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            returncode = None
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(process.args, returncode, out.read(), err.read())


def ended(result):
    return f'exit {result.returncode}' if result.returncode is not None else f'killed after {STEP_TIMEOUT} s'


def run_text(command):
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ''


def tail(result, lines=5):
    """The last lines of the error output, or of the progress output where the script was killed."""
    text = result.stdout if result.returncode is None else (result.stderr or result.stdout)
    return ' | '.join(text.strip().splitlines()[-lines:])


if __name__ == '__main__':
    sys.exit(main())
