"""The NAS-Bench-201 space (Dong & Yang 2020, https://arxiv.org/abs/2001.00326), as NNI 3.0 builds
it (`nni.nas.hub.pytorch.NasBench201`), with every cell looked up in the benchmark's table.

A cell has four nodes, 0 (its input) to 3 (its output), and an edge from every node to every later
one: six edges, each one of five ops, so 15,625 cells. The network stacks the one searched cell
(3 stages of `stage_cells` cells, ResNet blocks between the stages). The benchmark trained every
cell for 200 epochs on CIFAR-10, CIFAR-100 and ImageNet16-120, so a searched cell's accuracy is
read, not trained.

An architecture is plain data, NNI's export: {'cell/0_1': 'conv_3x3', ..., 'cell/2_3': 'none'},
the key naming the edge from node 0 to node 1. The benchmark writes the same cell as a string,
'|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|',
node 1's edge, then node 2's, then node 3's, each 'op~source'.
"""
import json

from . import tables
from .errors import ConfigError
from .files import atomic_write_json

NAME = 'nb201'
TITLE = 'NAS-Bench-201'  # how the log names the space
LABEL = 'cell'  # NNI's label scope: every cell of the network shares its six choices
# The edges in the benchmark's string order, which is also the table's parameters Op0..Op5.
EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
NNI_OPS = ('none', 'skip_connect', 'conv_1x1', 'conv_3x3', 'avg_pool_3x3')
BENCHMARK_OPS = dict(zip(NNI_OPS, ('none', 'skip_connect', 'nor_conv_1x1', 'nor_conv_3x3', 'avg_pool_3x3')))
SKIP = 'skip_connect'
# The benchmark's datasets and the tables that hold them.
TABLES = {'cifar10': 'nb201/cifar10', 'cifar100': 'nb201/cifar100', 'imagenet16-120': 'nb201/imagenet'}


def edge_key(source, target):
    return f'{LABEL}/{source}_{target}'


KEYS = tuple(edge_key(*edge) for edge in EDGES)


def check(arch, source):
    """Raise ConfigError unless `arch` is a whole NAS-Bench-201 cell in NNI's form."""
    if not isinstance(arch, dict) or set(arch) != set(KEYS):
        keys = sorted(arch) if isinstance(arch, dict) else type(arch).__name__
        raise ConfigError(f'{source}: a NAS-Bench-201 cell has the keys {", ".join(KEYS)}; got {keys}')
    for key in KEYS:
        if arch[key] not in NNI_OPS:
            raise ConfigError(f'{source}: {key} is {arch[key]!r}; it takes one of {", ".join(NNI_OPS)}')
    return arch


def to_string(arch):
    """The benchmark's string of a cell."""
    nodes = []
    for target in (1, 2, 3):
        nodes.append('|'.join(f'{BENCHMARK_OPS[arch[edge_key(source, target)]]}~{source}'
                              for source in range(target)))
    return '+'.join(f'|{node}|' for node in nodes)


def from_string(text):
    """A cell from the benchmark's string; ConfigError if it is not one."""
    from_benchmark = {name: op for op, name in BENCHMARK_OPS.items()}
    arch = {}
    for target, node in enumerate(text.strip().split('+'), start=1):
        for edge in filter(None, node.split('|')):
            name, _, source = edge.partition('~')
            if name not in from_benchmark or not source.isdigit():
                raise ConfigError(f'{text!r}: {edge!r} is not "op~source" with an op among '
                                  f'{", ".join(from_benchmark)}')
            arch[edge_key(int(source), target)] = from_benchmark[name]
    return check(arch, repr(text))


def table_params(arch):
    """The cell as the table's parameters {'Op0': 'nor_conv_3x3', ...}."""
    return {f'Op{i}': BENCHMARK_OPS[arch[key]] for i, key in enumerate(KEYS)}


def from_table_params(params):
    from_benchmark = {name: op for op, name in BENCHMARK_OPS.items()}
    return {key: from_benchmark[params[f'Op{i}']] for i, key in enumerate(KEYS)}


