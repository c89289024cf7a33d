"""DARTS architecture files: every format users have, read into one canonical form.

A DARTS cell (Liu et al. 2019) has inputs 0 and 1 (the outputs of the two previous cells) and
nodes 2..5; each node sums two edges, each an op applied to an earlier node; the cell's output
concatenates the four nodes. There is a normal cell and a reduction cell. Formats read:

- NNI 3.0, as this repository's search writes `epoch_N.json` (and as NNI's
  `export_top_models(formatter='dict')` returns): the canonical form.
      {"normal/op_2_0": "sep_conv_3x3", "normal/input_2_0": [0], ..., "reduce/input_5_1": [1]}
- NNI 1.x/2.0's DARTS example (the `epoch_49.json` course students have): one key per edge
  from node p into node n, whose value is the op (index into PRIMITIVES, name, or a one-hot
  list; [] for an edge not kept), and the node's `switch` listing the edges kept.
      {"normal_n2_p0": 3, "normal_n2_p1": "sepconv3x3", "normal_n2_switch": ["normal_n2_p0", ...], ...}
- A genotype as the DARTS paper's code prints it (`Genotype(normal=[('sep_conv_3x3', 0), ...],
  normal_concat=[2, 3, 4, 5], reduce=[...], reduce_concat=[2, 3, 4, 5])`), read as literals
  (never evaluated), or the same four fields as a JSON object.
- A published cell by name: DARTS_V1, DARTS_V2.

The canonical form is the dict that `nni.nas.space.model_context` freezes NNI's DARTS space
with, each node's two edges in input order so that one cell has one canonical form. Anything
malformed is refused with a ConfigError naming the file, the key and the reason.
"""
import ast
import collections
import json
import re
from pathlib import Path

from .errors import ConfigError

CELL_TYPES = ('normal', 'reduce')
NODES = (2, 3, 4, 5)  # 0 and 1 are the cell's inputs
CONCAT = list(NODES)  # NNI's DARTS network concatenates every node

# The DARTS paper's ops without 'none', in the order of NNI's DARTS.DARTS_OPS: the op indices of
# NNI 1.x/2.0 files index this tuple.
PRIMITIVES = ('max_pool_3x3', 'avg_pool_3x3', 'skip_connect', 'sep_conv_3x3', 'sep_conv_5x5', 'dil_conv_3x3',
              'dil_conv_5x5')
# NNI 2.0's DARTS example named its LayerChoice candidates without underscores.
NNI2_OP_NAMES = dict(zip(('maxpool', 'avgpool', 'skipconnect', 'sepconv3x3', 'sepconv5x5', 'dilconv3x3',
                          'dilconv5x5'), PRIMITIVES))
NOT_KEPT = 'none'  # an edge some exports list with the op 'none'

Genotype = collections.namedtuple('Genotype', 'normal normal_concat reduce reduce_concat')

# Published cells, from the DARTS paper's cnn/genotypes.py.
DARTS_V1 = Genotype(
    normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), ('sep_conv_3x3', 1),
            ('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 2)],
    normal_concat=[2, 3, 4, 5],
    reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0),
            ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('avg_pool_3x3', 0)],
    reduce_concat=[2, 3, 4, 5])
DARTS_V2 = Genotype(
    normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1),
            ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)],
    normal_concat=[2, 3, 4, 5],
    reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1),
            ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)],
    reduce_concat=[2, 3, 4, 5])
PUBLISHED = {'DARTS_V1': DARTS_V1, 'DARTS_V2': DARTS_V2}


def refuse(source, key, reason):
    raise ConfigError(f'{source}: {key}: {reason}')


# ---------------------------------------------------------------- reading

def load_arch(path_or_name):
    """The canonical architecture dict of a file (any format above) or a published cell's name."""
    path = Path(path_or_name)
    if not path.is_file():
        if str(path_or_name).upper() in PUBLISHED:
            return from_genotype(PUBLISHED[str(path_or_name).upper()], str(path_or_name))
        raise ConfigError(f'{path_or_name}: no such architecture file (nor a published cell: '
                          f'{", ".join(PUBLISHED)})')
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f'{path}: cannot read the architecture file ({error})') from None
    return parse_arch(text, str(path))


