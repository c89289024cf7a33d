"""The paths a CUDA machine takes, proved on a CPU: torch's CUDA probes are replaced by what a GPU
machine (or a broken one) answers. bench/gpu_check.py runs the same paths on a real GPU."""
import argparse
import inspect
import re
import subprocess
import sys
import time

import pytest
import torch
from torch import nn

from cifar_automl import augment, config, training, trial
from cifar_automl.config import ConfigError
from cifar_automl.lr_finder import lr_range_test
from conftest import REPO, fake_filelock

FAST = ['--dataset', 'digits', '--width', '16', '--batch_size', '64', '--log_frequency', '0', '--device', 'cpu']


@pytest.fixture
def broken_cuda(monkeypatch):
    """The CUDA 13.0 wheel under an NVIDIA driver older than 580: torch sees no GPU."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(torch.version, 'cuda', '13.0')
    monkeypatch.delenv('NNI_PLATFORM', raising=False)
    monkeypatch.delenv('CUDA_VISIBLE_DEVICES', raising=False)


@pytest.fixture
def two_gpus(monkeypatch):
    """torch sees two GPUs; what select_device asks of them is recorded."""
    chosen = []
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 2)
    monkeypatch.setattr(torch.cuda, 'set_device', chosen.append)
    monkeypatch.setattr(torch.backends.cudnn, 'benchmark', False)  # restored after the test
    return chosen


@pytest.mark.parametrize('value', ['auto', 'cpu', 'cuda', 'cuda:0', 'cuda:12'])
def test_device_takes_a_gpu_index(value):
    assert config.resolve(['--device', value]).device == value


@pytest.mark.parametrize('value', ['gpu', 'cuda:', 'cuda:-1', 'cuda:one', 'mps', 'CUDA'])
def test_device_refuses_anything_else_before_training(value, capsys):
    assert trial.main(['--device', value]) == 2
    assert capsys.readouterr().err == (f"error: --device: device={value!r} is not allowed; expected auto, cpu, cuda, "
                                       f"or cuda:N (N: the index of a visible GPU, from 0)\n")


@pytest.mark.parametrize('name', ['cuda', 'cuda:0'])
def test_asking_for_a_gpu_that_torch_cannot_use_fails_naming_the_driver(broken_cuda, name):
    with pytest.raises(ConfigError, match=rf'--device {name}: torch .* is built for CUDA 13.0, which needs an '
                                          r'NVIDIA driver >= 580 \(nvidia-smi shows yours\)'):
        training.select_device(name)


def test_a_cpu_only_torch_says_so(broken_cuda, monkeypatch):
    monkeypatch.setattr(torch.version, 'cuda', None)
    with pytest.raises(ConfigError, match='is the CPU-only build; for the CUDA one, pip uninstall torch torchvision'):
        training.select_device('cuda')


def test_auto_fails_under_nni_when_nni_gave_the_trial_a_gpu_it_cannot_use(broken_cuda, monkeypatch):
    monkeypatch.setenv('NNI_PLATFORM', 'local')
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '0')
    with pytest.raises(ConfigError, match=r'--device auto: NNI gave this trial a GPU \(CUDA_VISIBLE_DEVICES=0\), '
                                          r'but torch .* driver >= 580'):
        training.select_device('auto')


@pytest.mark.parametrize('visible, nni', [('', 'local'), ('-1', 'local'), (None, 'local'), ('0', None)])
def test_auto_trains_on_the_cpu_where_no_gpu_was_given(broken_cuda, monkeypatch, visible, nni):
    """A trial that asked NNI for no GPU (trialGpuNumber 0 sets CUDA_VISIBLE_DEVICES to ''), or a
    standalone run: auto means the CPU when torch sees no GPU."""
    if visible is not None:
        monkeypatch.setenv('CUDA_VISIBLE_DEVICES', visible)
    if nni:
        monkeypatch.setenv('NNI_PLATFORM', nni)
    assert training.select_device('auto') == torch.device('cpu')


def test_a_trial_asking_for_an_unusable_gpu_exits_2_before_loading_data(broken_cuda, tmp_path, capsys):
    assert trial.main(['--device', 'cuda:1', '--data_dir', str(tmp_path / 'nothing'),
                       '--output_dir', str(tmp_path / 'out')]) == 2
    assert capsys.readouterr().err.startswith('error: --device cuda:1: torch')
    assert not (tmp_path / 'out').exists() and not (tmp_path / 'nothing').exists()


def test_cuda_n_picks_that_gpu_and_turns_on_cudnn_autotuning(two_gpus):
    assert training.select_device('cuda:1') == torch.device('cuda', 1)
    assert two_gpus == [torch.device('cuda', 1)]  # the current device: nothing lands on GPU 0
    assert torch.backends.cudnn.benchmark
    assert training.select_device('cuda') == torch.device('cuda')
    assert training.select_device('cpu') == torch.device('cpu')


def test_cuda_n_beyond_the_visible_gpus_is_refused(two_gpus):
    with pytest.raises(ConfigError, match=r'--device cuda:2: torch sees 2 GPU\(s\), numbered from 0'):
        training.select_device('cuda:2')


def test_a_gpu_with_only_emulated_bf16_trains_in_fp16(monkeypatch):
    """torch 2.14 counts emulated bf16 (a T4, a V100) as supported unless told not to."""
    assert 'including_emulation' in inspect.signature(torch.cuda.is_bf16_supported).parameters
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda including_emulation=True: including_emulation)
    cuda = torch.device('cuda')
    assert training.autocast_dtype('auto', cuda) == torch.float16
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda including_emulation=True: True)
    assert training.autocast_dtype('auto', cuda) == torch.bfloat16


def test_batches_are_normalised_without_a_host_to_device_copy_each(monkeypatch):
    """Building the mean and std from Python numbers on a GPU blocks the CPU every batch."""
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    loader = augment.BatchLoader(augment_split(images), 16, 'cpu', train=True, crop_padding=2, flip=True)
    next(iter(loader))
    made = []
    tensor = torch.tensor
    monkeypatch.setattr(augment.torch, 'tensor', lambda *args, **kwargs: made.append(args) or tensor(*args, **kwargs))
    assert len(list(loader)) == 4 and made == []
    mean, std = (tensor(stats).view(1, 3, 1, 1) for stats in (augment.CIFAR10_MEAN, augment.CIFAR10_STD))
    assert torch.equal(augment.normalize(images), (images.float() - mean) / std)


def augment_split(images):
    from cifar_automl.data import Split
    return Split(images, torch.arange(len(images)) % 10)


def test_checkpoint_weights_are_cpu_copies():
    """torch.load of a best.pt holding CUDA tensors fails on a machine without a GPU."""
    model = nn.Linear(3, 2)
    weights = training.cpu_state_dict(model)
    assert all(tensor.device.type == 'cpu' and not tensor.requires_grad for tensor in weights.values())
    with torch.no_grad():
        model.weight.add_(1.0)
    assert not torch.equal(weights['weight'], model.weight)  # a copy, not the live tensor


def test_an_out_of_memory_trial_fails_with_its_batch_size(tmp_path, monkeypatch, capsys):
    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 2.00 GiB.\nmore details')

    monkeypatch.setattr(trial, 'train_epoch', out_of_memory)
    assert trial.main(FAST + ['--epochs', '1', '--output_dir', str(tmp_path)]) == trial.OUT_OF_MEMORY == 3
    err = capsys.readouterr().err
    assert err.startswith('error: out of GPU memory at batch size 64 with --model airbench --width 16: CUDA out '
                          'of memory. Tried to allocate 2.00 GiB. Lower --batch_size')
    assert 'more details' not in err and not (tmp_path / 'metrics.json').exists()


def test_the_lr_finder_scales_the_loss_under_fp16(tmp_path, monkeypatch):
    """fp16 gradients below ~6e-8 round to zero: the range test needs the training's GradScaler."""
    seen = {}

    def range_test(model, loader, optimizer, loss_fn, amp_dtype, scaler):
        seen.update(amp_dtype=amp_dtype, scaler=scaler)
        return [1e-3, 1e-2, 1e-1], [2.0, 1.0, 3.0]

    monkeypatch.setattr(trial, 'lr_range_test', range_test)
    assert trial.main(FAST + ['--find_lr', 'true', '--precision', 'fp16', '--output_dir', str(tmp_path)]) == 0
    assert seen['amp_dtype'] == torch.float16 and isinstance(seen['scaler'], torch.amp.GradScaler)


