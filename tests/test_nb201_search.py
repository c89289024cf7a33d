"""NAS-Bench-201 in the search: `python nas/search_darts.py --space nb201`, and its cells looked up
in the benchmark's table."""
import csv
import json
import warnings

import pytest
import torch
from PIL import Image

from cifar_automl import darts_search, search_diagnostics, space_nb201
from cifar_automl.config import ConfigError
from test_darts_search import run_search

BEST = '|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|'
# What each of NNI's ops is, as built in NNI's NasBench201 cell.
NNI_MODULES = {'none': ('Zero', None), 'skip_connect': ('Identity', None), 'conv_1x1': ('ReLUConvBN', (1, 1)),
               'conv_3x3': ('ReLUConvBN', (3, 3)), 'avg_pool_3x3': ('Pooling', None)}


def test_the_best_and_the_all_skip_cell_score_as_the_benchmark_says():
    best = space_nb201.from_string(BEST)
    assert space_nb201.to_string(best) == BEST
    score = space_nb201.scores(best)
    assert score['cifar10'] == 91.61 and score['cifar10_rank'] == 1
    all_skip = {key: 'skip_connect' for key in space_nb201.KEYS}
    assert space_nb201.scores(all_skip)['cifar10'] == 39.77


def nni_cell(arch):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)
        from nni.nas.hub.pytorch import NasBench201
        from nni.nas.space import model_context
        with model_context(arch):
            return NasBench201(stem_out_channels=4, num_modules_per_stack=1).cells[0]


@pytest.mark.parametrize('position, edge', list(enumerate(space_nb201.EDGES)))
def test_every_op_on_every_edge_maps_to_the_same_edge_in_nni_the_string_and_the_table(position, edge):
    source, target = edge
    for op, (module_name, kernel) in NNI_MODULES.items():
        arch = {key: 'none' for key in space_nb201.KEYS} | {space_nb201.edge_key(source, target): op}
        # NNI's cell computes node `target` from node `source` through this module
        built = nni_cell(arch).layers[target - 1][source]
        assert type(built).__name__ == module_name
        if kernel:
            assert built.op[1].kernel_size == kernel
        # the benchmark's string names it at this edge's place, node by node
        nodes = [part.strip('|').split('|') for part in space_nb201.to_string(arch).split('+')]
        assert nodes[target - 1][source] == f'{space_nb201.BENCHMARK_OPS[op]}~{source}'
        # and the table reads it as its parameter Op<position>
        params = space_nb201.table_params(arch)
        assert params[f'Op{position}'] == space_nb201.BENCHMARK_OPS[op]
        assert all(value == 'none' for name, value in params.items() if name != f'Op{position}')
        assert space_nb201.from_table_params(params) == arch


@pytest.mark.parametrize('text, needle', [
    ('|nor_conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|', "'nor_conv_5x5~0' is not"),
    ('|nor_conv_3x3~0|+|none~0|none~1|', 'a NAS-Bench-201 cell has the keys'),
])
def test_a_malformed_cell_string_is_refused(text, needle):
    with pytest.raises(ConfigError, match=needle):
        space_nb201.from_string(text)


def test_diagnostics_tell_noise_from_a_decided_cell():
    uniform = {'e': {op: 0.2 for op in 'abcde'}}
    noise = search_diagnostics.diagnose(uniform, {'e': 'a'})
    assert noise['verdict'] == 'noise' and noise['entropy_ratio'] == pytest.approx(1) and noise['changed'] is None
    decided = {'e': {'a': 0.6, 'b': 0.1, 'c': 0.1, 'd': 0.1, 'e': 0.1}}
    assert search_diagnostics.diagnose(decided, {'e': 'a'}, {'e': 'b'})['verdict'] == 'moving'
    settled = search_diagnostics.diagnose(decided, {'e': 'a'}, {'e': 'a'})
    assert settled['verdict'] == 'settled' and settled['top2_gap'] == pytest.approx(0.5)
    assert 'still noise' in search_diagnostics.describe(noise)