def parse_arch(text, source):
    """The canonical dict of an architecture file's text; `source` names it in errors."""
    stripped = text.strip()
    if not stripped:
        raise ConfigError(f'{source}: empty architecture file')
    if stripped[0] not in '{[':
        return from_genotype(parse_genotype_text(stripped, source), source)
    try:
        data = json.loads(stripped)
    except json.JSONDecodeError as error:
        raise ConfigError(f'{source}: line {error.lineno} column {error.colno}: bad JSON ({error.msg})') from None
    if not isinstance(data, dict) or not data:
        refuse(source, 'top level', 'expected a JSON object of a DARTS architecture')
    keys = list(data)
    if any('/' in key for key in keys):
        return from_nni3(data, source)
    if any(re.match(r'^(normal|reduce)_n\d+_', key) for key in keys):
        return from_nni1(data, source)
    if set(keys) <= set(Genotype._fields):
        return from_genotype(genotype_from_fields(data, source), source)
    refuse(source, keys[0], 'not a DARTS architecture: expected NNI 3.0 keys (normal/op_2_0, ...), '
                            'NNI 1.x/2.0 keys (normal_n2_p0, ...) or a genotype (normal, normal_concat, ...)')


def from_nni3(data, source):
    """NNI 3.0: `<cell>/op_<node>_<slot>` is the op and `<cell>/input_<node>_<slot>` ([index]) the input
    of each of a node's two edges (slots 0 and 1)."""
    key_pattern = re.compile(r'^(normal|reduce)/(op|input)_(\d+)_(\d+)$')
    found = {}
    for key, value in data.items():
        match = key_pattern.match(key)
        if re.match(r'^(normal|reduce)/\d+_\d+$', key):  # the search's epoch_N_probs.json sits beside epoch_N.json
            refuse(source, key, 'this is a file of edge probabilities (epoch_N_probs.json); the architecture '
                                'is the epoch_N.json beside it')
        if not match:
            refuse(source, key, 'not a key of NNI\'s DARTS cell; expected <cell>/op_<node>_<slot> or '
                                '<cell>/input_<node>_<slot> with cell normal or reduce, node 2..5, slot 0 or 1')
        cell, kind, node, slot = match[1], match[2], int(match[3]), int(match[4])
        check_node(source, key, node)
        if slot > 1:
            refuse(source, key, f'node {node} has more than two inputs; a DARTS node has exactly two (slots 0, 1)')
        if kind == 'input':
            if isinstance(value, list) and len(value) == 1:
                value = value[0]
            if not is_int(value):
                refuse(source, key, f'expected one input index such as [0]; got {value!r}')
        found[cell, node, slot, kind] = value
    cells = {}
    for cell in CELL_TYPES:
        for node in NODES:
            edges = []
            for slot in (0, 1):
                op_key, input_key = f'{cell}/op_{node}_{slot}', f'{cell}/input_{node}_{slot}'
                for kind, key in (('op', op_key), ('input', input_key)):
                    if (cell, node, slot, kind) not in found:
                        refuse(source, key, f'missing; node {node} of the {cell} cell needs two inputs, each '
                                            f'with an op and an input key ({cell}/op_{node}_0, '
                                            f'{cell}/input_{node}_0, {cell}/op_{node}_1, {cell}/input_{node}_1)')
                op = found[cell, node, slot, 'op']
                check_op(source, op_key, op)
                check_input(source, input_key, found[cell, node, slot, 'input'], node)
                edges.append((op, found[cell, node, slot, 'input']))
            cells[cell, node] = edges
    return canonical(cells)


def from_nni1(data, source):
    """NNI 1.x/2.0: `<cell>_n<node>_p<input>` is the op of the edge from <input> into <node>
    ([] if not kept) and `<cell>_n<node>_switch` lists the node's two kept edges."""
    key_pattern = re.compile(r'^(normal|reduce)_n(\d+)_(?:p(\d+)|(switch))$')
    edge_ops, switches = collections.defaultdict(dict), {}
    for key, value in data.items():
        match = key_pattern.match(key)
        if not match:
            refuse(source, key, 'not a key of NNI 1.x/2.0\'s DARTS format; expected <cell>_n<node>_p<input> or '
                                '<cell>_n<node>_switch with cell normal or reduce, node 2..5, input 0..node-1')
        cell, node = match[1], int(match[2])
        check_node(source, key, node)
        if match[4]:
            switches[cell, node] = value
        else:
            check_input(source, key, int(match[3]), node)
            edge_ops[cell, node][int(match[3])] = nni1_op(source, key, value)
    cells = {}
    for cell in CELL_TYPES:
        for node in NODES:
            switch_key = f'{cell}_n{node}_switch'
            if (cell, node) not in edge_ops and (cell, node) not in switches:
                refuse(source, f'{cell}_n{node}', f'node {node} of the {cell} cell is missing; expected '
                                                  f'{cell}_n{node}_p0 .. {cell}_n{node}_p{node - 1} and {switch_key}')
            ops = edge_ops[cell, node]
            if (cell, node) in switches:
                kept = nni1_switch(source, switch_key, switches[cell, node], cell, node)
            else:  # no switch: the edges that have an op are the kept ones
                kept = sorted(i for i, op in ops.items() if op is not None)
            if len(kept) != 2:
                refuse(source, switch_key, f'node {node} keeps {len(kept)} inputs '
                                           f'({", ".join(f"p{i}" for i in kept) or "none"}); '
                                           f'a DARTS node has exactly two')
            for i in kept:
                edge_key = f'{cell}_n{node}_p{i}'
                if ops.get(i) is None:
                    refuse(source, edge_key, f'{switch_key} keeps this edge, but it has no op '
                                             f'({data.get(edge_key, "missing")!r})')
            cells[cell, node] = [(ops[i], i) for i in kept]
    return canonical(cells)


