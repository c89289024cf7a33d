"""Architecture files as users have them: every format reads to the same cell, bad ones are refused
with the file, the key and the reason, and the cell rebuilds NNI's DARTS network."""
import json
import subprocess
import sys

import pytest

from cifar_automl import config
from cifar_automl.arch_files import DARTS_V2, describe, load_arch, parse_arch, to_genotype
from cifar_automl.config import ConfigError
from conftest import REPO

# The published DARTS (second order) cell in NNI 3.0's form, as NNI's own DARTS.load_searched_model('darts-v2')
# spells it (edges in the paper's order, not the canonical input order).
NNI3_DARTS_V2 = {
    'normal/op_2_0': 'sep_conv_3x3', 'normal/op_2_1': 'sep_conv_3x3', 'normal/input_2_0': [0], 'normal/input_2_1': [1],
    'normal/op_3_0': 'sep_conv_3x3', 'normal/op_3_1': 'sep_conv_3x3', 'normal/input_3_0': [0], 'normal/input_3_1': [1],
    'normal/op_4_0': 'sep_conv_3x3', 'normal/op_4_1': 'skip_connect', 'normal/input_4_0': [1], 'normal/input_4_1': [0],
    'normal/op_5_0': 'skip_connect', 'normal/op_5_1': 'dil_conv_3x3', 'normal/input_5_0': [0], 'normal/input_5_1': [2],
    'reduce/op_2_0': 'max_pool_3x3', 'reduce/op_2_1': 'max_pool_3x3', 'reduce/input_2_0': [0], 'reduce/input_2_1': [1],
    'reduce/op_3_0': 'skip_connect', 'reduce/op_3_1': 'max_pool_3x3', 'reduce/input_3_0': [2], 'reduce/input_3_1': [1],
    'reduce/op_4_0': 'max_pool_3x3', 'reduce/op_4_1': 'skip_connect', 'reduce/input_4_0': [0], 'reduce/input_4_1': [2],
    'reduce/op_5_0': 'skip_connect', 'reduce/op_5_1': 'max_pool_3x3', 'reduce/input_5_0': [2], 'reduce/input_5_1': [1],
}

# The same cell as NNI 1.x/2.0's DARTS example wrote it: op indices (max_pool_3x3 0, skip_connect 2,
# sep_conv_3x3 3, dil_conv_3x3 5), [] for the edges not kept, and the kept edges in each switch.
NNI1_DARTS_V2 = {
    'normal_n2_p0': 3, 'normal_n2_p1': 3, 'normal_n2_switch': ['normal_n2_p0', 'normal_n2_p1'],
    'normal_n3_p0': 3, 'normal_n3_p1': 3, 'normal_n3_p2': [], 'normal_n3_switch': ['normal_n3_p0', 'normal_n3_p1'],
    'normal_n4_p0': 2, 'normal_n4_p1': 3, 'normal_n4_p2': [], 'normal_n4_p3': [],
    'normal_n4_switch': ['normal_n4_p0', 'normal_n4_p1'],
    'normal_n5_p0': 2, 'normal_n5_p1': [], 'normal_n5_p2': 5, 'normal_n5_p3': [], 'normal_n5_p4': [],
    'normal_n5_switch': ['normal_n5_p0', 'normal_n5_p2'],
    'reduce_n2_p0': 0, 'reduce_n2_p1': 0, 'reduce_n2_switch': ['reduce_n2_p0', 'reduce_n2_p1'],
    'reduce_n3_p0': [], 'reduce_n3_p1': 0, 'reduce_n3_p2': 2, 'reduce_n3_switch': ['reduce_n3_p1', 'reduce_n3_p2'],
    'reduce_n4_p0': 0, 'reduce_n4_p1': [], 'reduce_n4_p2': 2, 'reduce_n4_p3': [],
    'reduce_n4_switch': ['reduce_n4_p0', 'reduce_n4_p2'],
    'reduce_n5_p0': [], 'reduce_n5_p1': 0, 'reduce_n5_p2': 2, 'reduce_n5_p3': [], 'reduce_n5_p4': [],
    'reduce_n5_switch': ['reduce_n5_p1', 'reduce_n5_p2'],
}
NNI2_NAMES = {0: 'maxpool', 2: 'skipconnect', 3: 'sepconv3x3', 5: 'dilconv3x3'}