def test_the_lr_finder_with_a_scaler_takes_the_same_steps():
    """The scaled loss is unscaled before each step: without an overflow the weights move as in fp32."""
    class Loader:
        labels = torch.arange(8) % 2

        def __iter__(self):
            yield torch.linspace(-1, 1, 32).view(8, 4), self.labels

    def range_test(scaler):
        torch.manual_seed(0)
        model = nn.Linear(4, 2)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
        lrs, losses = lr_range_test(model, Loader(), optimizer, nn.functional.cross_entropy, None, scaler,
                                    start_lr=1e-3, end_lr=1.0, steps=6)
        return losses, model.weight.detach()

    plain_losses, plain_weight = range_test(None)
    scaled_losses, scaled_weight = range_test(torch.amp.GradScaler('cpu', init_scale=2.0 ** 10))
    assert len(scaled_losses) == 6 and scaled_losses == pytest.approx(plain_losses)
    assert torch.allclose(scaled_weight, plain_weight)


def import_gpu_check():
    sys.path.insert(0, str(REPO / 'bench'))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(REPO / 'bench'))
    return gpu_check


def test_gpu_check_on_a_machine_without_cuda_says_so_and_exits_0(broken_cuda, capsys):
    gpu_check = import_gpu_check()
    assert gpu_check.main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith('python 3.') and '\nfilelock 3.11.0 (' in out and '\nPASS filelock guard: ' in out
    assert '\nno CUDA GPU: torch' in out and 'NVIDIA driver >= 580' in out