def nni1_op(source, key, value):
    """An edge's op name, or None for an edge not kept."""
    if is_int(value):
        if not 0 <= value < len(PRIMITIVES):
            refuse(source, key, f'op index {value} is out of range; expected 0..{len(PRIMITIVES) - 1} '
                                f'({", ".join(f"{i} {op}" for i, op in enumerate(PRIMITIVES))})')
        return PRIMITIVES[value]
    if isinstance(value, str):
        if value == NOT_KEPT:
            return None
        op = NNI2_OP_NAMES.get(value, value)
        check_op(source, key, op)
        return op
    if isinstance(value, list):  # [] for an edge not kept; NNI 1.x's first exports: a one-hot list
        if all(isinstance(bit, bool) for bit in value) and len(value) in (len(PRIMITIVES), len(PRIMITIVES) + 1):
            chosen = [i for i, bit in enumerate(value) if bit]
            if not chosen or chosen == [len(PRIMITIVES)]:  # nothing, or 'none' listed last
                return None
            if len(chosen) == 1:
                return PRIMITIVES[chosen[0]]
        elif not value:
            return None
    refuse(source, key, f'expected an op (index 0..{len(PRIMITIVES) - 1}, or a name such as sep_conv_3x3), '
                        f'or [] for an edge not kept; got {value!r}')


def nni1_switch(source, key, value, cell, node):
    """The inputs a node keeps: edge keys (["normal_n3_p0", ...]), input indices or a multi-hot list."""
    if not isinstance(value, list):
        refuse(source, key, f'expected the list of kept edges such as ["{cell}_n{node}_p0", "{cell}_n{node}_p1"]; '
                            f'got {value!r}')
    if value and all(isinstance(item, bool) for item in value):
        if len(value) != node:
            refuse(source, key, f'a multi-hot switch of node {node} has {node} entries, got {len(value)}')
        return [i for i, bit in enumerate(value) if bit]
    kept = []
    for item in value:
        if is_int(item):
            index = item
        elif isinstance(item, str) and re.match(rf'^{cell}_n{node}_p\d+$', item):
            index = int(item.rsplit('_p', 1)[1])
        else:
            refuse(source, key, f'{item!r} is not an edge of node {node}; expected {cell}_n{node}_p<input>')
        check_input(source, key, index, node)
        if index in kept:
            refuse(source, key, f'lists input {index} twice')
        kept.append(index)
    return kept


def parse_genotype_text(text, source):
    """`Genotype(normal=[...], normal_concat=..., reduce=[...], reduce_concat=...)`, optionally assigned
    to a name (as in genotypes.py), read with ast literals: nothing in the file is executed."""
    try:
        tree = ast.parse(text, mode='exec')
    except SyntaxError as error:
        raise ConfigError(f'{source}: line {error.lineno}: neither JSON nor a Genotype(...) ({error.msg})') from None
    statement = tree.body[0] if len(tree.body) == 1 else None
    call = statement.value if isinstance(statement, (ast.Expr, ast.Assign)) else None
    function = getattr(call, 'func', None)
    if not isinstance(call, ast.Call) or getattr(function, 'id', getattr(function, 'attr', None)) != 'Genotype':
        refuse(source, 'text', 'expected one Genotype(normal=[...], normal_concat=[...], reduce=[...], '
                               'reduce_concat=[...]) as the DARTS code prints it, or a JSON architecture')
    if len(call.args) > len(Genotype._fields):
        refuse(source, 'Genotype', f'has {len(call.args)} fields; expected {", ".join(Genotype._fields)}')
    fields = dict(zip(Genotype._fields, call.args))
    for keyword in call.keywords:
        fields[keyword.arg] = keyword.value
    values = {}
    for name, node in fields.items():
        if name not in Genotype._fields:
            refuse(source, name, f'unknown genotype field; expected {", ".join(Genotype._fields)}')
        values[name] = genotype_literal(source, name, node)
    return genotype_from_fields(values, source)


