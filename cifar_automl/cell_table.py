"""Does the searched cell beat random cells? Retrain a list of cells at one budget and tabulate:

    python nas/cell_table.py --cells outputs/darts/final.json cells/random_*.json DARTS_V2 --seeds 0 1 \
        --table docs/results/nas_table -- --data_dir data

Every cell is retrained by retrain/retrain.py (the same network, recipe and loop) at the same budget,
CELL_BUDGET below unless flags after `--` change it, with each seed of --seeds; one run after
another, each in OUT/<cell>/seed_<s>, seed 0 of every cell before seed 1 of any, so that a partial
table already compares every cell. A finished run (metrics.json) is not run again and a killed one
continues from its last epoch (retrain --resume): rerunning the command continues the table. A
finished run trained at another budget is refused, never mixed in. After each run the table is
rewritten: TABLE.md and TABLE.csv, a row per cell (its parameters, the test accuracy of each seed,
their mean and standard deviation), then random cells' mean ± std over cells (of each cell's mean
over seeds), the best random cell, and each other cell against "random mean + 1 std".

A cell's role comes from its name: DARTS_V1 or DARTS_V2 is published, a file named random_K.json
(nas/random_cells.py) is random, any other file is searched. A cell's name is its file's stem.
"""
import argparse
import csv
import dataclasses
import io
import json
import math
import statistics
from pathlib import Path

from . import retrain
from .arch_files import PUBLISHED, load_arch
from .config import ArgumentParser, ConfigError, exit_status
from .files import atomic_write_text
from .random_cells import PREFIX as RANDOM_PREFIX
from .training import log

# The search's own supernet size (--preset cifar_cpu: 8 channels, 5 cells), 5 epochs of 5,000 images, 2,000 held
# out to pick the epoch. Timed here on one thread (a second job on the other core): a run took 4-5.5 minutes and
# seed 0 of 10 cells 56 minutes, so 20 runs (10 cells, 2 seeds) take about 2 hours; at about 80 img/s, 8 epochs
# of 10,000 images would have taken 5 hours, and the paper's search size (16 channels, 8 cells) 13. A
# low-fidelity ranking, the price of a CPU (docs/darts.md). The rest is the paper's retrain recipe
# (retrain.PAPER_DEFAULTS); test-time augmentation, which would add minutes, is off.
CELL_BUDGET = dict(width=8, num_cells=5, epochs=5, subset=5000, val_size=2000, tta=0)
SET_BY_THE_TABLE = ('arch', 'seed', 'output_dir', 'resume')


def build_parser():
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--cells', nargs='+', required=True, metavar='CELL',
                        help='architecture files (any format retrain/retrain.py --arch reads) or published cells')
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1], metavar='SEED',
                        help='seeds of every cell (default: 0 1)')
    parser.add_argument('--out', default='runs/cell_table', help='a directory per run (default: runs/cell_table)')
    parser.add_argument('--table', default='', help='the table\'s path without suffix, written as .md and .csv '
                                                    '(default: OUT/table)')
    parser.add_argument('retrain_flags', nargs='*', help='after --: retrain/retrain.py flags for every run, over '
                        f'the table\'s budget ({" ".join(f"--{k} {v}" for k, v in CELL_BUDGET.items())})')
    return parser


@dataclasses.dataclass
class Cell:
    name: str
    role: str  # 'searched', 'random' or 'published'
    source: str  # what --arch gets


def cell_of(source):
    path = Path(source)
    if not path.is_file() and source.upper() in PUBLISHED:
        return Cell(source.upper(), 'published', source)
    load_arch(source)  # a bad file is refused now, before any run
    return Cell(path.stem, 'random' if path.stem.startswith(RANDOM_PREFIX) else 'searched', source)


def budget_flags(retrain_flags):
    for flag in retrain_flags:
        if flag.startswith('--') and flag[2:].split('=')[0] in SET_BY_THE_TABLE:
            raise ConfigError(f'{flag} after --: the table sets it (--cells, --seeds, --out)')
    return [arg for name, value in CELL_BUDGET.items() for arg in (f'--{name}', str(value))] + list(retrain_flags)


def plan(args):
    """[(cell, seed, run dir, retrain argv)], seed-major; every argv checked by the retrain's own parser."""
    cells = [cell_of(source) for source in args.cells]
    names = [cell.name for cell in cells]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f'--cells: two cells are named {name!r} (a cell is named by its file\'s stem); '
                              f'rename one file')
    flags = budget_flags(args.retrain_flags)
    runs = []
    for seed in args.seeds:
        for cell in cells:
            run_dir = Path(args.out) / cell.name / f'seed_{seed}'
            argv = flags + ['--arch', cell.source, '--seed', str(seed), '--output_dir', str(run_dir)]
            cfg, _ = retrain.resolve(argv)
            check_finished_run(run_dir, cfg)
            runs.append((cell, seed, run_dir, argv))
    return cells, runs


def describe_budget(argv):
    """The retrain flags every run shares, each once, as they took effect."""
    cfg, given = retrain.resolve(argv)
    return ' '.join(f'--{name} {getattr(cfg, name)}' for name in retrain.OPTIONS
                    if name in given and name not in SET_BY_THE_TABLE)


