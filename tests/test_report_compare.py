"""`python -m cifar_automl.report` over several experiments: the comparison table, the overlaid
best-so-far curves, parameter importance and the Pareto front, from experiment directories
built here in NNI 3.0's own database format (the schema of the recorded tests/data experiment)."""
import json
import shutil
import sqlite3

import numpy as np
import pytest

from cifar_automl import report
from cifar_automl.results.commands import command_values
from cifar_automl.results.load import load_directory, without_repeating_links
from test_report import FIXTURE, read_csv

SPACE = {'initial_lr': {'_type': 'loguniform', '_value': [0.01, 1.0]},
         'weight_decay': {'_type': 'loguniform', '_value': [1e-5, 1e-2]},
         'batch_size': {'_type': 'choice', '_value': [64, 128]}}
START_MS = 1_800_000_000_000


def accuracy(params):
    """The metric the fake trials report: driven by the learning rate (best at 0.1), and by the
    epochs where a Hyperband-like experiment tunes them (3 where the trial command fixes them)."""
    return 90 - 8 * np.log10(params['initial_lr'] / 0.1) ** 2 + 4 * np.log(params.get('epochs', 3) / 3)


def make_experiment(root, experiment_id, tuner, trials, seed=0, command='python3 trial/main.py --dataset digits',
                    optimize_mode='maximize', budgets=(), limits=None):
    """An experiment directory holding db/nni.sqlite as NNI writes it: `trials` sequential trials
    of 20-60 s each, parameters drawn from SPACE (and `epochs` from `budgets`, as Hyperband gives
    them), final results like the trial's; `limits` as the config's maxExperimentDuration and maxTrialNumber."""
    rng = np.random.default_rng(seed)
    directory = root / experiment_id
    (directory / 'db').mkdir(parents=True)
    database = directory / 'db' / 'nni.sqlite'
    shutil.copyfile(FIXTURE / 'db' / 'nni.sqlite', database)
    profile = {'experimentName': f'{tuner}-run', 'searchSpace': SPACE, 'trialCommand': command,
               'tuner': {'name': tuner, 'classArgs': {'optimize_mode': optimize_mode}}, **(limits or {})}
    with sqlite3.connect(database) as db:
        for table in ('TrialJobEvent', 'MetricData', 'ExperimentProfile'):
            db.execute(f'DELETE FROM {table}')
        now = START_MS
        for number in range(trials):
            params = {'initial_lr': float(10 ** rng.uniform(-2, 0)), 'weight_decay': float(10 ** rng.uniform(-5, -2)),
                      'batch_size': int(rng.choice([64, 128]))}
            if budgets:
                params['epochs'] = int(rng.choice(budgets))
            trial_id = f'{experiment_id[:3]}{number:02d}'
            train_time = float(20 + 40 * rng.random())
            hyper = json.dumps({'parameter_id': number, 'parameter_source': 'algorithm', 'parameters': params})
            db.execute('INSERT INTO TrialJobEvent VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
                       (now, trial_id, 'WAITING', hyper, '', number, None, None))
            db.execute('INSERT INTO TrialJobEvent VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
                       (now + 500, trial_id, 'RUNNING', None, '', None, None, None))
            final = {'default': accuracy(params) + rng.normal(0, 0.3), 'test_acc': accuracy(params) - 1,
                     'train_time': train_time}
            end = now + 500 + int(1000 * (train_time + 5))
            db.execute('INSERT INTO MetricData VALUES (?, ?, ?, ?, ?, ?)',
                       (end - 100, trial_id, str(number), 'FINAL', 0, json.dumps(json.dumps(final))))
            db.execute('INSERT INTO TrialJobEvent VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
                       (end, trial_id, 'SUCCEEDED', None, '', None, None, None))
            now = end + 200
        db.execute('INSERT INTO ExperimentProfile VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
                   (json.dumps(profile), experiment_id, (now - START_MS) // 1000, START_MS, now, str(directory),
                    trials, 1))
    return directory


@pytest.fixture
def runs(tmp_path):
    """A folder holding three experiments, as `rsync -a server:nni-experiments/ runs/` leaves it."""
    folder = tmp_path / 'runs'
    make_experiment(folder, 'tpeaaaa1', 'TPE', 30, seed=1, limits={'maxExperimentDuration': '0.25h'})  # ran ~23 min
    make_experiment(folder, 'rndbbbb2', 'Random', 25, seed=2,
                    limits={'maxExperimentDuration': '2h', 'maxTrialNumber': 25})
    make_experiment(folder, 'annccc3', 'Anneal', 12, seed=3)
    return folder


