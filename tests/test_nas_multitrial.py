"""`python nas/multitrial.py`: NNI's multi-trial strategies on NAS-Bench-201, each trial scored from the table."""
import csv
import time
from pathlib import Path

import numpy as np
import pytest

from cifar_automl import nas_multitrial, space_nb201, tables

pytestmark = pytest.mark.filterwarnings('ignore::RuntimeWarning')  # NNI's import: "not a nn.Module" (harmless)

BEST_CIFAR10 = '|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|'
# Every strategy, small enough for seconds: RL updates its policy every 4 cells, TPE models after 4.
TINY = ['--trials', '12', '--repetitions', '2', '--strategies',
        'random,evolution:population_size=4:sample_size=2,rl:samples_per_update=4,tpe:n_startup_jobs=4']


@pytest.fixture
def nni_manifest(tmp_path, monkeypatch):
    """nnictl's experiment manifest, which NNI fixes at import from the HOME it saw then: a run must leave
    it as it was. HOME is a temporary one for anything else that writes there."""
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    nas_multitrial.import_nni()
    from nni.tools.nnictl.constants import NNI_HOME_DIR
    manifest = Path(NNI_HOME_DIR) / '.experiment'
    before = manifest.read_bytes() if manifest.exists() else None
    yield
    assert (manifest.read_bytes() if manifest.exists() else None) == before


def read_trials(output_dir):
    with open(output_dir / nas_multitrial.TRIALS_CSV) as f:
        return list(csv.DictReader(f))


def test_evaluator_scores_a_sampled_cell_with_one_of_its_seeds():
    nas_multitrial.import_nni()
    from nni.nas.space import SimplifiedModelSpace
    table = tables.load('nb201/cifar10')
    space = nas_multitrial.build_space()
    # The space NNI samples is the one space_nb201 maps to the table: the same six edges, the same five ops.
    assert {label: list(choice.values) for label, choice in space.simplify().items()} == \
        {key: list(space_nb201.NNI_OPS) for key in space_nb201.KEYS}
    evaluator = nas_multitrial.make_evaluator(table, np.random.default_rng(0))
    executable = SimplifiedModelSpace.from_model(space, evaluator)
    seeds = set(table.observations[table.index(space_nb201.table_params(space_nb201.from_string(BEST_CIFAR10)))])
    values = set()
    for _ in range(30):
        model = executable.freeze(space_nb201.from_string(BEST_CIFAR10))
        with evaluator.mock_runtime(model):
            value = model.execute()
        assert model.metric == value  # reported to NNI as the trial's final result
        values.add(value)
    assert values == seeds and len(seeds) == 3
    assert np.mean(sorted(seeds)) == pytest.approx(91.61, abs=0.005) == table.best
    assert [space_nb201.to_string(arch) for arch, _ in evaluator.history] == [BEST_CIFAR10] * 30


def test_tiny_study_writes_every_trial_the_summary_and_the_plot(tmp_path, nni_manifest, capsys):
    out = tmp_path / 'study'
    assert nas_multitrial.main(TINY + ['--datasets', 'cifar10,cifar100', '--output_dir', str(out)]) == 0
    rows = read_trials(out)
    assert len(rows) == 2 * 4 * 2 * 12  # datasets x strategies x repetitions x trials
    for dataset in ('cifar10', 'cifar100'):
        table = tables.load(space_nb201.TABLES[dataset])
        for strategy in ('random', 'evolution:population_size=4:sample_size=2', 'rl:samples_per_update=4',
                         'tpe:n_startup_jobs=4'):
            for repetition in ('0', '1'):
                run = [r for r in rows if (r['dataset'], r['strategy'], r['repetition']) == (dataset, strategy,
                                                                                          repetition)]
                assert [int(r['trial']) for r in run] == list(range(1, 13))
                observed = [float(r['observed']) for r in run]
                for r in run:
                    params = space_nb201.table_params(space_nb201.from_string(r['cell']))
                    assert float(r['observed']) in table.observations[table.index(params)]
                    assert float(r['truth']) == pytest.approx(table.true_value(params), abs=1e-4)
                # the incumbent: the earliest trial with the best observed value so far, scored by its truth
                for n, r in enumerate(run):
                    best = int(np.argmax(observed[:n + 1]))
                    assert float(r['best_observed']) == observed[best]
                    assert r['best_truth'] == run[best]['truth']
    summary = (out / 'summary.md').read_text()
    assert '| random search (exact) |' in summary and '| 10 trials | 12 trials |' in summary
    with open(out / 'summary.csv') as f:
        summary_rows = list(csv.DictReader(f))
    exact = tables.load('nb201/cifar10').best - tables.load('nb201/cifar10').random_search_regret(12)[-1]
    assert [float(r['random_exact']) for r in summary_rows if r['dataset'] == 'cifar10' and r['trials'] == '12'] == \
        [pytest.approx(exact, abs=1e-4)] * 4
    assert (out / 'best_found.png').stat().st_size > 10_000
    assert any((out / 'nni').iterdir())  # NNI's experiment logs go under the output
    assert 'wall time' in capsys.readouterr().out