def genotype_literal(source, name, node):
    """A literal, or range(a, b) as DARTS' search prints the concat fields."""
    if (isinstance(node, ast.Call) and getattr(node.func, 'id', None) == 'range' and not node.keywords
            and all(isinstance(arg, ast.Constant) and is_int(arg.value) for arg in node.args)):
        return list(range(*(arg.value for arg in node.args)))
    try:
        return ast.literal_eval(node)
    except ValueError:
        refuse(source, name, 'expected a literal list such as [(\'sep_conv_3x3\', 0), ...] or [2, 3, 4, 5]')


def genotype_from_fields(fields, source):
    missing = [name for name in Genotype._fields if name not in fields]
    if missing:
        refuse(source, missing[0], 'missing genotype field')
    return Genotype(**fields)


def from_genotype(genotype, source):
    """DARTS' genotype: per cell, the nodes' edges in order, two per node, each (op, input)."""
    cells = {}
    for cell in CELL_TYPES:
        edges, concat = getattr(genotype, cell), getattr(genotype, f'{cell}_concat')
        if not isinstance(concat, (list, tuple, range)) or list(concat) != CONCAT:
            refuse(source, f'{cell}_concat', f'{concat!r}: NNI\'s DARTS network concatenates every node; '
                                             f'expected {CONCAT}')
        if not isinstance(edges, (list, tuple)) or len(edges) != 2 * len(NODES):
            count = len(edges) if isinstance(edges, (list, tuple)) else 'no'
            refuse(source, cell, f'has {count} edges; a DARTS cell has {2 * len(NODES)}, two for each '
                                 f'of the nodes {NODES[0]}..{NODES[-1]}')
        for i, edge in enumerate(edges):
            node = NODES[i // 2]
            key = f'{cell}[{i}]'
            if not (isinstance(edge, (list, tuple)) and len(edge) == 2 and isinstance(edge[0], str)):
                refuse(source, key, f'expected an (op, input) pair such as (\'sep_conv_3x3\', 0); got {edge!r}')
            check_op(source, key, edge[0])
            check_input(source, key, edge[1], node)
        cells.update({(cell, node): [tuple(e) for e in edges[2 * j:2 * j + 2]] for j, node in enumerate(NODES)})
    return canonical(cells)


# ---------------------------------------------------------------- checks shared by the formats

def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def check_node(source, key, node):
    if node not in NODES:
        refuse(source, key, f'node {node} does not exist; a DARTS cell has nodes {NODES[0]}..{NODES[-1]}')


def check_op(source, key, op):
    if op not in PRIMITIVES:
        refuse(source, key, f'unknown op {op!r}; expected one of {", ".join(PRIMITIVES)}')


def check_input(source, key, index, node):
    if not is_int(index) or not 0 <= index < node:
        refuse(source, key, f'input {index!r} is out of range for node {node}: allowed 0..{node - 1} '
                            f'(0 and 1 are the two previous cells, 2.. the earlier nodes)')


# ---------------------------------------------------------------- the canonical form and its views

def canonical(cells):
    """{(cell, node): [(op, input), (op, input)]} -> NNI 3.0's dict, edges in (input, op) order."""
    arch = {}
    for cell in CELL_TYPES:
        for node in NODES:
            edges = sorted(cells[cell, node], key=lambda edge: (edge[1], PRIMITIVES.index(edge[0])))
            for slot, (op, index) in enumerate(edges):
                arch[f'{cell}/op_{node}_{slot}'] = op
                arch[f'{cell}/input_{node}_{slot}'] = [index]
    return arch


def to_genotype(arch):
    """The canonical dict as the DARTS code's Genotype (prints as the paper's code writes it)."""
    def edges(cell):
        return [(arch[f'{cell}/op_{node}_{slot}'], arch[f'{cell}/input_{node}_{slot}'][0])
                for node in NODES for slot in (0, 1)]
    return Genotype(normal=edges('normal'), normal_concat=CONCAT, reduce=edges('reduce'), reduce_concat=CONCAT)


def describe(arch):
    """A few lines a person reads: each node as the sum of its two edges, then the genotype."""
    genotype = to_genotype(arch)
    lines = []
    for cell in CELL_TYPES:
        lines.append(f'{cell} cell (inputs 0, 1: the two previous cells; output: the nodes '
                     f'{", ".join(map(str, CONCAT))} concatenated)')
        edges = getattr(genotype, cell)
        for j, node in enumerate(NODES):
            lines.append(f'  node {node} = ' + ' + '.join(f'{op}({index})' for op, index in edges[2 * j:2 * j + 2]))
    lines.append(f'genotype: {genotype!r}')
    return '\n'.join(lines)