def test_tiny_nb201_search_writes_every_epochs_cell_and_its_table_scores(tmp_path):
    out = tmp_path / 'search'
    args = ['--space', 'nb201', '--dataset', 'digits', '--subset', '128', '--width', '4', '--stage_cells', '1',
            '--batch_size', '32', '--epochs', '2', '--arch_lr', '0.05', '--beta_decay', '1', '--max_skip', '1',
            '--threads', '1', '--log_frequency', '1', '--output_dir', str(out)]
    code, output = run_search(args, tmp_path)
    assert code == 0, output
    with open(out / darts_search.EPOCHS_CSV, newline='') as f:
        rows = list(csv.DictReader(f))
    assert [row['epoch'] for row in rows] == ['0', '1']
    for epoch, row in enumerate(rows):
        arch = json.loads((out / f'epoch_{epoch}.json').read_text())
        assert space_nb201.check(arch, 'epoch file') and sum(op == 'skip_connect' for op in arch.values()) <= 1
        score = space_nb201.scores(arch)
        assert float(row['cifar10']) == score['cifar10'] and int(row['cifar100_rank']) == score['cifar100_rank']
        assert row['verdict'] in search_diagnostics.VERDICTS and 0 < float(row['entropy_ratio']) <= 1
        assert f'cell {space_nb201.to_string(arch)}' in output
        with Image.open(out / f'epoch_{epoch}.png') as png:
            assert png.width > png.height > 100
        probs = json.loads((out / f'epoch_{epoch}_probs.json').read_text())
        assert set(probs) == set(space_nb201.KEYS) and all(len(p) == 5 for p in probs.values())
    assert json.loads((out / 'final.json').read_text()) == arch
    assert f'NAS-Bench-201: CIFAR-10 {score["cifar10"]:.2f}% (rank {score["cifar10_rank"]} of 15625)' in output
    assert 'the table\'s best cell scores 91.61%' in output
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    tags = set()
    for events in (out / 'tensorboard').glob('events.out.tfevents.*'):
        tags |= set(EventAccumulator(str(events)).Reload().Tags()['scalars'])
    assert {'nb201/cifar10', 'nb201/imagenet16-120_rank', 'diagnostics/top2_gap'} <= tags
    row = summary_row(out, tmp_path)
    assert float(row['cifar10']) == score['cifar10'] and row['verdicts'] == rows[-1]['verdict']
    assert float(row['max_skip 1']) == score['cifar10']  # the search ran under --max_skip 1


def summary_row(search, tmp_path):
    """search_summary's row for one search."""
    from cifar_automl import search_summary
    assert search_summary.main([str(search), '--out', str(tmp_path / 'summary')]) == 0
    with open(tmp_path / 'summary.csv', newline='') as f:
        (row,) = csv.DictReader(f)
    return row