def test_same_seed_same_runs_another_seed_other_runs(tmp_path, nni_manifest):
    def study(name, seed):
        out = tmp_path / name
        assert nas_multitrial.main(TINY + ['--seed', str(seed), '--output_dir', str(out)]) == 0
        return read_trials(out)

    first, again, other = study('a', 0), study('b', 0), study('c', 1)
    assert first == again
    for strategy in ('random', 'evolution:population_size=4:sample_size=2', 'rl:samples_per_update=4',
                     'tpe:n_startup_jobs=4'):
        cells = [[r['cell'] for r in rows if r['strategy'] == strategy] for rows in (first, other)]
        assert cells[0] != cells[1]


@pytest.mark.parametrize('argv, needle', [
    (['--strategies', 'bayes'], "--strategies: no strategy 'bayes'; the strategies are random, evolution, rl, tpe"),
    (['--strategies', 'evolution:population=20'], "evolution: unknown setting 'population'; its settings are "
                                                  "population_size"),
    (['--strategies', 'evolution:mutation_prob=2'], 'mutation_prob=2.0 is not allowed; expected float in [0.0, 1.0]'),
    (['--strategies', 'rl:lr=fast'], "lr='fast' is not allowed"),
    (['--strategies', 'evolution:population_size=5:sample_size=10'], 'sample_size 10 is larger than population_size 5'),
    (['--strategies', 'tpe:gamma'], "'gamma' is not setting=value"),
    (['--strategies', 'random,random'], 'random given twice'),
    (['--strategies', 'evolution:crossover=maybe'], "crossover='maybe' is not allowed; expected true or false"),
    (['--datasets', 'cifar10,mnist'], "--datasets: no NAS-Bench-201 dataset 'mnist'"),
    (['--datasets', 'cifar10,cifar10'], '--datasets: name each of cifar10, cifar100, imagenet16-120 at most once'),
])
def test_bad_input_is_refused_before_any_run(argv, needle, tmp_path, capsys):
    assert nas_multitrial.main(argv + ['--output_dir', str(tmp_path / 'out')]) == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / 'out').exists()


def test_output_dir_is_required(capsys):
    assert nas_multitrial.main([]) == 2
    assert '--output_dir: where should the results go?' in capsys.readouterr().err


def tpe_cells(tmp_path, on_duplicate, trials=40):
    nas_multitrial.import_nni()
    spec = nas_multitrial.parse_strategy(f'tpe:n_startup_jobs=4:on_duplicate={on_duplicate}')
    history = nas_multitrial.run_once(nas_multitrial.build_space(), tables.load('nb201/cifar10'), spec,
                                      trials, 0, tmp_path / 'nni')
    return [space_nb201.to_string(arch) for arch, _ in history]


def test_nni_tpe_replaces_a_duplicate_with_the_grids_first_cells_and_the_fix_with_random_ones(tmp_path,
                                                                                              nni_manifest):
    # NNI's Deduplicator walks the grid from its first cell: every edge 'none' but the last few.
    grid_start = '|none~0|+|none~0|none~1|+|none~0|'
    assert any(cell.startswith(grid_start) for cell in tpe_cells(tmp_path, 'grid'))
    cells = tpe_cells(tmp_path, 'random')
    assert len(set(cells)) == len(cells) and not any(cell.startswith(grid_start) for cell in cells)


def test_tpe_does_not_sleep_a_second_per_trial(tmp_path, nni_manifest):
    start = time.perf_counter()
    tpe_cells(tmp_path, 'random', trials=20)
    assert time.perf_counter() - start < 10  # NNI's loop: 20 s