def scores(arch):
    """The cell's benchmark figures: for each dataset, its validation accuracy after 200 epochs
    (mean over the benchmark's seeds) and its rank among the 15,625 cells (1 is the best)."""
    params = table_params(arch)
    result = {}
    for dataset, name in TABLES.items():
        table = tables.load(name)
        result[dataset] = round(table.true_value(params), 2)
        result[f'{dataset}_rank'] = table.rank(params)
    return result


def describe_scores(score):
    """'CIFAR-10 91.61% (rank 1 of 15625), CIFAR-100 72.75% (rank 31), ImageNet16-120 45.56% (rank 37)'."""
    size = tables.load(TABLES['cifar10']).size
    names = {'cifar10': 'CIFAR-10', 'cifar100': 'CIFAR-100', 'imagenet16-120': 'ImageNet16-120'}
    parts = [f'{names[dataset]} {score[dataset]:.2f}% (rank {score[f"{dataset}_rank"]}'
             + (f' of {size})' if i == 0 else ')') for i, dataset in enumerate(TABLES)]
    return ', '.join(parts)


# ============================================================ The one-shot search's side

def build(cfg, num_classes):
    """NNI's NAS-Bench-201 network: stem width cfg.width, cfg.stage_cells cells a stage."""
    from nni.nas.hub.pytorch import NasBench201
    return NasBench201(stem_out_channels=cfg.width, num_modules_per_stack=cfg.stage_cells, num_labels=num_classes)


def edge_softmax(oneshot_module):
    """{'cell/0_1': {op: probability}, ...}: the softmax of each edge's architecture weights. The
    network's cells share one weight vector per edge, so each edge is read once."""
    import torch
    probs = {}
    for module in oneshot_module.supernet_modules():
        alpha = getattr(module, '_arch_alpha', None)
        if isinstance(alpha, torch.nn.Parameter) and module.label in KEYS:
            probs[module.label] = dict(zip(module.names, torch.softmax(alpha.detach().float(), -1).tolist()))
    return dict(sorted(probs.items()))


def discretize(nni_export, probs, cfg):
    """The searched cell: each edge's op of highest softmax weight (NNI's export), not counting the
    zero op unless cfg.export_none. DARTS keeps an edge's strongest op among the non-zero ones (Liu et
    al. 2019, sec. 2.4): the zero op's weight says how much an edge matters, and a short search on a
    small supernet often lets it lead on an input edge, which disconnects the cell (9.7% in the table)."""
    allowed = NNI_OPS if cfg.export_none else tuple(op for op in NNI_OPS if op != 'none')
    return {edge: max(allowed, key=probs[edge].get) for edge in KEYS}


INPUTS_PER_NODE = 0  # a node sums all of its incoming edges


def node_inputs(edge_labels):
    """No node chooses among its inputs."""
    return {}


def from_edge_ops(edge_ops):
    """The cell is the op of each edge."""
    return edge_ops


def skip_edges(arch):
    """[(arch key, edge_softmax key)] of the cell's skip_connect edges, which --max_skip caps."""
    return [(key, key) for key in KEYS if arch[key] == SKIP]


def skip_counts(arch):
    return {'cell': sum(arch[key] == SKIP for key in KEYS)}


def summary(arch):
    """The lines the search prints for a cell."""
    return [f'cell {to_string(arch)}']


def write(arch, path):
    atomic_write_json(json.loads(json.dumps(arch, sort_keys=True)), path)


def plot(arch, path, title=''):
    """The cell as a drawing: nodes 0..3 on a line, each edge an arc labelled with its op."""
    from .cell_plot import draw_dag, save_figure
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 3.6))
    edges = [(source, target, arch[edge_key(source, target)]) for source, target in EDGES]
    draw_dag(ax, edges, positions={0: 0.0, 1: 1.6, 2: 3.2, 3: 4.8},
             labels={0: 'in', 1: '1', 2: '2', 3: 'out'}, title=title or 'NAS-Bench-201 cell', skip_op='none')
    save_figure(fig, path)