def nni2_names(arch):
    """NNI 2.0's variant: op names without underscores instead of indices."""
    return {key: NNI2_NAMES[value] if isinstance(value, int) else value for key, value in arch.items()}


def nni1_one_hot(arch):
    """NNI 1.x's first exports: one-hot op lists (all false: not kept) and multi-hot switches."""
    converted = {}
    for key, value in arch.items():
        if key.endswith('_switch'):
            node = int(key.split('_n')[1].split('_')[0])
            converted[key] = [f'{key[:-len("switch")]}p{i}' in value for i in range(node)]
        else:
            converted[key] = [i == value for i in range(7)] if isinstance(value, int) else [False] * 7
    return converted


# As the DARTS code's train_search.py logs a genotype (its concat printed as a range).
GENOTYPE_TEXT = ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
                 "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], "
                 "normal_concat=range(2, 6), reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), "
                 "('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), "
                 "('max_pool_3x3', 1)], reduce_concat=range(2, 6))\n")


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content, indent=2))
    return path


def test_every_format_reads_to_the_same_cell(tmp_path):
    expected = load_arch(write(tmp_path, 'nni3.json', NNI3_DARTS_V2))
    files = {
        'nni1.json': NNI1_DARTS_V2,
        'nni2.json': nni2_names(NNI1_DARTS_V2),
        'nni1_one_hot.json': nni1_one_hot(NNI1_DARTS_V2),
        'nni1_no_switch.json': {k: v for k, v in NNI1_DARTS_V2.items() if not k.endswith('_switch')},
        'genotype.txt': GENOTYPE_TEXT,
        'genotypes.py': f'DARTS_V2 = {GENOTYPE_TEXT}',
        'genotype.json': DARTS_V2._asdict(),
    }
    for name, content in files.items():
        assert load_arch(write(tmp_path, name, content)) == expected, name
    assert load_arch('DARTS_V2') == load_arch('darts_v2') == expected
    # One cell, one canonical form: each node's edges in input order, whatever order the file had.
    assert expected['normal/input_4_0'] == [0] and expected['normal/op_4_0'] == 'skip_connect'


@pytest.mark.filterwarnings('ignore::RuntimeWarning')  # NNI's import: "not a nn.Module" (harmless)
def test_canonical_form_is_exactly_what_nni_darts_space_samples():
    from nni.nas.hub.pytorch import DARTS
    space = DARTS(width=4, num_cells=3, dataset='cifar')
    assert set(space.simplify()) == set(load_arch('DARTS_V2'))


def test_darts_v2_has_the_papers_parameter_count():
    from cifar_automl.models.darts import build_darts, count_parameters
    network = build_darts(load_arch('DARTS_V2'), width=36, num_cells=20, auxiliary=True, drop_path_prob=0.2)
    assert round(count_parameters(network) / 1e6, 1) == 3.3  # DARTS paper, Table 1: 3.3M
    assert count_parameters(network, without_auxiliary=False) > count_parameters(network)


def test_description_shows_nodes_and_a_genotype_that_reads_back():
    arch = load_arch('DARTS_V2')
    text = describe(arch)
    assert 'node 5 = skip_connect(0) + dil_conv_3x3(2)' in text
    assert 'node 3 = max_pool_3x3(1) + skip_connect(2)' in text
    assert parse_arch(repr(to_genotype(arch)), 'printed') == arch


def broken(base, **changes):
    arch = {key: value for key, value in base.items() if key not in changes or changes[key] is not None}
    arch.update({key: value for key, value in changes.items() if value is not None})
    return arch


