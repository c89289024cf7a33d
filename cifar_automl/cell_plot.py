"""Draw a DARTS architecture (NNI 3.0's exported dict) as one PNG: the normal cell beside the
reduction cell.

Each cell has two inputs, 0: c_{k-2} and 1: c_{k-1} (the outputs of the two previous cells),
four nodes 2..5, each the sum of two edges labelled with their op, and the output c_{k}, the
concatenation of the four nodes. The numbers are those of the JSON keys (`normal/op_3_1` is the
op of node 3's second edge), so that the drawing and the file read side by side.
"""
import os
import matplotlib

matplotlib.use('Agg')  # files only: no display on servers and in tests
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import FancyArrowPatch  # noqa: E402
from matplotlib.path import Path  # noqa: E402

from .arch_files import CELL_TYPES, NODES, to_genotype  # noqa: E402
INPUT_NAMES = ('c_{k-2}', 'c_{k-1}')

# Colours of the node kinds, as in the DARTS paper's figures.
INPUT_COLOUR, NODE_COLOUR, OUTPUT_COLOUR = '#a6d96a', '#abd9e9', '#fdae61'


def cell_edges(arch, cell):
    """[(from_node, to_node, op)] of one cell: two edges into each of the nodes 2..5."""
    ops_and_inputs = getattr(to_genotype(arch), cell)  # node 2's two edges, then node 3's, ...
    return [(source, NODES[i // 2], op) for i, (op, source) in enumerate(ops_and_inputs)]


# Every node sits on one line, left to right in the order the cell computes them: the inputs,
# the four nodes, then the output. Each edge is an arc above the line whose height grows with
# its span, so that no two arcs share a label position (the DARTS code draws the same graph
# with graphviz, which this repository does not need).
POSITIONS = {0: 0.0, 1: 1.4, 2: 2.6, 3: 3.8, 4: 5.0, 5: 6.2, 'out': 7.6}
ARC_HEIGHT = 0.36  # per unit of span
CONCAT_DEPTH = 0.2


def node_label(node):
    if node == 'out':
        return '$c_{k}$'
    if node in (0, 1):
        return f'{node}: ${INPUT_NAMES[node]}$'
    return str(node)


def arc(x0, x1, height, points=40):
    """Half an ellipse from (x0, 0) to (x1, 0) reaching `height` (negative: below the line)."""
    t = np.linspace(0, np.pi, points)
    return np.column_stack([x0 + (x1 - x0) * (1 - np.cos(t)) / 2, height * np.sin(t)])


def draw_arc(ax, x0, x1, height, colour, linestyle='-'):
    arrow = FancyArrowPatch(path=Path(arc(x0, x1, height)), arrowstyle='-|>', mutation_scale=11,
                            shrinkA=12, shrinkB=12, color=colour, linewidth=1.1, linestyle=linestyle, zorder=1)
    ax.add_patch(arrow)


def draw_dag(ax, edges, positions, labels, title, skip_op=None, input_nodes=(0,), output_node=None, bottom=-0.4):
    """A cell's graph: `edges` [(source, target, op)] as arcs over the nodes, which sit on one line at
    `positions` {node: x} with `labels` {node: text}. An edge whose op is `skip_op` (the zero op of a
    space that can choose it) is drawn grey and dashed: it carries nothing. `bottom`: the lowest y shown."""
    output_node = max(positions, key=positions.get) if output_node is None else output_node
    for source, target, op in edges:
        x0, x1 = positions[source], positions[target]
        height = ARC_HEIGHT * (x1 - x0)
        zero = op == skip_op
        draw_arc(ax, x0, x1, height, '#aaaaaa' if zero else 'black', '--' if zero else '-')
        ax.text((x0 + x1) / 2, height, op, ha='center', va='center', fontsize=8, zorder=2,
                color='#888888' if zero else 'black',
                bbox=dict(boxstyle='round,pad=0.15', facecolor='white', edgecolor='none'))
    for node, x in positions.items():
        colour = INPUT_COLOUR if node in input_nodes else OUTPUT_COLOUR if node == output_node else NODE_COLOUR
        ax.text(x, 0, labels[node], ha='center', va='center', fontsize=11, zorder=3,
                bbox=dict(boxstyle='round,pad=0.4', facecolor=colour, edgecolor='black'))
    ax.set_title(title, fontsize=12)
    span = max(positions.values()) - min(positions.values())
    ax.set_xlim(min(positions.values()) - 0.6, max(positions.values()) + 0.6)
    ax.set_ylim(bottom, ARC_HEIGHT * span + 0.4)
    ax.axis('off')


def draw_cell(ax, arch, cell, title):
    for node in NODES:  # the output concatenates every node
        x0 = POSITIONS[node]
        draw_arc(ax, x0, POSITIONS['out'], -CONCAT_DEPTH * (POSITIONS['out'] - x0), '#999999')
    draw_dag(ax, cell_edges(arch, cell), POSITIONS, {node: node_label(node) for node in POSITIONS}, title,
             input_nodes=(0, 1), output_node='out', bottom=-CONCAT_DEPTH * (POSITIONS['out'] - POSITIONS[2]) - 0.3)


def save_figure(fig, path, dpi=90):
    """Written beside the target and renamed over it, so that a viewer never opens half a PNG."""
    fig.tight_layout()
    partial = os.path.join(os.path.dirname(path) or '.', f'.{os.path.basename(path)}.partial')
    fig.savefig(partial, dpi=dpi, format='png')
    plt.close(fig)
    os.replace(partial, path)


def plot_cells(arch, path, title=''):
    """Write the normal and the reduction cell of `arch` side by side to the PNG `path`."""
    fig, axes = plt.subplots(1, 2, figsize=(16, 4.6))
    for ax, cell in zip(axes, CELL_TYPES):
        draw_cell(ax, arch, cell, f'{cell} cell')
    if title:
        fig.suptitle(title, fontsize=13)
    save_figure(fig, path)
