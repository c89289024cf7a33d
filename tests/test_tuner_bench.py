"""The tuner benchmark (bench/tuners.py): NNI's tuners driven as the dispatcher drives them on the
tables, reproducible from a seed, random search checked against its exact expectation, and the
files a run writes."""
import csv
import logging
import warnings

import numpy as np
import pytest

from cifar_automl import tables, tuner_bench
from cifar_automl.nni_tuners import OptunaTPE
from conftest import REPO


@pytest.fixture(autouse=True)
def quiet_tuners():
    logging.disable(logging.WARNING)  # NNI's tuners log every proposal
    yield
    logging.disable(logging.NOTSET)


@pytest.mark.parametrize('tuner', list(tuner_bench.TUNERS))
@pytest.mark.parametrize('mode', list(tuner_bench.MODES))
def test_a_run_is_deterministic_given_its_seed(tuner, mode):
    """30 evaluations: past Evolution's population of 10 and TPE's 20 random start-up trials."""
    table = tables.load('hpobench/car')
    section, encoding = tuner_bench.tuner_setup(tuner)
    run = [tuner_bench.run_tuner(table, section, seed, 30, tuner_bench.MODES[mode], encoding) for seed in (0, 0, 1)]
    assert np.array_equal(run[0], run[1])
    assert not np.array_equal(run[0], run[2])


def test_nni_random_matches_the_exact_expectation_of_random_search():
    table = tables.load('nb201/cifar10')
    evaluations, repetitions = 20, 300
    regrets = np.array([tuner_bench.run_tuner(table, tuner_bench.TUNERS['Random'], seed, evaluations, 1)
                        for seed in range(repetitions)])
    exact = table.random_search_regret(evaluations)
    for n in (1, 5, 20):
        error = regrets[:, n - 1].std() / np.sqrt(repetitions)
        assert abs(regrets[:, n - 1].mean() - exact[n - 1]) < 4 * error, n


class Recording(OptunaTPE):
    """OptunaTPE that records each call the benchmark makes, and how many trials were out then."""
    calls = []

    def generate_parameters(self, parameter_id, **kwargs):
        self.calls.append(('propose', parameter_id, len(self.running)))
        return super().generate_parameters(parameter_id, **kwargs)

    def receive_trial_result(self, parameter_id, parameters, value, **kwargs):
        self.calls.append(('result', parameter_id, len(self.running)))
        super().receive_trial_result(parameter_id, parameters, value, **kwargs)


def test_batch_mode_keeps_four_trials_out_as_nni_does_with_trial_concurrency_4():
    Recording.calls.clear()
    section = {'codeDirectory': str(REPO / 'tests'), 'className': 'test_tuner_bench.Recording'}
    tuner_bench.run_tuner(tables.load('hpobench/car'), section, 0, 8, 4)
    assert Recording.calls[:6] == [('propose', 0, 0), ('propose', 1, 1), ('propose', 2, 2), ('propose', 3, 3),
                                   ('result', 0, 4), ('propose', 4, 3)]  # one more as each ends, three still out
    assert [call[1] for call in Recording.calls if call[0] == 'result'] == list(range(8))  # oldest first
    assert max(call[1] for call in Recording.calls if call[0] == 'propose') == 7  # 8 evaluations, 8 proposals


def test_optuna_multivariate_group_proposes_what_its_default_does():
    """optuna 5's TPESampler is multivariate by default, and `group` splits nothing on a space whose
    every trial has every parameter: the two forms issue 22 names are one (docs/tuners.md)."""
    table = tables.load('nb201/cifar10')
    default = tuner_bench.run_tuner(table, tuner_bench.TUNERS['OptunaTPE'], 3, 40, 1)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        grouped = tuner_bench.run_tuner(table, {**tuner_bench.TUNERS['OptunaTPE'],
                                                'classArgs': {'multivariate': True, 'group': True}}, 3, 40, 1)
    independent = tuner_bench.run_tuner(table, tuner_bench.TUNERS['OptunaTPE_independent'], 3, 40, 1)
    assert np.array_equal(default, grouped) and not np.array_equal(default, independent)


