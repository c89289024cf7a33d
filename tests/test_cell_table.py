"""`python nas/cell_table.py`: a searched cell, random cells and DARTS_V2 retrained at one budget, one
after another, resumable, tabulated; kept tiny on digits."""
import csv
import json

import pytest

from cifar_automl import cell_table, random_cells
from cifar_automl.arch_files import load_arch

pytestmark = pytest.mark.filterwarnings('ignore::RuntimeWarning')  # NNI's import: "not a nn.Module" (harmless)

TINY = ['--', '--dataset', 'digits', '--width', '4', '--num_cells', '3', '--subset', '128', '--val_size', '300',
        '--batch_size', '32', '--epochs', '1', '--precision', 'fp32', '--threads', '1', '--log_frequency', '0']



def test_table_retrains_every_cell_at_one_budget_resumes_and_refuses_another_budget(tmp_path, capsys):
    assert random_cells.main(['--number', '2', '--output_dir', str(tmp_path / 'cells')]) == 0
    searched = tmp_path / 'search' / 'final.json'
    searched.parent.mkdir()
    searched.write_text(json.dumps(load_arch('DARTS_V1')))
    cells = [str(searched), str(tmp_path / 'cells' / 'random_0.json'), str(tmp_path / 'cells' / 'random_1.json'),
             'DARTS_V2']
    args = ['--cells', *cells, '--seeds', '0', '--out', str(tmp_path / 'runs'), '--table', str(tmp_path / 'table')]
    assert cell_table.main(args + TINY) == 0
    for name in ('final', 'random_0', 'random_1', 'DARTS_V2'):
        metrics = json.loads((tmp_path / 'runs' / name / 'seed_0' / 'metrics.json').read_text())
        # the table's budget, with the flags after -- over it
        assert (metrics['config']['width'], metrics['config']['epochs'], metrics['config']['tta']) == (4, 1, 0)
    table = (tmp_path / 'table.md').read_text()
    assert '| final | searched |' in table and '| random_1 | random |' in table and '| DARTS_V2 | published |' in table
    assert '- random cells (2): ' in table and '- best random cell: random_' in table
    assert 'final (searched): ' in table and 'random mean + 1 std' in table
    with open(tmp_path / 'table.csv') as f:
        rows = list(csv.DictReader(f))
    assert [row['cell'] for row in rows] == ['final', 'random_0', 'random_1', 'DARTS_V2']
    assert all(float(row['test_acc_seed_0']) == pytest.approx(float(row['test_acc_mean']), abs=1e-3) for row in rows)
    assert all(int(row['parameters']) > 0 for row in rows)
    capsys.readouterr()

    # Run again: nothing is trained twice, the table comes back the same.
    assert cell_table.main(args + TINY) == 0
    assert capsys.readouterr().out.count('done before') == 4
    assert (tmp_path / 'table.md').read_text() == table

    # A finished run at another budget is refused before anything trains.
    assert cell_table.main(args + TINY + ['--epochs', '2']) == 2
    assert 'was trained with epochs=1, this table asks for 2' in capsys.readouterr().err


@pytest.mark.parametrize('argv, needle', [
    (['--cells', 'no_such.json'], 'no_such.json: no such architecture file'),
    (['--cells', 'DARTS_V2', '--', '--seed', '3'], '--seed after --: the table sets it'),
    (['--cells', 'DARTS_V2', 'darts_v2'], "two cells are named 'DARTS_V2'"),
    (['--cells', 'DARTS_V2', '--', '--epochs', '0'], '--epochs: epochs=0 is not allowed'),
])
def test_bad_input_is_refused_before_any_run(argv, needle, tmp_path, capsys):
    assert cell_table.main(['--out', str(tmp_path / 'runs'), *argv]) == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / 'runs').exists()
