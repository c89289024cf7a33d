"""The trial as a user runs it: `python trial/main.py`, standalone and under NNI's trial SDK."""
import json
import os
import subprocess
import sys

import pytest
import torch

from cifar_automl import config, trial
from cifar_automl.training import lr_at
from conftest import REPO

FAST = ['--dataset', 'digits', '--width', '16', '--batch_size', '64', '--log_frequency', '0']


def run_trial(args, env=None, timeout=300):
    return subprocess.run([sys.executable, str(REPO / 'trial' / 'main.py'), *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})}, cwd=REPO)


def test_standalone_trial_learns_digits_and_writes_results(tmp_path):
    result = run_trial(FAST + ['--epochs', '4', '--output_dir', str(tmp_path), '--logdir', str(tmp_path / 'tb')])
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / 'metrics.json').read_text())
    history = metrics['history']
    assert len(history) == 4
    assert history[-1]['train_loss'] < history[0]['train_loss']
    assert metrics['default'] > 80 and metrics['test_acc'] > 80  # chance is 10%
    assert set(metrics['per_class_test_acc']) == {str(d) for d in range(10)}
    assert metrics['config']['dataset'] == 'digits' and metrics['stopped_early'] is None
    checkpoint = torch.load(tmp_path / 'best.pt')
    assert checkpoint['epoch'] == metrics['best_epoch'] and 'model' in checkpoint
    assert list((tmp_path / 'tb').glob('events.out.tfevents.*'))
    assert 'per-class test accuracy' in result.stdout and 'epoch 4/4' in result.stdout
    # One count of epochs, from 1 as the console's "epoch N/M": in the history, best_epoch and best.pt.
    assert [row['epoch'] for row in history] == [1, 2, 3, 4]
    best = max(history, key=lambda row: row['default'])
    assert metrics['best_epoch'] == best['epoch'] and f"best epoch {best['epoch']}:" in result.stdout


def test_fixed_seed_reproduces_on_cpu(tmp_path):
    runs = []
    for name in ('a', 'b'):
        cfg_args = FAST + ['--device', 'cpu', '--epochs', '1', '--subset', '500', '--output_dir', str(tmp_path / name)]
        assert trial.main(cfg_args) == 0
        runs.append(json.loads((tmp_path / name / 'metrics.json').read_text()))
    assert runs[0]['history'][0]['train_loss'] == runs[1]['history'][0]['train_loss']
    assert runs[0]['test_acc'] == runs[1]['test_acc']


def nni_trial_env(tmp_path, params):
    """The environment NNI's legacy local channel gives a trial: parameters in
    NNI_SYS_DIR/parameter.cfg, metrics appended to NNI_SYS_DIR/.nni/metrics."""
    sys_dir = tmp_path / 'trial'
    sys_dir.mkdir()
    (sys_dir / 'parameter.cfg').write_text(json.dumps({'parameter_id': 7, 'parameters': params}))
    return {'NNI_PLATFORM': 'local', 'NNI_SYS_DIR': str(sys_dir), 'NNI_OUTPUT_DIR': str(sys_dir),
            'NNI_TRIAL_JOB_ID': 'test1', 'NNI_EXP_ID': 'testexp'}, sys_dir


def read_nni_metrics(sys_dir):
    raw = (sys_dir / '.nni' / 'metrics').read_bytes()
    records = []
    while raw:
        assert raw[:2] == b'ME'
        length = int(raw[2:8])
        records.append(json.loads(raw[8:8 + length]))
        raw = raw[8 + length:]
    return [(r['type'], json.loads(r['value'])) for r in records]


def test_under_nni_parameters_override_flags_and_metrics_reach_nni(tmp_path):
    env, sys_dir = nni_trial_env(tmp_path, {'epochs': 3, 'initial_lr': 0.1, 'cutout': 8})
    result = run_trial(FAST + ['--epochs', '1'], env)
    assert result.returncode == 0, result.stderr
    reports = read_nni_metrics(sys_dir)
    periodical = [value for kind, value in reports if kind == 'PERIODICAL']
    final = [value for kind, value in reports if kind == 'FINAL']
    assert len(periodical) == 3 and len(final) == 1  # epochs=3 came from NNI
    assert set(periodical[0]) == {'default', 'val_loss', 'train_loss', 'train_acc', 'lr', 'epoch_time', 'epoch'}
    assert {'default', 'test_acc', 'test_loss', 'best_epoch', 'epochs_run', 'train_time'} <= set(final[0])
    assert final[0]['default'] == max(p['default'] for p in periodical)
    assert [p['epoch'] for p in periodical] == [1, 2, 3]  # the WebUI's "epoch N/M"
    assert final[0]['best_epoch'] == max(periodical, key=lambda p: p['default'])['epoch']
    metrics = json.loads((sys_dir / 'metrics.json').read_text())  # NNI_OUTPUT_DIR is the default output
    assert metrics['config']['cutout'] == 8 and metrics['nni_trial'] is True
    assert list((sys_dir / 'tensorboard').glob('events.out.tfevents.*'))  # where nnictl tensorboard looks


def test_bad_nni_parameter_stops_the_trial_before_training(tmp_path):
    env, sys_dir = nni_trial_env(tmp_path, {'optimizer': 'lion'})
    result = run_trial(FAST, env, timeout=120)
    assert result.returncode == 2
    assert "optimizer='lion' is not allowed; expected one of 'sgd'" in result.stderr
    assert 'epoch' not in result.stdout
    assert not (sys_dir / '.nni' / 'metrics').exists() or not read_nni_metrics(sys_dir)


