"""Many searches in one table: `python -m cifar_automl.search_summary DIR... --out PREFIX`.

Each DIR is a `nas/search_darts.py --output_dir`. Searches that differ only in --seed are one
configuration: its rows give every seed and, for NAS-Bench-201 searches, the mean, the lowest
and the highest CIFAR-10 table accuracy of the cells they exported last, with the search's wall
time (the sum of its epochs). For nb201 the table also says what the last epoch's architecture
weights would have exported under each --max_skip: the cap acts at export only, so every search
answers for every cap. A search with --select perturbation is scored by the cell it selected
(selection.json), its verdict 'selected'; a --select_from run's time is its supernet's training and
its own selection. Writes PREFIX.md and PREFIX.csv.
"""
import argparse
import csv
import json
import statistics
from pathlib import Path

from . import config, darts_search, space_nb201
from .config import ConfigError
from .files import atomic_write_text

# The settings that tell two configurations apart in the table, beside the space and the strategy.
SHOWN = ('subset', 'width', 'cells', 'epochs', 'batch_size', 'arch_lr', 'arch_warmup', 'beta_decay', 'aux_skip',
         'aux_skip_epochs', 'export_none', 'max_skip', 'select', 'select_tune_epochs', 'select_once',
         'select_images')
CAPS = (-1, 0, 1, 2)


def read_search(folder):
    folder = Path(folder)
    for needed in (darts_search.CONFIG_FILE, darts_search.EPOCHS_CSV):
        if not (folder / needed).is_file():
            raise ConfigError(f'{folder / needed} is missing: {folder} is not a search written by nas/search_darts.py')
    cfg = json.loads((folder / darts_search.CONFIG_FILE).read_text())
    cfg.setdefault('export_none', True)  # a search made before --export_none existed exported it, as NNI does
    with open(folder / darts_search.EPOCHS_CSV, newline='') as f:
        rows = list(csv.DictReader(f))
    last = rows[-1]
    search = {'folder': str(folder), 'config': cfg, 'epochs_done': len(rows),
              'minutes': sum(float(row['seconds']) for row in rows) / 60, 'verdict': last['verdict']}
    selection = folder / darts_search.SELECTION_FILE
    if cfg.get('select') == 'perturbation' and selection.is_file():
        # The cell DARTS-PT selected after the last epoch; the selection's time counts in the search's.
        selected = json.loads(selection.read_text())
        search['minutes'] += selected['seconds'] / 60
        search['verdict'] = 'selected'
        search['cifar10'] = space_nb201.scores(selected['cell'])['cifar10']
    elif cfg.get('space') == 'nb201':
        search['cifar10'] = float(last['cifar10'])
        probs = json.loads((folder / f'epoch_{int(last["epoch"])}_probs.json').read_text())
        search['caps'] = {cap: space_nb201.scores(export(probs, cap, cfg['export_none']))['cifar10'] for cap in CAPS}
    return search


def export(probs, max_skip, export_none):
    """What an nb201 search exports from these edge softmaxes under --max_skip (-1: no cap)."""
    arch = space_nb201.discretize(None, probs, argparse.Namespace(export_none=export_none))
    if max_skip < 0:
        return arch
    return darts_search.cap_skips(arch, probs, max_skip, space_nb201.skip_edges(arch))[0]


def configuration(search):
    """The search's settings as the table shows them; a setting its config lacks (a search made
    before the option existed) had its default."""
    cfg = {name: option.default for name, option in darts_search.OPTIONS.items()} | search['config']
    cfg['cells'] = cfg['num_cells'] if cfg['space'] == 'darts' else f'3x{cfg["stage_cells"]}'
    return (cfg['space'], cfg['strategy'], *(cfg[name] for name in SHOWN))


def summarise(searches):
    """[row per configuration]: its settings, seeds and the statistics over them."""
    groups = {}
    for search in searches:
        groups.setdefault(configuration(search), []).append(search)
    rows = []
    for key, members in groups.items():
        members.sort(key=lambda s: s['config']['seed'])
        row = dict(zip(('space', 'strategy', *SHOWN), key))
        row['seeds'] = ' '.join(str(s['config']['seed']) for s in members)
        row['epochs run'] = ' '.join(str(s['epochs_done']) for s in members)  # fewer: stopped or still running
        row['minutes'] = ' '.join(f'{s["minutes"]:.0f}' for s in members)
        row['verdicts'] = ' '.join(s['verdict'] for s in members)
        if 'cifar10' in members[0]:
            finals = [s['cifar10'] for s in members]
            row['cifar10'] = ' '.join(f'{v:.2f}' for v in finals)
            row['mean'] = round(statistics.mean(finals), 2)
            row['min'] = min(finals)
            for cap in CAPS:  # argmax exports only: a cap does not apply to a selection by perturbation
                row[f'max_skip {cap}'] = (round(statistics.mean(s['caps'][cap] for s in members), 2)
                                          if 'caps' in members[0] else None)
        rows.append(row)
    return rows


def markdown(rows):
    columns = list(rows[0])
    lines = ['| ' + ' | '.join(columns) + ' |', '|' + '---|' * len(columns)]
    lines += ['| ' + ' | '.join('' if row.get(c) is None else str(row.get(c)) for c in columns) + ' |' for row in rows]
    return '\n'.join(lines) + '\n'


def main(argv=None):
    parser = config.ArgumentParser(description=__doc__.split('\n\n')[0],
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('searches', nargs='+', help='search output directories')
    parser.add_argument('--out', required=True, help='writes OUT.md and OUT.csv')
    args = parser.parse_args(argv)

    def run():
        rows = summarise([read_search(folder) for folder in args.searches])
        columns = {column: None for row in rows for column in row}
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(markdown([{c: row.get(c) for c in columns} for row in rows]), out.with_suffix('.md'))
        with open(out.with_suffix('.csv'), 'w', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=list(columns))
            writer.writeheader()
            writer.writerows(rows)
        print(markdown(rows), end='')
        return 0
    return config.exit_status(run)


if __name__ == '__main__':
    raise SystemExit(main())