def test_beta_decay_holds_every_op_back_in_proportion_to_its_softmax():
    alpha = torch.nn.Parameter(torch.tensor([2.0, 0.0, -1.0]))

    class Edge(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self._arch_alpha = alpha

    model = torch.nn.Sequential(Edge(), Edge())  # two cells sharing one choice count once
    assert darts_search.architecture_weights(model) == [alpha]
    darts_search.beta_decay_loss(model).backward()
    assert torch.allclose(alpha.grad, torch.softmax(alpha.detach(), -1))


def test_the_auxiliary_skip_adds_each_mixed_edges_input_and_fades_over_its_epochs():
    class Edge(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self._arch_alpha = torch.nn.Parameter(torch.zeros(5))

        def forward(self, x):
            return 2 * x

    weight = [0.5]
    edge = Edge()
    assert darts_search.add_auxiliary_skips(edge, lambda: weight[0]) == 1
    x = torch.ones(3)
    assert torch.equal(edge(x), 2.5 * x)  # the op's output plus weight x input
    weight[0] = 0.0
    assert torch.equal(edge(x), 2 * x)

    cfg = darts_search.SearchConfig(aux_skip=1.0, aux_skip_epochs=6, epochs=12)
    steps = [darts_search.aux_skip_weight(cfg, step, steps_per_epoch=10) for step in (0, 30, 60, 119)]
    assert steps == [1.0, 0.5, 0.0, 0.0]  # gone after its 6 epochs, the search goes on without it
    whole = darts_search.SearchConfig(aux_skip=1.0, aux_skip_epochs=0, epochs=12)
    assert darts_search.aux_skip_weight(whole, 60, steps_per_epoch=10) == 0.5  # 0: over the whole search, as DARTS-


class MixedEdge(torch.nn.Module):
    """A mixed layer as NNI's DARTS builds one: named ops, a label, architecture weights and their softmax."""

    def __init__(self, ops):
        super().__init__()
        self.names, self.label = list(ops), 'cell/0_1'
        self.ops = torch.nn.ModuleDict(ops)
        self._arch_alpha = torch.nn.Parameter(torch.zeros(len(ops)))
        self._softmax = torch.nn.Softmax(-1)

    def forward(self, x):
        weights = self._softmax(self._arch_alpha)
        return sum(weight * self.ops[name](x) for weight, name in zip(weights, self.names))


def test_perturbation_keeps_the_op_whose_removal_costs_the_supernet_the_most_accuracy():
    from cifar_automl import perturbation
    from cifar_automl.augment import BatchLoader, normalize
    from cifar_automl.data import Split
    torch.manual_seed(0)
    teacher, distractor = torch.nn.Linear(3 * 8 * 8, 10), torch.nn.Linear(3 * 8 * 8, 10)
    images = torch.randint(0, 256, (512, 3, 8, 8), dtype=torch.uint8)
    labels = teacher(normalize(images).flatten(1)).argmax(1).detach()  # what the teacher op alone gets right
    # The distractor has the larger architecture weight: argmax would export it.
    zero = torch.nn.Linear(3 * 8 * 8, 10)
    torch.nn.init.zeros_(zero.weight), torch.nn.init.zeros_(zero.bias)
    edge = MixedEdge({'none': zero, 'skip_connect': distractor, 'conv_3x3': teacher})
    edge._arch_alpha.data = torch.tensor([0.0, 0.5, 0.0])
    supernet = torch.nn.Sequential(torch.nn.Flatten(), edge)
    cfg = darts_search.resolve(['--space', 'nb201', '--select', 'perturbation', '--select_tune_epochs', '0',
                                '--batch_size', '64'])
    split = Split(images, labels)
    arch, record = perturbation.select(supernet, torch.nn.CrossEntropyLoss(), split, split, cfg)
    assert arch == {'cell/0_1': 'conv_3x3'}
    without = record[0]['accuracy_without']
    assert without['conv_3x3'] < record[0]['supernet_accuracy'] < without['skip_connect']
    assert 'none' not in without  # its removal changes nothing: not measured unless --export_none
    # Once decided, the edge is its op alone: the supernet is the teacher, right on every image.
    assert perturbation.accuracy(supernet, BatchLoader(split, 128, 'cpu')) == 100


def test_tiny_nb201_search_selects_by_perturbation_and_records_every_measurement(tmp_path):
    out = tmp_path / 'search'
    args = ['--space', 'nb201', '--dataset', 'digits', '--subset', '256', '--width', '4', '--stage_cells', '1',
            '--batch_size', '32', '--epochs', '2', '--arch_warmup', '2', '--select', 'perturbation',
            '--threads', '1', '--output_dir', str(out)]
    code, output = run_search(args, tmp_path)
    assert code == 0, output
    selection = json.loads((out / darts_search.SELECTION_FILE).read_text())
    record = selection['edges']
    assert sorted(step['edge'] for step in record) == sorted(space_nb201.KEYS)
    for step in record:
        without = step['accuracy_without']
        assert set(without) == set(space_nb201.NNI_OPS) - {'none'} and without[step['chosen']] == min(without.values())
    arch = json.loads((out / 'final.json').read_text())
    assert arch == selection['cell'] == {step['edge']: step['chosen'] for step in record}
    assert selection['seconds'] > 0
    row = summary_row(out, tmp_path)
    assert float(row['cifar10']) == space_nb201.scores(arch)['cifar10'] and row['verdicts'] == 'selected'
    assert row['select'] == 'perturbation' and row['max_skip 1'] == ''  # the cap is an argmax export's
    assert 'selection 6/6' in output and f'cell {space_nb201.to_string(arch)}' in output
    assert f'NAS-Bench-201: CIFAR-10 {space_nb201.scores(arch)["cifar10"]:.2f}%' in output
    # --arch_warmup equal to --epochs: the architecture weights never moved from NNI's near-uniform start.
    probs = json.loads((out / 'epoch_1_probs.json').read_text())
    assert all(abs(p - 0.2) < 0.01 for edge in probs.values() for p in edge.values())

    # Selecting again from the same trained supernet, every edge judged on it as it is: nothing trains.
    once = tmp_path / 'once'
    code, output = run_search(['--select_from', str(out), '--select', 'perturbation', '--select_once', 'true',
                               '--threads', '1', '--output_dir', str(once)], tmp_path)
    assert code == 0, output
    again = json.loads((once / darts_search.SELECTION_FILE).read_text())
    assert {step['supernet_accuracy'] for step in again['edges']} == {record[0]['supernet_accuracy']}
    for step in again['edges']:
        assert step['accuracy_without'][step['chosen']] == min(step['accuracy_without'].values())
    assert json.loads((once / 'final.json').read_text()) == again['cell']
    assert json.loads((out / darts_search.SELECTION_FILE).read_text()) == selection  # the first selection is kept
    saved = json.loads((once / darts_search.CONFIG_FILE).read_text())
    assert saved['select_once'] and saved['select_from'] == str(out) and saved['subset'] == 256
    assert summary_row(once, tmp_path)['select_once'] == 'True'
    assert 'epoch 1/2' not in output and 'every choice judged on the trained supernet as it is' in output
    assert f'selecting again from the supernet that the search in {out} trained for its 2 epochs' in output


def test_the_nb201_cpu_preset_is_the_search_whose_seeds_are_committed():
    from conftest import REPO
    cfg = darts_search.resolve(['--preset', 'nb201_cpu'])
    assert (cfg.select, cfg.arch_warmup) == ('perturbation', cfg.epochs)  # DARTS-PT's fixed alpha
    runs = sorted((REPO / 'docs' / 'results' / 'nb201_cpu').glob('seed*'))
    assert [folder.name for folder in runs] == ['seed0', 'seed1', 'seed2']
    compared = [name for name in darts_search.SEARCH_DEFINING if name not in ('seed', 'preset')]
    for seed, folder in enumerate(runs):
        # A setting a run's config lacks had its default (the run was made before the option existed).
        run = {name: opt.default for name, opt in darts_search.OPTIONS.items()}
        run |= json.loads((folder / darts_search.CONFIG_FILE).read_text())
        assert run['seed'] == seed
        assert {name: run[name] for name in compared} == {name: getattr(cfg, name) for name in compared}