def test_gpu_check_refuses_a_new_filelock_and_skips_what_would_take_nni_lock(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, 'filelock', fake_filelock('3.12.0'))
    gpu_check = import_gpu_check()
    assert gpu_check.main(['--dry_run', '--checks', 'search,nni', '--output_dir', str(tmp_path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert 'filelock 3.12.0 (/x/filelock)' in lines
    assert [line.split(':')[0] for line in lines if line.startswith(('PASS', 'FAIL', 'SKIP'))] == [
        'FAIL filelock guard', 'SKIP search', 'SKIP nni']
    assert 'breaks NNI 3.0' in next(line for line in lines if line.startswith('FAIL'))
    assert lines[-1].startswith('0 passed, 1 failed, 2 skipped of 3 checks')


def test_gpu_check_skips_the_checks_its_time_budget_cannot_fit(tmp_path, capsys):
    gpu_check = import_gpu_check()
    assert gpu_check.main(['--dry_run', '--budget_s', '0.01', '--checks', 'retrain,packing',
                           '--output_dir', str(tmp_path)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith(('PASS', 'FAIL', 'SKIP'))]
    assert lines[1:] == ['SKIP retrain: 0 s of the budget left, too little to start it [0s]',
                         'SKIP packing: 0 s of the budget left, too little to start it [0s]']
    assert list(tmp_path.iterdir()) == []  # nothing was started


def test_a_check_that_the_budget_ends_is_skipped_not_failed(tmp_path, monkeypatch):
    gpu_check = import_gpu_check()
    (tmp_path / 'slow.py').write_text('import time\ntime.sleep(60)\n')
    monkeypatch.setattr(gpu_check, 'REPO', tmp_path)
    monkeypatch.setattr(gpu_check, 'MIN_LIMIT_S', 1)
    run = gpu_check.Run(argparse.Namespace(dry_run=False, budget_s=2), tmp_path, tmp_path, time.monotonic())

    def slow_check(run):
        [process] = run.run('slow', [['slow.py']], limit_s=100)
        return gpu_check.Result('FAIL', f'slow: {process.ended()}', [process])

    result = gpu_check.run_check(run, 'slow', slow_check, gpu_check.Result('PASS', ''))
    assert result.status == 'SKIP'
    assert re.fullmatch(r'slow: the budget ran out during it; slow: stopped at the end of the budget, [12] s',
                        result.line)


def test_gpu_check_kills_a_hung_process_in_its_limit_showing_its_stack_and_state(tmp_path, monkeypatch, capsys):
    """A DARTS search once hung on an H200 and showed nothing (docs/gpu.md): a process past its limit
    must print its Python stack and its kernel state, then end with everything it started, even a
    process in a session of its own (as NNI's manager is)."""
    gpu_check = import_gpu_check()
    (tmp_path / 'hang.py').write_text(
        'import subprocess, sys, time\n'
        'subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)\n'
        'print("step 1 of 10", flush=True)\n'
        'def wait_for_the_gpu():\n    while True:\n        time.sleep(0.05)\n'
        'wait_for_the_gpu()\n')
    monkeypatch.setattr(gpu_check, 'REPO', tmp_path)
    marker = f'test-{tmp_path.name}'
    start = time.monotonic()
    process = gpu_check.Process(['hang.py'], 3, tmp_path / 'hang.log', marker)
    gpu_check.finish([process], 3)
    assert time.monotonic() - start < 6
    assert process.ended() == 'killed at its 3 s limit'
    assert gpu_check.processes_with_env(gpu_check.MARKER, marker) == []
    out = capsys.readouterr().out
    assert out.startswith('    hang.py reached its 3 s limit; its processes:\n')
    assert re.search(r'pid \d+ \(python[\d.]*\): State: S \(sleeping\), wchan \S+', out), out
    shown = gpu_check.excerpt(process)
    assert '| step 1 of 10' in shown and '| Timeout (0:00:02)!' in shown
    assert re.search(r'File "\S*hang.py", line 6 in wait_for_the_gpu', shown), shown
    assert '] step 1 of 10' in (tmp_path / 'hang.log').read_text()  # with the second it came


AIRBENCH_STAND_IN = """
import torch

def main(run):
    data = torch.load('cifar10/train.pt')
    assert data['images'].dtype == torch.uint8 and data['images'].shape[1:] == (32, 32, 3), data['images'].shape
    assert len(torch.load('cifar10/test.pt')['labels']) > 0
    print('|  %s  |  eval  |  2.3  |  2.3  |  0.1  |  0.1005  |  |  1.5  |' % run)
    return 0.1
"""


@pytest.mark.slow
def test_gpu_check_dry_run_runs_every_check_on_the_cpu_in_3_minutes(tmp_path):
    """The GPU sequence at tiny sizes, with a stand-in for airbench94 (which reads cifar10/*.pt where
    it runs and returns its TTA accuracy)."""
    (tmp_path / 'airbench94.py').write_text(AIRBENCH_STAND_IN)
    start = time.monotonic()
    result = subprocess.run([sys.executable, 'bench/gpu_check.py', '--dry_run', '--airbench', str(tmp_path /
                             'airbench94.py'), '--output_dir', str(tmp_path / 'out')], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert time.monotonic() - start < 190, result.stdout
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout.splitlines()
    started = [line.split()[1].rstrip(',') for line in out if line.startswith('-- ')]
    ended = [line for line in out if line.startswith(('PASS', 'FAIL', 'SKIP'))]
    assert started == list(import_gpu_check().CHECKS), result.stdout
    assert [line.split()[0] for line in ended] == ['PASS', 'SKIP'] + ['PASS'] * 8, result.stdout
    anchor = next(line for line in ended if line.startswith('PASS anchor'))
    assert 'airbench94 (airbench94.py, 2,000 images): 10.05% ± 0.00 (10.00% ± 0.00 with TTA)' in anchor, anchor
