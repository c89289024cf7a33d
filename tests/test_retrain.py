"""The retrain as a user runs it (`python retrain/retrain.py --arch ...`), kept tiny for CPU: it trains,
writes its checkpoints, resumes a killed run on the same schedule, stops on patience; and the trial
trains a `darts:` model, so that NNI can tune the retrain of a searched cell."""
import json

import pytest
import torch

from cifar_automl import config, retrain, trial
from cifar_automl.config import ConfigError
from cifar_automl.training import Evaluation
from conftest import REPO

# One thread: on a loaded 2-core machine, tiny DARTS steps ran 5x faster than with two spinning threads.
TINY = ['--arch', 'DARTS_V2', '--dataset', 'digits', '--width', '4', '--num_cells', '3', '--subset', '128',
        '--batch_size', '32', '--log_frequency', '0', '--precision', 'fp32', '--threads', '1', '--device', 'cpu']



def test_tiny_retrain_trains_and_writes_checkpoints_metrics_and_tensorboard(tmp_path, capsys):
    assert retrain.main(TINY + ['--epochs', '2', '--output_dir', str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / 'metrics.json').read_text())
    assert [row['epoch'] for row in metrics['history']] == [1, 2] and metrics['epochs_run'] == 2  # as on the console
    assert {'default', 'test_acc', 'best_epoch', 'train_time'} <= set(metrics)
    assert set(metrics['per_class_test_acc']) == {str(d) for d in range(10)}
    # drop path ramps linearly from 0 over the run (DARTS cnn/train.py)
    assert [row['drop_path_prob'] for row in metrics['history']] == [0.0, 0.1]
    last = torch.load(tmp_path / retrain.LAST_CHECKPOINT, weights_only=False)
    assert last['state']['epoch'] == 2 and last['config']['auxiliary_weight'] == 0.4
    best = torch.load(tmp_path / retrain.BEST_CHECKPOINT, weights_only=False)
    assert best['epoch'] == metrics['best_epoch'] and any(k.startswith('auxiliary_head.') for k in best['model'])
    assert json.loads((tmp_path / 'arch.json').read_text()) == metrics['arch']
    assert (tmp_path / 'arch.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'  # the cell, drawn
    assert list((tmp_path / 'tensorboard').glob('events.out.tfevents.*'))
    out = capsys.readouterr().out
    assert 'node 5 = skip_connect(0) + dil_conv_3x3(2)' in out and 'epoch 2/2' in out and 'ETA' in out


class Killed(Exception):
    pass


def test_a_killed_run_resumes_at_its_saved_epoch_on_the_same_schedule(tmp_path, monkeypatch, capsys):
    args = TINY + ['--epochs', '3', '--initial_lr', '0.05']
    assert retrain.main(args + ['--output_dir', str(tmp_path / 'whole')]) == 0
    whole = json.loads((tmp_path / 'whole' / 'metrics.json').read_text())['history']
    whole_best = torch.load(tmp_path / 'whole' / retrain.BEST_CHECKPOINT, weights_only=False)

    train_epoch = retrain.train_epoch

    def killed_in_second_epoch(*positional, **keywords):
        if positional[6] == 2:  # the epoch's number, from 1
            raise Killed
        return train_epoch(*positional, **keywords)

    monkeypatch.setattr(retrain, 'train_epoch', killed_in_second_epoch)
    with pytest.raises(Killed):
        retrain.main(args + ['--output_dir', str(tmp_path / 'killed')])
    monkeypatch.setattr(retrain, 'train_epoch', train_epoch)
    assert torch.load(tmp_path / 'killed' / retrain.LAST_CHECKPOINT, weights_only=False)['state']['epoch'] == 1
    # As if killed after writing best.pt of an epoch whose last.pt never came: resuming restores the best
    # weights. The resumed epochs are made no better, so that the final test must use the restored ones.
    torch.save({'model': {}, 'epoch': 1}, tmp_path / 'killed' / retrain.BEST_CHECKPOINT)
    monkeypatch.setattr(retrain, 'evaluate', lambda *args, **options: Evaluation(9.0, 0.0, []))
    capsys.readouterr()

    assert retrain.main(['--resume', 'true', '--output_dir', str(tmp_path / 'killed')]) == 0
    assert 'resuming at epoch 2 of 3 epochs' in capsys.readouterr().out
    resumed = json.loads((tmp_path / 'killed' / 'metrics.json').read_text())['history']
    assert [row['epoch'] for row in resumed] == [1, 2, 3]
    assert [row['lr'] for row in resumed] == [row['lr'] for row in whole]  # same step, same learning rate
    # weights, optimizer, augmentation and drop-path randomness all continue: the same run, not a restart
    assert [row['train_loss'] for row in resumed] == pytest.approx([row['train_loss'] for row in whole], rel=1e-4)
    metrics = json.loads((tmp_path / 'killed' / 'metrics.json').read_text())
    best = torch.load(tmp_path / 'killed' / retrain.BEST_CHECKPOINT, weights_only=False)
    assert best['epoch'] == metrics['best_epoch'] == 1 and best['model'].keys() == whole_best['model'].keys()


def test_resume_refuses_a_changed_schedule_and_a_fresh_run_will_not_overwrite_one(tmp_path):
    assert retrain.main(TINY + ['--epochs', '1', '--output_dir', str(tmp_path)]) == 0
    cfg, given = retrain.resolve(['--resume', 'true', '--output_dir', str(tmp_path), '--epochs', '5'])
    with pytest.raises(ConfigError, match="--epochs 5: the run in .* was started with 1; a resumed run keeps"):
        retrain.run(cfg, given)
    cfg, given = retrain.resolve(TINY + ['--epochs', '1', '--output_dir', str(tmp_path)])
    with pytest.raises(ConfigError, match='already holds a run .*--resume'):
        retrain.run(cfg, given)
    cfg, given = retrain.resolve(['--resume', 'true', '--output_dir', str(tmp_path / 'none')])
    with pytest.raises(ConfigError, match='no run to continue'):
        retrain.run(cfg, given)


def test_patience_stops_a_run_that_no_longer_improves(tmp_path):
    # At a learning rate of 1e-7 nothing improves after the first epoch.
    args = TINY + ['--epochs', '6', '--initial_lr', '1e-7', '--patience', '2', '--output_dir', str(tmp_path)]
    assert retrain.main(args) == 0
    metrics = json.loads((tmp_path / 'metrics.json').read_text())
    assert metrics['epochs_run'] == 3 and metrics['best_epoch'] == 1
    assert 'no better validation accuracy in 2 epochs' in metrics['stopped_early']


def test_without_auxiliary_weight_there_is_no_auxiliary_head(tmp_path):
    args = TINY + ['--epochs', '1', '--auxiliary_weight', '0', '--drop_path_prob', '0', '--output_dir', str(tmp_path)]
    assert retrain.main(args) == 0
    best = torch.load(tmp_path / retrain.BEST_CHECKPOINT, weights_only=False)
    assert not any(key.startswith('auxiliary_head.') for key in best['model'])


def test_defaults_are_the_darts_papers_retrain():
    cfg, _ = retrain.resolve(['--arch', 'DARTS_V2'])
    paper = dict(num_cells=20, width=36, epochs=600, batch_size=96, optimizer='sgd', initial_lr=0.025, ending_lr=0.0,
                 momentum=0.9, nesterov=False, weight_decay=3e-4, cutout=16, drop_path_prob=0.2, auxiliary_weight=0.4,
                 grad_clip=5.0, label_smoothing=0.0)
    assert {name: getattr(cfg, name) for name in paper} == paper


def test_the_trial_trains_a_darts_model_for_an_epoch_on_digits(tmp_path):
    args = ['--model', 'darts:DARTS_V2', '--dataset', 'digits', '--width', '8', '--num_cells', '3', '--epochs', '1',
            '--subset', '256', '--batch_size', '32', '--log_frequency', '0', '--threads', '1',
            '--output_dir', str(tmp_path)]
    assert trial.main(args) == 0
    metrics = json.loads((tmp_path / 'metrics.json').read_text())
    assert metrics['config']['model'] == 'darts:DARTS_V2' and metrics['config']['num_cells'] == 3
    assert len(metrics['history']) == 1 and 'test_acc' in metrics


def test_nni_tunes_width_and_cells_of_a_darts_model(tmp_path):
    arch_file = tmp_path / 'epoch_49.json'
    arch_file.write_text(json.dumps(retrain.load_arch('DARTS_V1')))
    cfg = config.resolve(['--model', f'darts:{arch_file}'], {'width': 16, 'num_cells': 5})
    assert (cfg.width, cfg.num_cells) == (16, 5)
    with pytest.raises(ConfigError, match=r"NNI parameter: num_cells=2 is not allowed; expected int in \[3, 100\]"):
        config.resolve(['--model', f'darts:{arch_file}'], {'num_cells': 2})


def test_shipped_search_space_and_config_fit_the_trial():
    from nni.experiment.config import ExperimentConfig
    space = json.loads((REPO / 'search_spaces' / 'darts_retrain.json').read_text())
    for name, spec in space.items():
        values = spec['_value'] if spec['_type'] == 'choice' else spec['_value'][:2]
        for value in values:
            config.check_value(name, value, f'darts_retrain.json {name}')
    experiment = ExperimentConfig.load(str(REPO / 'nni_configs' / 'darts_retrain.yml'))
    assert experiment.trial_gpu_number is None and experiment.training_service.platform == 'local'
    command = experiment.trial_command.split()
    assert command[:2] == ['python3', 'trial/main.py']
    cfg = config.resolve(command[2:], {name: spec['_value'][0] for name, spec in space.items()})
    assert cfg.model.startswith('darts:') and cfg.nesterov is False


@pytest.mark.slow
def test_darts_retrain_experiment_runs_its_trials_under_nni(tmp_path):
    """The shipped config through nnictl, shrunk to digits and tiny nets so that it takes minutes on CPU."""
    from nni_experiment import nni_experiment
    space = tmp_path / 'space.json'
    space.write_text(json.dumps({'width': {'_type': 'choice', '_value': [4, 8]},
                                 'num_cells': {'_type': 'choice', '_value': [3]}}))
    command = ('python3 trial/main.py --model darts:DARTS_V2 --dataset digits --epochs 2 --subset 256 '
               '--batch_size 32 --log_frequency 0 --threads 1')
    with nni_experiment(REPO / 'nni_configs' / 'darts_retrain.yml', tmp_path / 'nni', trial_command=command,
                        search_space_file=str(space), max_trial_number=2) as experiment:
        assert experiment.wait(timeout=900)['status'] == 'DONE'
        jobs = experiment.api('trial-jobs')
        metrics = experiment.api('metric-data')
    assert len(jobs) == 2 and all(job['status'] == 'SUCCEEDED' for job in jobs)
    assert sum(m['type'] == 'PERIODICAL' for m in metrics) == 4 and sum(m['type'] == 'FINAL' for m in metrics) == 2


def test_a_run_saved_on_a_gpu_resumes_on_the_cpu_with_reseeded_random_streams(tmp_path, monkeypatch, capsys):
    """A CUDA generator's state (16 bytes) does not fit a CPU generator (5056), and the GPU count of
    the machine that saved it may differ: the run continues on the schedule, reseeded, and says so."""
    args = TINY + ['--epochs', '2', '--output_dir', str(tmp_path)]
    train_epoch = retrain.train_epoch
    epochs_started = []

    def killed_in_second_epoch(*positional, **keywords):
        epochs_started.append(1)
        if len(epochs_started) == 2:
            raise Killed
        return train_epoch(*positional, **keywords)

    monkeypatch.setattr(retrain, 'train_epoch', killed_in_second_epoch)
    with pytest.raises(Killed):
        retrain.main(args)
    monkeypatch.setattr(retrain, 'train_epoch', train_epoch)
    path = tmp_path / retrain.LAST_CHECKPOINT
    saved = torch.load(path, weights_only=False)
    assert saved['rng_device'] == 'cpu' and saved['cuda_rng'] is None
    assert all(tensor.device.type == 'cpu' for tensor in saved['model'].values())
    # what a CUDA run writes: its generators' seed and offset, 16 bytes each
    saved.update(rng_device='cuda', loader_rng=torch.zeros(16, dtype=torch.uint8),
                 cuda_rng=torch.zeros(16, dtype=torch.uint8))
    torch.save(saved, path)
    capsys.readouterr()

    assert retrain.main(['--resume', 'true', '--output_dir', str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert 'resuming on cpu a run saved on cuda: the random streams of augmentation and drop path are reseeded' in out
    assert len(json.loads((tmp_path / 'metrics.json').read_text())['history']) == 2  # the saved epoch and one more