def test_a_small_benchmark_writes_its_files_and_replots_from_them(tmp_path, capsys):
    out = tmp_path / 'out'
    status = tuner_bench.main(['--tables', 'nb201/cifar10', 'hpobench/kc1', '--tuners', 'Random', 'TPE',
                               '--repetitions', '2', '--evaluations', '30', '--workers', '1', '--out', str(out)])
    assert status == 0
    printed = capsys.readouterr().out
    assert 'wall time' in printed and '[8/8' in printed  # 2 modes x 2 tuners x 2 tables
    names = {path.name for path in out.iterdir()}
    assert {'runs.csv', 'regret.csv', 'ranks.csv', 'ranks.md', 'regret_sequential_nb201.png',
            'regret_batch4_hpobench.png'} <= names
    ranks = list(csv.DictReader(open(out / 'ranks.csv')))
    assert {row['evaluations'] for row in ranks} == {'25', '30'}
    assert {row['tuner'] for row in ranks} == {'Random', 'TPE'}
    markdown = (out / 'ranks.md').read_text()
    assert 'python bench/tuners.py --tables nb201/cifar10' in markdown and '| random search (exact) |' in markdown
    runs = tuner_bench.read_runs(out / 'runs.csv')
    assert len(runs) == 8 and runs['sequential', 'Random', 'nb201/cifar10'].shape == (2, 30)
    again = tuner_bench.run_tuner(tables.load('hpobench/kc1'), tuner_bench.TUNERS['TPE'], 1, 30, 4)
    np.testing.assert_allclose(runs['batch4', 'TPE', 'hpobench/kc1'][1], again, rtol=1e-8)  # the CSV holds the run
    assert tuner_bench.main(['--replot', str(out), '--out', str(tmp_path / 'again')]) == 0
    assert (tmp_path / 'again' / 'ranks.csv').read_text() == (out / 'ranks.csv').read_text()
    assert not (tmp_path / 'again' / 'runs.csv').exists()  # the runs stay where they were made


@pytest.mark.parametrize('argv, message', [
    (['--tables', 'nb201/mnist'], "--tables 'nb201/mnist': expected a family"),
    (['--tuners', 'SMAC'], "--tuners 'SMAC': expected one of TPE"),
    (['--tuners', 'TPE:encoding=onehot'], "encoding 'onehot'; expected one of ordinal, categorical"),
    (['--tuners', 'Evolution:populaton_size=10'], "unexpected keyword argument 'populaton_size'"),
    (['--modes', 'batch8'], "--modes 'batch8': expected one of sequential, batch4"),
    (['--repetitions', '0'], '--repetitions 0: must be at least 1'),
    (['--replot', 'nowhere'], '--replot nowhere: no runs.csv there'),
])
def test_bad_flags_are_refused_before_any_run(argv, message, tmp_path, capsys):
    assert tuner_bench.main(argv + ['--out', str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_the_committed_results_hold_what_the_docs_say():
    """docs/results/tuners is the default command's output: every tuner, table and mode."""
    runs = tuner_bench.read_runs(REPO / 'docs/results/tuners/runs.csv')
    modes, tuners, names = tuner_bench.keys_of(runs)
    assert modes == list(tuner_bench.MODES) and tuners == list(tuner_bench.TUNERS)
    assert names == list(tables.ALL_TABLES)
    assert all(regrets.shape == (20, 200) for regrets in runs.values())


def test_the_committed_nnictl_experiment_is_the_benchmarks_run():
    """docs/results/tuners/nnictl_tabular_nb201: `nnictl create --config nni_configs/tabular_nb201.yml`,
    100 trials (report's trials.csv). Its best-so-far regret, trial by trial, is the benchmark's
    OptunaTPE run with seed 0 on nb201/cifar10."""
    with open(REPO / 'docs/results/tuners/nnictl_tabular_nb201/trials.csv', newline='') as f:
        trials = sorted(csv.DictReader(f), key=lambda row: int(row['trial']))
    best, curve = None, []
    for row in trials:
        if best is None or float(row['default']) > float(best['default']):
            best = row
        curve.append(float(best['regret']))
    runs = tuner_bench.read_runs(REPO / 'docs/results/tuners/runs.csv')
    assert len(curve) == 100
    np.testing.assert_allclose(curve, runs['sequential', 'OptunaTPE', 'nb201/cifar10'][0, :100], rtol=1e-8)