BAD_FILES = [
    ('missing.json', broken(NNI3_DARTS_V2, **{'reduce/input_5_1': None}), "reduce/input_5_1: missing"),
    ('unknown_op.json', broken(NNI3_DARTS_V2, **{'normal/op_2_0': 'conv_9x9'}),
     "normal/op_2_0: unknown op 'conv_9x9'; expected one of max_pool_3x3"),
    ('out_of_range.json', broken(NNI3_DARTS_V2, **{'normal/input_3_1': [3]}),
     'normal/input_3_1: input 3 is out of range for node 3: allowed 0..2'),
    ('three_inputs.json', broken(NNI3_DARTS_V2, **{'normal/op_2_2': 'skip_connect'}),
     'normal/op_2_2: node 2 has more than two inputs'),
    ('extra_node.json', broken(NNI3_DARTS_V2, **{'reduce/op_6_0': 'skip_connect'}),
     'reduce/op_6_0: node 6 does not exist'),
    ('two_inputs_in_one.json', broken(NNI3_DARTS_V2, **{'normal/input_2_0': [0, 1]}),
     'normal/input_2_0: expected one input index such as [0]'),
    ('nni1_missing_node.json', {k: v for k, v in NNI1_DARTS_V2.items() if not k.startswith('reduce_n5')},
     'reduce_n5: node 5 of the reduce cell is missing'),
    ('nni1_three_kept.json',
     broken(NNI1_DARTS_V2, normal_n4_p2=3, normal_n4_switch=['normal_n4_p0', 'normal_n4_p1', 'normal_n4_p2']),
     'normal_n4_switch: node 4 keeps 3 inputs (p0, p1, p2); a DARTS node has exactly two'),
    ('nni1_one_kept.json', broken(NNI1_DARTS_V2, normal_n2_switch=['normal_n2_p0']),
     'normal_n2_switch: node 2 keeps 1 inputs'),
    ('nni1_op_index.json', broken(NNI1_DARTS_V2, normal_n2_p0=9), 'normal_n2_p0: op index 9 is out of range'),
    ('nni1_op_name.json', broken(NNI1_DARTS_V2, normal_n2_p0='conv3x3'), "normal_n2_p0: unknown op 'conv3x3'"),
    ('nni1_input.json', broken(NNI1_DARTS_V2, normal_n2_p2=3), 'normal_n2_p2: input 2 is out of range for node 2'),
    ('nni1_not_kept.json', broken(NNI1_DARTS_V2, normal_n3_switch=['normal_n3_p0', 'normal_n3_p2']),
     'normal_n3_p2: normal_n3_switch keeps this edge, but it has no op'),
    ('genotype_short.txt', GENOTYPE_TEXT.replace("('dil_conv_3x3', 2)], ", '], '),
     'normal: has 7 edges; a DARTS cell has 8'),
    ('genotype_op.txt', GENOTYPE_TEXT.replace("normal=[('sep_conv_3x3', 0)", "normal=[('conv_3x3', 0)"),
     "normal[0]: unknown op 'conv_3x3'"),
    ('genotype_input.txt', GENOTYPE_TEXT.replace("('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 1)",
                                                 "('sep_conv_3x3', 0), ('sep_conv_3x3', 4), ('sep_conv_3x3', 1)"),
     'normal[3]: input 4 is out of range for node 3'),
    ('genotype_concat.txt', GENOTYPE_TEXT.replace('reduce_concat=range(2, 6)', 'reduce_concat=[4, 5]'),
     "reduce_concat: [4, 5]: NNI's DARTS network concatenates every node"),
    ('genotype_code.txt', GENOTYPE_TEXT.replace("normal_concat=range(2, 6)",
                                                "normal_concat=__import__('os').system('touch pwned')"),
     'normal_concat: expected a literal list'),
    ('bad.json', json.dumps(NNI3_DARTS_V2)[:-1] + ',}', 'bad JSON'),
    ('other.json', {'lr': 0.1}, "lr: not a DARTS architecture"),
    ('epoch_3_probs.json', {'normal/2_0': {'max_pool_3x3': 0.125}}, 'normal/2_0: this is a file of edge probabilities'),
    ('empty.json', '', 'empty architecture file'),
]


@pytest.mark.parametrize('name, content, message', BAD_FILES, ids=[case[0] for case in BAD_FILES])
def test_a_malformed_file_is_refused_with_the_file_the_key_and_the_reason(tmp_path, monkeypatch, name, content,
                                                                             message):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, name, content)
    with pytest.raises(ConfigError) as error:
        load_arch(path)
    assert str(error.value).startswith(f'{path}: ') and message in str(error.value)
    assert not (tmp_path / 'pwned').exists()  # a genotype file is read as literals, never run


def test_a_missing_file_names_the_published_cells_too():
    with pytest.raises(ConfigError, match='nope.json: no such architecture file .*DARTS_V2'):
        load_arch('nope.json')


