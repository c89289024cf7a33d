"""Random cells from the DARTS search space, the baseline a searched cell must beat:
`python nas/random_cells.py --number 8 --seed 0 --output_dir cells/`.

Li & Talwalkar 2019 ("Random Search and Reproducibility for NAS", https://arxiv.org/abs/1902.07638)
and Yang et al. 2020 ("NAS evaluation is frustratingly hard", https://arxiv.org/abs/1912.12522) found
random cells of this space, trained the same way, within a fraction of a point of searched ones.

The space is the one the search exports from (NNI 3.0's DARTS space, as arch_files reads it): in each
of the normal and the reduction cell, each node 2..5 takes two distinct inputs among the cell's
inputs 0, 1 and the nodes before it, and one op for each among the 7 ops other than the zero op,
all uniformly (Li & Talwalkar's sampler). NNI's fixed space would also let a node take the same input
twice; DARTS's export never does, so neither does this. Cell K is written as random_K.json (K from 0),
NNI's 32-key dict, which retrain/retrain.py --arch and trial/main.py --model darts:PATH read, with a
drawing random_K.png. One seed gives the same cells, and the first N of a larger number are the same N.
"""
import dataclasses
import json
import random
from pathlib import Path

from . import config
from .arch_files import CELL_TYPES, NODES, PRIMITIVES, canonical, load_arch
from .config import ConfigError, Option
from .files import atomic_write_json
from .training import log

OPTIONS = {
    'number': Option(8, 'how many cells to write (random_0.json .. random_<number-1>.json)', low=1, high=10000),
    'seed': Option(0, 'random seed: the same seed gives the same cells', low=0),
    'output_dir': Option('', 'where the cells go (required); a cell already there must be the one this seed gives'),
}
RandomCellsConfig = dataclasses.make_dataclass(
    'RandomCellsConfig', [(name, opt.type, dataclasses.field(default=opt.default)) for name, opt in OPTIONS.items()])
PREFIX = 'random_'


def sample_cell(rng):
    """One architecture, canonical (arch_files.canonical): two distinct inputs and two ops per node."""
    cells = {}
    for cell in CELL_TYPES:
        for node in NODES:
            inputs = rng.sample(range(node), 2)
            cells[cell, node] = [(rng.choice(PRIMITIVES), index) for index in inputs]
    return canonical(cells)


def random_cells(number, seed):
    rng = random.Random(seed)
    return [sample_cell(rng) for _ in range(number)]


def main(argv=None):
    return config.exit_status(lambda: run(resolve(argv)))


def resolve(argv=None):
    cfg = RandomCellsConfig(**config.parse_flags(__doc__.split('\n\n')[0].replace('\n', ' '), OPTIONS, argv))
    if not cfg.output_dir:
        raise ConfigError('--output_dir: where should the cells go? (e.g. --output_dir cells)')
    return cfg


def run(cfg):
    from .cell_plot import plot_cells
    output_dir = Path(cfg.output_dir)
    cells = random_cells(cfg.number, cfg.seed)
    for k, arch in enumerate(cells):  # checked first, so that nothing is written over another seed's cells
        path = output_dir / f'{PREFIX}{k}.json'
        if path.is_file() and load_arch(path) != arch:
            raise ConfigError(f'{path} holds another cell than --seed {cfg.seed} gives; choose another --output_dir')
    for k, arch in enumerate(cells):
        path = output_dir / f'{PREFIX}{k}.json'
        atomic_write_json(json.loads(json.dumps(arch, sort_keys=True)), path)
        plot_cells(arch, path.with_suffix('.png'), f'{PREFIX}{k} (seed {cfg.seed})')
    log(f'wrote {cfg.number} random cells (seed {cfg.seed}) to {output_dir}: {PREFIX}0.json .. '
        f'{PREFIX}{cfg.number - 1}.json, each with a drawing (.png)')
    return 0