def test_comparison_table_has_every_column(runs, tmp_path):
    out = tmp_path / 'compare'
    assert report.main([str(runs), '--out', str(out)]) == 0
    rows = read_csv(out / 'comparison.csv')
    assert list(rows[0]) == ['experiment', 'name', 'tuner', 'trials', 'succeeded', 'wall_time_min', 'limit_reached',
                             'best_trial', 'best_val', 'best_test', 'best_train_time_s', 'source']
    assert sorted(row['experiment'] for row in rows) == ['annccc3', 'rndbbbb2', 'tpeaaaa1']
    assert [float(row['best_val']) for row in rows] == sorted((float(row['best_val']) for row in rows), reverse=True)
    for row in rows:
        trials = read_csv(out / row['experiment'] / 'trials.csv')  # each experiment's own report beside it
        best = trials[0]
        assert row['tuner'] == {'tpe': 'TPE', 'rnd': 'Random', 'ann': 'Anneal'}[row['experiment'][:3]]
        assert int(row['trials']) == int(row['succeeded']) == len(trials)
        assert row['best_trial'] == best['trial'] and row['best_val'] == best['default']
        assert row['best_test'] == best['test_acc'] and float(row['best_train_time_s']) == \
            pytest.approx(float(best['train_time']), abs=0.05)
        assert row['limit_reached'] == {'tpe': 'maxExperimentDuration 0.25h', 'rnd': 'maxTrialNumber 25',
                                        'ann': ''}[row['experiment'][:3]]
        durations = sum(float(t['duration_s']) for t in trials)
        assert durations / 60 <= float(row['wall_time_min']) <= durations / 60 + 1
    markdown = (out / 'report.md').read_text()
    assert '| experiment | tuner | trials (succeeded) | wall time (min) | limit reached |' in markdown
    tpe_report = (out / 'tpeaaaa1' / 'report.md').read_text()
    assert 'ended at its maxExperimentDuration 0.25h; the trial running at the time limit was cut short' in tpe_report
    assert 'ended at' not in (out / 'annccc3' / 'report.md').read_text()
    assert '[tpeaaaa1](tpeaaaa1/report.md)' in markdown


def test_comparison_plots_and_pareto_front(runs, tmp_path):
    out = tmp_path / 'compare'
    assert report.main([str(runs / 'tpeaaaa1'), str(runs / 'rndbbbb2'), str(runs / 'annccc3'),
                        '--out', str(out)]) == 0
    markdown = (out / 'report.md').read_text()
    from PIL import Image
    for name in ('best_so_far.png', 'importance.png', 'pareto.png'):
        assert f']({name})' in markdown
        with Image.open(out / name) as image:
            assert image.format == 'PNG' and image.width > 600 and image.height > 250
    front = [line.split(' | ') for line in markdown.split('Pareto front')[1].splitlines() if line.startswith('| ')][1:]
    assert front, 'the front is listed'
    points = [(float(cells[4]), float(cells[2])) for cells in front]  # (training time, metric), cheapest first
    assert points == sorted(points) and [m for _, m in points] == sorted(m for _, m in points)
    for cells in front:
        assert cells[5].startswith('`python3 trial/main.py --dataset digits --initial_lr ')
    everything = [row for e in ('tpeaaaa1', 'rndbbbb2', 'annccc3') for row in read_csv(out / e / 'trials.csv')]
    for row in everything:  # nothing off the front beats a front point on both counts
        time, metric = float(row['train_time']), float(row['default'])
        assert not any(time < t and metric > m for t, m in points)


def test_importance_ranks_the_parameter_that_drives_the_metric_first(runs, tmp_path):
    out = tmp_path / 'compare'
    assert report.main([str(runs), '--out', str(out)]) == 0
    markdown = (out / 'report.md').read_text()
    assert 'fitted to the 67 trials' in markdown
    table = [line.split(' | ') for line in markdown.split('## Which parameters matter')[1].split('\n## ')[0]
             .splitlines() if line.startswith('| ')][1:]
    shares = {cells[0].strip('| '): float(cells[1].strip(' %|')) for cells in table}
    assert list(shares)[0] == 'initial_lr'
    assert shares['initial_lr'] > 50 > shares['weight_decay']
    assert shares['initial_lr'] > 5 * max(shares['weight_decay'], shares['batch_size'])


