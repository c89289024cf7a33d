"""`python -m cifar_automl.remeasure`: the top trials of an experiment trained again with several
seeds (and a baseline at the same seeds) on digits with one-epoch runs, resumed, and bad input."""
import json

import pytest

from cifar_automl import remeasure
from cifar_automl.results.load import load_directory
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
    best = load_directory(experiment).best()
    assert summary[0]['config'] == f'tpeaaaa1-trial{best.number}'
    assert (summary[0]['experiment'], summary[0]['tuner']) == ('tpeaaaa1', 'TPE')
    assert float(summary[0]['nni_default']) == pytest.approx(best.metric)
    assert summary[1]['nni_default'] == ''
    markdown = (out / 'summary.md').read_text()
    assert markdown.startswith('# Re-measured: the top of experiment `tpeaaaa1` (TPE)\n')
    assert '| config | tuner | runs | NNI default | NNI test_acc | default (val) | test_acc | test_acc_tta | ' \
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


def test_several_experiments_share_one_baseline_and_more_are_added_later(experiment, tmp_path, capsys):
    """Tuners compared: each experiment's best, and the baseline once; re-measuring one more
    experiment into the same folder trains only its configuration, and a folder holding runs of
    another command is refused before anything trains."""
    random = make_experiment(tmp_path / 'runs', 'rndbbbb2', 'Random', 6, seed=2, command=COMMAND)
    anneal = make_experiment(tmp_path / 'runs', 'annccccc', 'Anneal', 6, seed=3, command=COMMAND)
    out = tmp_path / 'tuners'
    common = ['--top', '1', '--seeds', '0', '--baseline', BASELINE, '--out', str(out)]
    assert remeasure.main([str(experiment), str(random)] + common) == 0
    summary = read_csv(out / 'summary.csv')
    bests = {e.id: e.best().number for e in map(load_directory, (experiment, random, anneal))}
    assert [(row['config'], row['tuner'], row['runs']) for row in summary] == [
        (f'tpeaaaa1-trial{bests["tpeaaaa1"]}', 'TPE', '1'), (f'rndbbbb2-trial{bests["rndbbbb2"]}', 'Random', '1'),
        ('baseline', '', '1')]
    assert (out / summary[0]['config'] / 'seed0' / 'command.txt').read_text().strip() == summary[0]['command']
    assert '# Re-measured: the top of experiments `tpeaaaa1` (TPE), `rndbbbb2` (Random)' in \
        (out / 'summary.md').read_text()

    stamps = {p: p.stat().st_mtime_ns for p in out.glob('*/seed*/metrics.json')}
    assert remeasure.main([str(experiment), str(random), str(anneal)] + common) == 0
    after = {p: p.stat().st_mtime_ns for p in out.glob('*/seed*/metrics.json')}
    assert {p: after[p] for p in stamps} == stamps  # the three runs were reused ...
    assert set(after) - set(stamps) == {out / f'annccccc-trial{bests["annccccc"]}' / 'seed0' / 'metrics.json'}
    assert [row['config'] for row in read_csv(out / 'summary.csv')][2:] == [
        f'annccccc-trial{bests["annccccc"]}', 'baseline']

    summary_before = (out / 'summary.md').read_text()
    capsys.readouterr()
    assert remeasure.main([str(experiment), '--set', 'epochs=2'] + common) == 2  # ... a changed command is not
    assert 'holds a run of another command' in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in out.glob('*/seed*/metrics.json')} == after
    assert (out / 'summary.md').read_text() == summary_before
