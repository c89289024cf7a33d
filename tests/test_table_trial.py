"""The tabular trial (`python trial/table.py`): a tuner's parameters looked up in a table, one seed's
value reported to NNI, and the search space an NNI config ships for it."""
import json
import os
import subprocess
import sys

import pytest

from cifar_automl import table_trial, tables
from conftest import REPO
from test_tables import BEST_CIFAR10_CELL
from test_trial import nni_trial_env, read_nni_metrics


def run_table_trial(args, env=None):
    return subprocess.run([sys.executable, 'trial/table.py'] + args, cwd=REPO, capture_output=True, text=True,
                          timeout=120, env=env)


def test_under_nni_the_trial_reports_one_seeds_value_with_the_truth_and_regret(tmp_path):
    env, sys_dir = nni_trial_env(tmp_path, BEST_CIFAR10_CELL)
    result = run_table_trial(['--table', 'nb201/cifar10'], env={**os.environ, **env})
    assert result.returncode == 0, result.stderr
    [(kind, final)] = read_nni_metrics(sys_dir)
    table = tables.load('nb201/cifar10')
    assert kind == 'FINAL'
    assert final['default'] in table.observations[table.index(BEST_CIFAR10_CELL)]
    assert final['truth'] == pytest.approx(91.61, abs=0.005) and final['regret'] == 0


def flags(parameters):
    return [arg for name, value in parameters.items() for arg in (f'--{name}', str(value))]


def test_standalone_the_trial_takes_the_parameters_as_flags_and_prints_the_lookup():
    """The flags are the search space's names, so `report`'s "run it again" command runs."""
    cell = {**BEST_CIFAR10_CELL, 'Op5': 'none'}
    result = run_table_trial(['--table', 'nb201/cifar10'] + flags(cell))
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    table = tables.load('nb201/cifar10')
    assert printed['truth'] == pytest.approx(table.true_value(cell))
    assert printed['regret'] == pytest.approx(table.best - table.true_value(cell)) and printed['regret'] > 0


def test_a_value_outside_the_table_stops_the_trial_with_its_name():
    result = run_table_trial(['--table', 'nb201/cifar10'] + flags({**BEST_CIFAR10_CELL, 'Op2': 'conv_5x5'}))
    assert result.returncode == 2
    assert "error: nb201/cifar10: parameter 'Op2' is 'conv_5x5'; it takes" in result.stderr
    result = run_table_trial(['--table', 'nb201/mnist'])
    assert result.returncode == 2 and "--table 'nb201/mnist'" in result.stderr
    result = run_table_trial(['--table', 'hpolib/protein_structure', '--init_lr', 'fast'])
    assert result.returncode == 2 and "--init_lr 'fast': expected a number" in result.stderr


def test_the_same_seed_and_trial_number_return_the_same_seed_of_a_configuration():
    table = tables.load('nb201/cifar10')
    space = table_trial.search_space(table)
    values = [table_trial.evaluate(table, BEST_CIFAR10_CELL, space, table_trial.observation_rng(0, n))['default']
              for n in range(30)]
    again = [table_trial.evaluate(table, BEST_CIFAR10_CELL, space, table_trial.observation_rng(0, n))['default']
             for n in range(30)]
    assert values == again and len(set(values)) == 3  # every seed comes up, in a fixed order


def test_ordinal_encoding_gives_a_numeric_grid_as_positions():
    table = tables.load('hpolib/protein_structure')
    space = table_trial.search_space(table, 'ordinal')
    assert space['init_lr'] == {'_type': 'quniform', '_value': [-0.5, 5.5, 1]}  # 6 learning rates
    assert space['dropout_1'] == {'_type': 'quniform', '_value': [-0.5, 2.5, 1]}
    assert space['lr_schedule'] == {'_type': 'choice', '_value': ['cosine', 'const']}  # text stays a choice
    base = {name: 0.0 if spec['_type'] == 'quniform' else spec['_value'][0] for name, spec in space.items()}
    for position, rate in enumerate(table.space['init_lr']):
        assert table_trial.configuration(table, {**base, 'init_lr': float(position)}, space)['init_lr'] == rate
    ends = table_trial.configuration(table, {**base, 'init_lr': 5.5, 'n_units_1': -0.5}, space)  # NNI's clip
    assert ends['init_lr'] == 0.1 and ends['n_units_1'] == 16
    with pytest.raises(table_trial.ConfigError, match="'init_lr' is 6.0; it takes a position 0 to 5"):
        table_trial.configuration(table, {**base, 'init_lr': 6.0}, space)


def test_the_shipped_search_space_is_the_tables():
    shipped = json.loads((REPO / 'search_spaces/tabular_nb201.json').read_text())
    for name in tables.FAMILIES['nb201']:
        assert shipped == table_trial.search_space(tables.load(f'nb201/{name}'))


@pytest.mark.slow
@pytest.mark.parametrize('tuner', ['shipped', 'TPE'])
def test_tabular_experiment_under_nnictl_reproduces_the_benchmark_run(tuner, tmp_path):
    """nni_configs/tabular_nb201.yml through nnictl, 30 trials, with its own tuner and with NNI's
    TPE (both seeded): the manager, the dispatcher and the trials propose and return exactly what
    bench/tuners.py's in-process run of the same tuner and seed does, so the benchmark's numbers
    are those of real experiments."""
    import logging
    from nni.experiment.config import AlgorithmConfig, ExperimentConfig
    from cifar_automl import tuner_bench
    from nni_experiment import nni_experiment
    path = REPO / 'nni_configs/tabular_nb201.yml'
    overrides = {'max_trial_number': 30}
    section = ExperimentConfig.load(str(path)).tuner.json()
    if tuner == 'TPE':
        overrides['tuner'] = AlgorithmConfig(name='TPE', class_args={'optimize_mode': 'maximize', 'seed': 0})
        section = overrides['tuner'].json()
    with nni_experiment(path, tmp_path, **overrides) as experiment:
        status = experiment.wait(timeout=600)
        jobs = sorted(experiment.api('trial-jobs'), key=lambda job: job['sequenceId'])
    assert status['status'] == 'DONE' and not status['errors'], status
    assert [job['status'] for job in jobs] == ['SUCCEEDED'] * 30
    finals = [json.loads(json.loads(job['finalMetricData'][0]['data'])) for job in jobs]
    best, curve = None, []
    for final in finals:
        if best is None or final['default'] > best['default']:
            best = final
        curve.append(best['regret'])
    logging.disable(logging.WARNING)
    try:
        expected = tuner_bench.run_tuner(tables.load('nb201/cifar10'), section, 0, 30, 1)
    finally:
        logging.disable(logging.NOTSET)
    assert curve == list(expected)