def test_one_experiment_report_has_importance_and_pareto_too(runs, tmp_path):
    out = tmp_path / 'one'
    assert report.main([str(runs / 'tpeaaaa1'), '--out', str(out)]) == 0
    assert not (out / 'comparison.csv').exists()
    for name in ('trials.csv', 'report.md', 'best_command.txt', 'importance.png', 'pareto.png'):
        assert (out / name).is_file()


@pytest.mark.parametrize('problem, message', [
    ('missing id', "'nosuchid': not an experiment directory"),
    ('no database', 'no db/nni.sqlite here'),
    ('other metric', 'do not measure the same metric'),
    ('other dataset', 'do not measure the same metric'),
    ('twice', 'given twice'),
])
def test_bad_inputs_are_refused_before_anything_is_written(problem, message, runs, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('HOME', str(tmp_path))
    arguments = [str(runs / 'tpeaaaa1')]
    if problem == 'missing id':
        arguments.append('nosuchid')
    elif problem == 'no database':
        (tmp_path / 'empty').mkdir()
        arguments.append(str(tmp_path / 'empty'))
    elif problem == 'other metric':
        arguments.append(str(make_experiment(tmp_path / 'other', 'loss0001', 'TPE', 10, optimize_mode='minimize')))
    elif problem == 'other dataset':
        arguments.append(str(make_experiment(tmp_path / 'other', 'cifar001', 'TPE', 10,
                                             command='python3 trial/main.py --dataset cifar10')))
    else:
        arguments.append(str(runs))
    out = tmp_path / 'compare'
    assert report.main(arguments + ['--out', str(out)]) == 2
    error = capsys.readouterr().err
    assert error.startswith('error: ') and message in error
    assert not out.exists()


def test_every_experiment_in_a_folder_with_nnis_latest_link(runs, tmp_path, capsys):
    """`report EXPDIR/*`: NNI keeps `_latest`, a link to the experiment it started last, beside
    the experiments; the link names an experiment already given, so it is read once, not refused,
    wherever the shell's order puts it."""
    (runs / '_latest').symlink_to('rndbbbb2', target_is_directory=True)  # relative, as NNI makes it
    arguments = [str(runs / name) for name in ('annccc3', 'rndbbbb2', '_latest', 'tpeaaaa1')]
    out = tmp_path / 'compare'
    assert report.main(arguments + ['--out', str(out)]) == 0
    assert sorted(row['experiment'] for row in read_csv(out / 'comparison.csv')) == ['annccc3', 'rndbbbb2', 'tpeaaaa1']
    assert f'note: {runs / "_latest"} is a link to {runs / "rndbbbb2"}, read once' in capsys.readouterr().err
    assert without_repeating_links([str(runs / '_latest'), str(runs / 'rndbbbb2')]) == [str(runs / 'rndbbbb2')]
    assert without_repeating_links([str(runs / '_latest')]) == [str(runs / '_latest')]  # alone, it is the experiment


def test_importance_pools_budgets_with_the_epochs_a_command_fixes(tmp_path):
    """Hyperband's trials carry `epochs`; a plain tuner's trials trained the --epochs of their
    command, and count with that value rather than as missing."""
    folder = tmp_path / 'runs'
    make_experiment(folder, 'hyperbd1', 'Hyperband', 30, seed=4, budgets=(1, 3, 9))
    make_experiment(folder, 'tpeaaaa1', 'TPE', 20, seed=5, command='python3 trial/main.py --dataset digits --epochs 3')
    plain = load_directory(folder / 'tpeaaaa1')
    assert command_values(plain)['epochs'] == 3
    assert command_values(load_directory(folder / 'hyperbd1'))['epochs'] == 10  # the trial's default
    out = tmp_path / 'compare'
    assert report.main([str(folder), '--out', str(out)]) == 0
    markdown = (out / 'report.md').read_text()
    section = markdown.split('## Which parameters matter')[1].split('\n## ')[0]
    shares = [line.split(' | ')[0].strip('| ') for line in section.splitlines() if line.startswith('| ')][1:]
    assert shares[:2] == ['initial_lr', 'epochs'] or shares[:2] == ['epochs', 'initial_lr']
