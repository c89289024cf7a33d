"""`python -m cifar_automl.remeasure`: the top trials of an experiment trained again with several
seeds (and a baseline at the same seeds) on digits with one-epoch runs, resumed, and bad input."""
import json

import pytest

from cifar_automl import remeasure, report
from test_report import read_csv
from test_report_compare import make_experiment

COMMAND = 'python3 trial/main.py --dataset digits --width 8 --epochs 1 --log_frequency 0'
BASELINE = 'python3 trial/main.py --dataset digits --width 8 --epochs 1 --log_frequency 0 --preset cpu'


@pytest.fixture
def experiment(tmp_path):
    return make_experiment(tmp_path / 'runs', 'tpeaaaa1', 'TPE', 10, seed=1, command=COMMAND)


def test_top_trials_and_baseline_run_with_each_seed_and_resume(experiment, tmp_path, capsys):
    out = tmp_path / 'remeasure'
    arguments = [str(experiment), '--top', '1', '--seeds', '0', '1', '--set', 'epochs=2', '--baseline', BASELINE,
                 '--out', str(out)]
    assert remeasure.main(arguments) == 0
    runs = read_csv(out / 'runs.csv')
    assert [(r['config'], r['seed'], r['status']) for r in runs][-2:] == \
        [('baseline', '0', 'ok'), ('baseline', '1', 'ok')]
    assert len(runs) == 4
    summary = read_csv(out / 'summary.csv')
    assert [row['config'] for row in summary][-1] == 'baseline' and len(summary) == 2
    for row in summary:
        mine = [r for r in runs if r['config'] == row['config']]
        tests = [float(r['test_acc']) for r in mine]
        assert int(row['runs']) == 2
        assert float(row['test_acc_mean']) == pytest.approx(sum(tests) / 2)
        assert float(row['test_acc_std']) == pytest.approx(abs(tests[0] - tests[1]) / 2 ** 0.5)
        for r in mine:  # each run is the configuration's command with its seed
            config = json.loads((out / row['config'] / f'seed{r["seed"]}' / 'metrics.json').read_text())['config']
            assert config['seed'] == int(r['seed']) and config['dataset'] == 'digits'
            if row['config'] != 'baseline':  # the trial's parameters, with --set's epochs
                assert f"--initial_lr {config['initial_lr']!r}" in row['command'] and config['epochs'] == 2
            else:
                assert config['width'] == 8 and config['preset'] == 'cpu' and config['epochs'] == 1
    best = report.load_directory(experiment).best()
    assert summary[0]['config'] == f'trial{best.number}'
    assert float(summary[0]['nni_default']) == pytest.approx(best.metric)
    assert summary[1]['nni_default'] == ''
    markdown = (out / 'summary.md').read_text()
    assert '| config | runs | NNI default | NNI test_acc | default (val) | test_acc | test_acc_tta | ' \
           'training time (s) | test_acc vs baseline |' in markdown and ' ± ' in markdown
    assert 'ran with `--epochs 2` (--set), unlike their trials' in markdown

    # Run again: every run is found done, nothing trains, the summary is the same.
    stamps = {p: p.stat().st_mtime_ns for p in out.glob('*/seed*/metrics.json')}
    assert remeasure.main(arguments) == 0
    assert {p: p.stat().st_mtime_ns for p in out.glob('*/seed*/metrics.json')} == stamps
    assert read_csv(out / 'summary.csv') == summary


@pytest.mark.parametrize('extra, message', [
    (['--baseline', 'python3 trial/main.py --no_such_flag 1'], 'baseline: '),
    (['--baseline', 'python3 trial/main.py --width 2'], 'baseline: --width: width=2 is not allowed'),
    (['--baseline', 'python3 other.py'], 'does not run trial/main.py'),
    (['--top', '0'], '--top 0'),
    (['--set', 'epochs'], '--set epochs: expected NAME=VALUE'),
    (['--set', 'epochs=0'], '--epochs: epochs=0 is not allowed'),
    (['--seeds', '1', '1'], 'expected distinct seeds'),
])
def test_bad_input_is_refused_before_any_training(extra, message, experiment, tmp_path, capsys):
    out = tmp_path / 'remeasure'
    assert remeasure.main([str(experiment), '--out', str(out)] + extra) == 2
    error = capsys.readouterr().err
    assert 'error: ' in error and message in error
    assert not out.exists()


def test_unknown_experiment_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('HOME', str(tmp_path))
    assert remeasure.main(['nosuchid', '--out', str(tmp_path / 'out')]) == 2
    assert "error: 'nosuchid': not an experiment directory" in capsys.readouterr().err