def test_diverging_trial_stops_early_and_still_reports(tmp_path):
    env, sys_dir = nni_trial_env(tmp_path, {'initial_lr': 10.0, 'optimizer': 'rmsprop', 'epochs': 30})
    result = run_trial(FAST + ['--precision', 'fp32', '--preset', 'plain'], env)  # the lab's lr, as given
    assert result.returncode == 0, result.stderr
    metrics = json.loads((sys_dir / 'metrics.json').read_text())
    assert metrics['stopped_early'] and metrics['epochs_run'] < 30
    assert [kind for kind, _ in read_nni_metrics(sys_dir)][-1] == 'FINAL'


def test_lr_schedule_is_one_cosine_over_all_steps():
    lrs = [lr_at(step, 100, 0.4, 0.004) for step in range(100)]
    assert lrs[0] == pytest.approx(0.4) and lrs[-1] == pytest.approx(0.004)
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))  # no restart at epoch boundaries
    assert lrs[50] == pytest.approx(0.004 + 0.396 * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * 50 / 99)).item()))
    warm = [lr_at(step, 100, 0.4, 0.0, warmup_steps=10) for step in range(12)]
    assert warm[0] == pytest.approx(0.04) and warm[9] == pytest.approx(0.4) and warm[10] == pytest.approx(0.4)


def lr_notice_at(args, batch_size=512):
    cfg = config.resolve(args)
    cfg.batch_size = batch_size  # what --batch_size 0 becomes on CIFAR-10
    return trial.lr_notice(cfg)


def test_a_labs_learning_rate_on_the_recipe_says_what_it_means_and_what_to_type():
    """The lab's `--model lenet --initial_lr 0.05` without --preset plain: 0.05 is for a batch of 1024,
    and the recipe's ending_lr (0.105, for 1024 too) lies above it, so the rate would rise."""
    assert lr_notice_at(['--model', 'lenet', '--initial_lr', '0.05']) == (
        'notice: --initial_lr 0.05 and --ending_lr 0.105 are for a batch of 1024 (--lr_batch_size): at batch 512 '
        'the learning rate peaks at 0.025 and then rises to 0.0525. For a rate used as given, as in the lab (a '
        "cosine to 0, the recipe's parts off), add --preset plain; to keep the recipe, give an --ending_lr below "
        '--initial_lr (the recipe ends at 7% of its peak: --ending_lr 0.0035).')
    lab_scale = lr_notice_at(['--initial_lr', '0.2', '--batch_size', '128'], batch_size=128)
    assert 'at batch 128 the learning rate peaks at 0.025 and then decays to 0.0131' in lab_scale
    assert lab_scale.endswith("add --preset plain; to keep the recipe's parts with the rate as given, "
                              '--lr_batch_size 0.')


@pytest.mark.parametrize('args', [[], ['--preset', 'cpu'], ['--initial_lr', '0.75'],
                                  ['--preset', 'plain', '--initial_lr', '0.05'],
                                  ['--lr_batch_size', '0', '--initial_lr', '0.05', '--ending_lr', '0.001']])
def test_learning_rates_that_read_as_meant_give_no_notice(args):
    assert lr_notice_at(args) is None


def test_the_learning_rate_notice_comes_before_training(tmp_path, capsys, monkeypatch):
    class Training(Exception):
        pass

    def first_step(*args, **kwargs):
        raise Training(capsys.readouterr().out)

    monkeypatch.setattr(trial, 'train_epoch', first_step)
    with pytest.raises(Training, match='notice: --initial_lr 0.05 and --ending_lr 0.105 are for a batch of 1024'):
        trial.main(['--dataset', 'digits', '--model', 'lenet', '--initial_lr', '0.05', '--device', 'cpu',
                    '--output_dir', str(tmp_path)])


def test_grad_clip_zero_disables_clipping_and_positive_clips(monkeypatch, tmp_path):
    from cifar_automl import training
    calls = []
    monkeypatch.setattr(training.nn.utils, 'clip_grad_norm_', lambda params, value: calls.append(value))
    for clip in (0.0, 5.0):
        cfg_args = FAST + ['--epochs', '1', '--subset', '128', '--grad_clip', str(clip), '--output_dir', str(tmp_path)]
        assert trial.main(cfg_args) == 0
    assert calls and set(calls) == {5.0}


def test_find_lr_prints_a_suggestion_and_saves_the_plot(tmp_path):
    result = run_trial(FAST + ['--find_lr', 'true', '--output_dir', str(tmp_path)])
    assert result.returncode == 0, result.stderr
    assert 'suggested --initial_lr' in result.stdout
    png = (tmp_path / 'lr_finder.png').read_bytes()
    assert png[:8] == b'\x89PNG\r\n\x1a\n'


def test_darts_model_trains_in_fp32_on_cpu_where_bf16_does_not_pay(tmp_path, capsys):
    args = ['--dataset', 'digits', '--model', 'darts:DARTS_V2', '--width', '4', '--num_cells', '3', '--subset', '64',
            '--batch_size', '32', '--epochs', '1', '--log_frequency', '0', '--device', 'cpu',
            '--output_dir', str(tmp_path)]
    assert trial.main(args) == 0
    assert 'autocast None' in capsys.readouterr().out


def test_cpu_without_bf16_units_trains_in_fp32(monkeypatch):
    """oneDNN runs bf16 on any AVX512 CPU, emulated and three times slower than fp32 there."""
    from cifar_automl import training
    cpu = torch.device('cpu')
    for probe in ('_is_avx512_bf16_supported', '_is_amx_tile_supported'):
        monkeypatch.setattr(torch.cpu, probe, lambda: False, raising=False)
    assert training.autocast_dtype('auto', cpu) is None
    monkeypatch.setattr(torch.cpu, '_is_amx_tile_supported', lambda: True, raising=False)
    assert training.autocast_dtype('auto', cpu) == torch.bfloat16
    assert training.autocast_dtype('auto', cpu, cpu_bf16_pays=False) is None