def test_trial_refuses_a_bad_darts_model_before_training(tmp_path):
    path = write(tmp_path, 'cell.json', broken(NNI3_DARTS_V2, **{'normal/op_2_0': 'conv_9x9'}))
    with pytest.raises(ConfigError, match=rf"NNI parameter: model='darts:{path}': {path}: normal/op_2_0: unknown op"):
        config.resolve([], {'model': f'darts:{path}'})
    assert config.resolve(['--model', f'darts:{write(tmp_path, "ok.json", NNI1_DARTS_V2)}']).model.startswith('darts:')


def run_retrain(args):
    return subprocess.run([sys.executable, str(REPO / 'retrain' / 'retrain.py'), *args], capture_output=True,
                          text=True, timeout=300, cwd=REPO)


def test_print_arch_shows_the_cell_and_the_papers_size_without_training():
    result = run_retrain(['--arch', 'DARTS_V2', '--print_arch', 'true'])
    assert result.returncode == 0, result.stderr
    assert 'node 5 = skip_connect(0) + dil_conv_3x3(2)' in result.stdout
    assert '20 cells, width 36: 3.35M parameters without the auxiliary head' in result.stdout
    assert 'epoch' not in result.stdout


def test_retrain_refuses_a_bad_file_with_exit_status_2(tmp_path):
    path = write(tmp_path, 'epoch_49.json', broken(NNI1_DARTS_V2, normal_n2_p0=9))
    result = run_retrain(['--arch', str(path), '--dataset', 'digits'])
    assert result.returncode == 2
    assert f'error: {path}: normal_n2_p0: op index 9 is out of range' in result.stderr
    assert 'epoch' not in result.stdout


# ---------------------------------------------------------------- random cells (nas/random_cells.py)

def test_random_cells_are_reproducible_by_seed_and_uniform_over_the_darts_space():
    from collections import Counter

    from cifar_automl.arch_files import PRIMITIVES
    from cifar_automl.random_cells import random_cells
    cells = random_cells(300, seed=0)
    assert cells == random_cells(300, seed=0) and cells[:5] == random_cells(5, seed=0)
    assert cells[:5] != random_cells(5, seed=1)
    ops, node5_inputs = Counter(), Counter()
    for arch in cells:
        assert set(arch) == set(load_arch('DARTS_V2'))  # NNI's 32 keys
        assert parse_arch(json.dumps(arch), 'random') == arch  # already canonical
        for cell in ('normal', 'reduce'):
            for node in (2, 3, 4, 5):
                inputs = [arch[f'{cell}/input_{node}_{slot}'][0] for slot in (0, 1)]
                assert inputs[0] != inputs[1]  # two distinct inputs, as DARTS's export keeps
                ops.update(arch[f'{cell}/op_{node}_{slot}'] for slot in (0, 1))
            node5_inputs[tuple(arch[f'normal/input_5_{slot}'][0] for slot in (0, 1))] += 1
    assert set(ops) == set(PRIMITIVES)  # the 7 ops, never the zero op
    assert all(abs(count / sum(ops.values()) - 1 / 7) < 0.02 for count in ops.values())  # 4800 edges
    assert len(node5_inputs) == 10 and max(node5_inputs.values()) < 2 * min(node5_inputs.values())  # 5 choose 2


def test_random_cells_command_writes_cells_the_retrain_reads_and_keeps_another_seeds(tmp_path):
    from cifar_automl import random_cells, retrain
    assert random_cells.main(['--number', '2', '--seed', '3', '--output_dir', str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ['random_0.json', 'random_0.png', 'random_1.json',
                                                          'random_1.png']
    expected = random_cells.random_cells(2, 3)
    for k in (0, 1):
        assert load_arch(tmp_path / f'random_{k}.json') == expected[k]
        assert retrain.main(['--arch', str(tmp_path / f'random_{k}.json'), '--width', '4', '--num_cells', '3',
                             '--print_arch']) == 0
    assert random_cells.main(['--number', '2', '--seed', '3', '--output_dir', str(tmp_path)]) == 0  # the same again
    result = subprocess.run([sys.executable, str(REPO / 'nas' / 'random_cells.py'), '--number', '1', '--seed', '4',
                             '--output_dir', str(tmp_path)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2
    assert 'random_0.json holds another cell than --seed 4 gives' in result.stderr
    assert load_arch(tmp_path / 'random_0.json') == expected[0]