def check_finished_run(run_dir, cfg):
    """A finished run counts only if it trained what this budget would: the same cell and settings."""
    metrics_path = run_dir / 'metrics.json'
    if not metrics_path.is_file():
        return
    metrics = json.loads(metrics_path.read_text())
    if metrics['arch'] != load_arch(cfg.arch):
        raise ConfigError(f'{run_dir} holds a run of another cell than {cfg.arch}; use another --out')
    now = dataclasses.asdict(cfg)
    for name, value in metrics['config'].items():
        if name not in retrain.RESUME_MAY_CHANGE and name != 'arch' and now.get(name, value) != value:
            raise ConfigError(f'{run_dir} was trained with {name}={value!r}, this table asks for {now[name]!r}; '
                              f'use another --out, or the same flags')


def main(argv=None):
    args = build_parser().parse_args(argv)
    return exit_status(lambda: run(args))


def run(args):
    cells, runs = plan(args)
    budget = describe_budget(runs[0][3])
    table = Path(args.table) if args.table else Path(args.out) / 'table'
    for i, (cell, seed, run_dir, argv) in enumerate(runs):
        label = f'run {i + 1}/{len(runs)}: {cell.name} seed {seed}'
        if (run_dir / 'metrics.json').is_file():
            log(f'{label}: done before ({run_dir / "metrics.json"})')
            continue
        resume = (run_dir / retrain.LAST_CHECKPOINT).is_file()
        log(f'{label}: {"continuing" if resume else "training"} in {run_dir}')
        status = retrain.main(argv + ['--resume'] * resume)
        if status:
            return status
        write_table(cells, args.seeds, args.out, table, budget)
    write_table(cells, args.seeds, args.out, table, budget)
    log(f'wrote {table}.md and {table}.csv')
    return 0


# ============================================================ The table

def cell_results(cell, seeds, out):
    """{'params', 'accs': {seed: test acc}, 'mean', 'std'} over the finished runs of one cell."""
    accs, params = {}, None
    for seed in seeds:
        path = Path(out) / cell.name / f'seed_{seed}' / 'metrics.json'
        if path.is_file():
            metrics = json.loads(path.read_text())
            accs[seed], params = metrics['test_acc'], metrics['parameters']
    values = list(accs.values())
    return {'params': params, 'accs': accs, 'mean': statistics.mean(values) if values else math.nan,
            'std': statistics.stdev(values) if len(values) > 1 else math.nan}


def mean_std(mean, std):
    if math.isnan(mean):
        return 'not run'
    return f'{mean:.2f}' if math.isnan(std) else f'{mean:.2f} ± {std:.2f}'


def write_table(cells, seeds, out, table, budget):
    results = {cell.name: cell_results(cell, seeds, out) for cell in cells}
    lines = [f'Test accuracy (%) of each cell retrained by `retrain/retrain.py --arch CELL --seed SEED {budget}` '
             '(the DARTS paper\'s retrain recipe otherwise, retrain/retrain.py --help), '
             f'seeds {", ".join(map(str, seeds))}; mean ± standard deviation over seeds.', '',
             '| cell | role | parameters | ' + ' | '.join(f'seed {s}' for s in seeds) + ' | mean ± std |',
             '|---|---|---|' + '---|' * len(seeds) + '---|']
    for cell in cells:
        r = results[cell.name]
        params = retrain.format_count(r['params']) if r['params'] else ''
        accs = ' | '.join(f'{r["accs"][s]:.2f}' if s in r['accs'] else '' for s in seeds)
        lines.append(f'| {cell.name} | {cell.role} | {params} | {accs} | {mean_std(r["mean"], r["std"])} |')
    lines += [''] + summary(cells, results)
    atomic_write_text('\n'.join(lines) + '\n', f'{table}.md')
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator='\n')
    writer.writerow(['cell', 'role', 'parameters', *(f'test_acc_seed_{s}' for s in seeds), 'test_acc_mean',
                     'test_acc_std'])
    for cell in cells:
        r = results[cell.name]
        writer.writerow([cell.name, cell.role, r['params'] or '', *(r['accs'].get(s, '') for s in seeds),
                         '' if math.isnan(r['mean']) else f'{r["mean"]:.4f}',
                         '' if math.isnan(r['std']) else f'{r["std"]:.4f}'])
    atomic_write_text(buffer.getvalue(), f'{table}.csv')


def summary(cells, results):
    """Random mean ± std over the random cells' means, the best random cell, and every other cell against
    the issue's bar: random mean + 1 std."""
    randoms = [(results[c.name]['mean'], c.name) for c in cells if c.role == 'random'
               and not math.isnan(results[c.name]['mean'])]
    if len(randoms) < 2:
        return [f'{len(randoms)} random cell(s) finished: no random mean ± std yet.']
    means = [mean for mean, _ in randoms]
    bar = statistics.mean(means) + statistics.stdev(means)
    best_mean, best_name = max(randoms)
    lines = [f'- random cells ({len(randoms)}): {statistics.mean(means):.2f} ± {statistics.stdev(means):.2f} '
             f'(std over cells); random mean + 1 std = {bar:.2f}',
             f'- best random cell: {best_name}, {best_mean:.2f}']
    for cell in cells:
        r = results[cell.name]
        if cell.role != 'random' and not math.isnan(r['mean']):
            verdict = 'reaches' if r['mean'] >= bar else 'does not reach'
            lines.append(f'- {cell.name} ({cell.role}): {mean_std(r["mean"], r["std"])}, {verdict} random mean + 1 std '
                         f'({r["mean"] - bar:+.2f})')
    return lines
