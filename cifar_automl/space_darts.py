"""The DARTS space (Liu et al. 2019, https://arxiv.org/abs/1806.09055) as NNI 3.0 builds it
(`nni.nas.hub.pytorch.DARTS`): a normal and a reduction cell, each of inputs 0 and 1 and nodes
2..5, each node the sum of two edges chosen among its predecessors, each edge one of 7 ops.

An architecture is NNI's exported dict, the canonical form of arch_files.py:
{'normal/op_2_0': 'sep_conv_3x3', 'normal/input_2_0': [0], ..., 'reduce/input_5_1': [1]}.
No table holds this space's cells: they are judged by retraining (nas/cell_table.py).
"""
import json

from .files import atomic_write_json

NAME = 'darts'
TITLE = 'DARTS'  # how the log names the space
SKIP = 'skip_connect'


def build(cfg, num_classes):
    from nni.nas.hub.pytorch import DARTS
    return DARTS(width=cfg.width, num_cells=cfg.num_cells, dataset='cifar')


def edge_softmax(oneshot_module):
    """{'normal/3_1': {op: probability}, ...}: the softmax of each edge's architecture weights, the
    cell's zero op included as 'none'. NNI's export_probs leaves 'none' out, and under GumbelDARTS it
    returns a Gumbel-noised sample, not the weights the search has learnt."""
    import torch
    probs = {}
    for module in oneshot_module.supernet_modules():
        # NNI's DifferentiableMixedCell: one weight vector per edge, its op_names then the zero op.
        alphas = getattr(module, '_arch_alpha', None)
        if isinstance(alphas, torch.nn.ParameterDict):
            for edge, alpha in alphas.items():
                weights = torch.softmax(alpha.detach().float(), -1).tolist()
                probs[edge] = dict(zip([*module.op_names, 'none'], weights))
    return dict(sorted(probs.items()))


def discretize(nni_export, probs, cfg):
    """The searched cell: NNI's export (per node, the two strongest edges of their strongest op other
    than the zero op)."""
    return nni_export


INPUTS_PER_NODE = 2  # each node sums two of its incoming edges


def node_inputs(edge_labels):
    """{'normal/3': ['normal/3_0', 'normal/3_1', 'normal/3_2'], ...}: each node's incoming edges, from
    the supernet's edge labels ('<cell>/<node>_<source>', NNI's DifferentiableMixedCell)."""
    nodes = {}
    for label in sorted(edge_labels):
        cell, edge = label.split('/')
        nodes.setdefault(f'{cell}/{edge.split("_")[0]}', []).append(label)
    return nodes


def from_edge_ops(edge_ops):
    """NNI's dict from an op per supernet edge, 'none' on the edges a node does not keep: each node's
    two kept edges, in the order of their source."""
    arch = {}
    for node, labels in node_inputs(edge_ops).items():
        cell, target = node.split('/')
        kept = [label for label in labels if edge_ops[label] != 'none']
        if len(kept) != INPUTS_PER_NODE:
            raise ValueError(f'{node} keeps {len(kept)} edges ({", ".join(kept)}); a DARTS node keeps {INPUTS_PER_NODE}')
        for slot, label in enumerate(kept):
            arch[f'{cell}/op_{target}_{slot}'] = edge_ops[label]
            arch[f'{cell}/input_{target}_{slot}'] = [int(label.rsplit('_', 1)[1])]
    return arch


def skip_edges(arch):
    """[(arch key, edge_softmax key)] of the normal cell's skip_connect edges, which --max_skip caps
    (P-DARTS leaves the reduction cell as searched)."""
    edges = []
    for key, op in arch.items():
        if op == SKIP and key.startswith('normal/op_'):
            node_slot = key.split('_', 1)[1]  # 'normal/op_3_1' -> '3_1'
            source = arch[f'normal/input_{node_slot}'][0]
            edges.append((key, f'normal/{node_slot.split("_")[0]}_{source}'))
    return edges


def skip_count(arch, cell):
    """skip_connect edges of one cell (0..8) of an architecture dict."""
    return sum(op == SKIP for key, op in arch.items() if key.startswith(f'{cell}/op_'))


def skip_counts(arch):
    return {'normal': skip_count(arch, 'normal'), 'reduce': skip_count(arch, 'reduce')}


def cell_summary(arch, cell):
    """'2 <- sep_conv_3x3(0) sep_conv_3x3(1) | 3 <- ...' for the terminal, numbered as the JSON keys:
    0 and 1 are the cell's inputs, 2..5 its nodes."""
    from .cell_plot import NODES, cell_edges
    edges = cell_edges(arch, cell)
    return ' | '.join(f'{node} <- ' + ' '.join(f'{op}({source})' for source, target, op in edges if target == node)
                      for node in NODES)


def summary(arch):
    """The lines the search prints for a cell."""
    return [f'normal {cell_summary(arch, "normal")}', f'reduce {cell_summary(arch, "reduce")}']


def write(arch, path):
    """Pretty JSON with sorted keys, so that two epochs' files diff line by line."""
    atomic_write_json(json.loads(json.dumps(arch, sort_keys=True)), path)


def plot(arch, path, title=''):
    from .cell_plot import plot_cells
    plot_cells(arch, path, title)


def scores(arch):
    """No benchmark table holds this space."""
    return {}
