"""The tuner benchmark: NNI's tuners (and Optuna's TPE, as this repository's NNI tuner) on the 15
tabular benchmarks of cifar_automl/tables.py, driven in-process as NNI's dispatcher drives them.

    python bench/tuners.py                          # every tuner, table and mode: docs/results/tuners
    python bench/tuners.py --tables nb201/cifar10 --tuners TPE Random --repetitions 3 --evaluations 50 --out /tmp/t
    python bench/tuners.py --replot docs/results/tuners --out /tmp/t   # figures and tables from runs.csv

A run is one tuner on one table with one seed for N evaluations, through the calls nnictl's
dispatcher makes (nni/runtime/msg_dispatcher.py): the tuner is built from its config section as
`nni.__main__._create_algo` builds it, gets the table's search space (`update_search_space`),
is asked for parameters (`generate_multiple_parameters` with the ids NNI would give, and the
callback through which Evolution hands out parameters later) and gets each result as the trial's
reported dict (`receive_trial_result`, then `trial_end`). Sequential mode keeps one trial
running (trialConcurrency 1). Batch mode keeps four: the tuner proposes four before any result
and then one more each time the oldest running trial ends, so every proposal is made with three
results still out, as NNI's manager does with trialConcurrency 4 and trials of equal length.

An evaluation returns one seed's value of the configuration (table_trial.evaluate); the
incumbent after n evaluations is the best value observed so far, and its regret is that of its
mean over seeds, the truth. Random search's expected regret is exact (Table.random_search_regret).
"""
import argparse
import csv
import functools
import io
import json
import logging
import os
import random
import re
import shlex
import sys
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from . import table_trial, tables
from .config import ArgumentParser, ConfigError, exit_status

REPO = Path(__file__).resolve().parent.parent

# The tuners, as a config's `tuner:` section names them (optimize_mode and seed are added per run).
# Left out, with the reason, in docs/tuners.md: GridSearch, Batch, GP, Metis, DNGO, PBT, PPO, SMAC,
# BOHB, Hyperband, RegularizedEvolutionTuner, NetworkMorphism.
TUNERS = {
    'TPE': {'name': 'TPE'},
    'TPE_fixed': {'codeDirectory': str(REPO), 'className': 'cifar_automl.nni_tuners.TPE'},  # duplicates drawn at random
    'TPE_legacy': {'name': 'TPE_legacy'},  # hyperopt 0.1.2's TPE, which NNI's own TPE replaced
    'Random': {'name': 'Random'},
    'Anneal': {'name': 'Anneal'},
    # NNI's default population is 32; 10 ranked best at 100 evaluations of 10, 20, 32, 50 (docs/tuners.md).
    'Evolution': {'name': 'Evolution', 'classArgs': {'population_size': 10}},
    'OptunaTPE': {'codeDirectory': str(REPO), 'className': 'cifar_automl.nni_tuners.OptunaTPE'},
    'OptunaTPE_independent': {'codeDirectory': str(REPO), 'className': 'cifar_automl.nni_tuners.OptunaTPE',
                              'classArgs': {'multivariate': False}},
}
SEEDED_BY_ARGUMENT = {'TPE', 'Random'}  # NNI's tuners that take a seed; OptunaTPE takes one too
MODES = {'sequential': 1, 'batch4': 4}  # mode -> trialConcurrency
BUDGETS = (25, 50, 100, 200)  # evaluations at which the ranks are tabulated
KEY_BUDGET = 100  # where the per-table regrets are tabulated (issue 22's criterion)


# ============================================================ One run

def tuner_setup(spec):
    """The config section and search-space encoding of a --tuners entry: a name of TUNERS, then
    any `:key=value` (value as JSON, else text) to set a classArg, or the search space's
    `encoding` (table_trial.ENCODINGS): 'Evolution:population_size=50', 'TPE:encoding=ordinal'."""
    name, *settings = re.split(r':(?=[A-Za-z_]\w*=)', spec)  # a colon inside a JSON value stays
    if name not in TUNERS:
        raise ConfigError(f'--tuners {spec!r}: expected one of {", ".join(TUNERS)}, optionally with :key=value')
    section = {**TUNERS[name], 'classArgs': dict(TUNERS[name].get('classArgs') or {})}
    encoding = table_trial.ENCODING
    for setting in settings:
        key, equals, text = setting.partition('=')
        if not equals or not key:
            raise ConfigError(f'--tuners {spec!r}: {setting!r} is not key=value')
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        if key == 'encoding':
            if value not in table_trial.ENCODINGS:
                raise ConfigError(f'--tuners {spec!r}: encoding {value!r}; expected one of '
                                  f'{", ".join(table_trial.ENCODINGS)}')
            encoding = value
        else:
            section['classArgs'][key] = value
    return section, encoding


def build_tuner(section, maximize, seed):
    """The tuner of a config section, built as the dispatcher builds it, with the run's seed."""
    from nni.__main__ import _create_algo
    class_args = dict(section.get('classArgs') or {}, optimize_mode='maximize' if maximize else 'minimize')
    if section.get('name') in SEEDED_BY_ARGUMENT or 'className' in section:
        class_args['seed'] = seed
    if 'name' in section:  # a builtin: its registry entry, as the custom class NNI would build from it
        class_name, registered_args = registered_tuner(section['name'])
        section = {'codeDirectory': str(REPO), 'className': class_name,
                   'classArgs': {**registered_args, **class_args}}
    else:
        section = {**section, 'classArgs': class_args}
    search_path = list(sys.path)
    try:
        return _create_algo(section, 'tuner')
    finally:  # NNI appends a custom tuner's codeDirectory (None without one) to sys.path at every build
        sys.path[:] = search_path


@functools.lru_cache(maxsize=None)
def registered_tuner(name):
    """NNI's registry entry of a builtin tuner: its class and fixed classArgs (NNI itself parses
    the registry's YAML at every build, 0.05-0.1 s, which would be minutes of the benchmark)."""
    from nni.tools.package_utils.config_manager import get_algo_meta
    meta = get_algo_meta(name)
    if meta is None or meta.algo_type != 'tuner':
        raise ConfigError(f'NNI has no builtin tuner {name!r}')
    return meta.class_name, dict(meta.class_args or {})


def seed_without_argument(tuner, seed):
    """Seed what NNI's Anneal, TPE_legacy and Evolution draw from: they make an unseeded
    np.random.RandomState in update_search_space and have no seed argument."""
    from nni.algorithms.hpo.evolution_tuner import EvolutionTuner
    from nni.algorithms.hpo.hyperopt_tuner import HyperoptTuner
    random.seed(seed)  # Evolution's tournament, shuffle and mutation position
    np.random.seed(seed)  # hyperopt's constant liar, when asked for
    if isinstance(tuner, HyperoptTuner):
        tuner.rval.rstate = np.random.RandomState(seed)
    elif isinstance(tuner, EvolutionTuner):
        tuner.random_state = np.random.RandomState(seed)
        tuner.population = []  # drawn again from the seeded state
        for _ in range(tuner.population_size):
            tuner._random_generate_individual()


def run_tuner(table, section, seed, evaluations, concurrency, encoding=table_trial.ENCODING):
    """One run: the regret of the incumbent after each of `evaluations` evaluations."""
    space = table_trial.search_space(table, encoding)
    tuner = build_tuner(section, table.maximize, seed)
    tuner.update_search_space(space)
    seed_without_argument(tuner, seed)
    running = deque()  # (parameter_id, parameters) in the order the trials started
    next_id = 0

    def request(count):  # MsgDispatcher.handle_request_trial_jobs
        nonlocal next_id
        ids = list(range(next_id, next_id + count))
        next_id += count
        proposed = tuner.generate_multiple_parameters(ids, st_callback=lambda *job: running.append(job))
        running.extend(zip(ids, proposed))

    request(min(concurrency, evaluations))
    regrets = []
    best_observed = best_regret = None
    while len(regrets) < evaluations:
        if not running:
            raise RuntimeError(f'{section}: proposed nothing after {len(regrets)} evaluations of {table.name}')
        parameter_id, parameters = running.popleft()
        result = table_trial.evaluate(table, parameters, space, table_trial.observation_rng(seed, parameter_id))
        tuner.receive_trial_result(parameter_id, parameters, result)
        tuner.trial_end(parameter_id, True)
        if best_observed is None or (result['default'] > best_observed if table.maximize
                                     else result['default'] < best_observed):
            best_observed, best_regret = result['default'], result['regret']
        regrets.append(best_regret)
        if next_id < evaluations:  # the manager asks for a trial each time one ends, up to maxTrialNumber
            request(1)
    return np.array(regrets)


def run_job(job):
    """Every seed of one (mode, tuner, table): regrets (seeds, evaluations) and CPU seconds per run."""
    mode, tuner, name, seeds, evaluations = job
    quiet_nni()
    table = tables.load(name)
    start = time.process_time()
    section, encoding = tuner_setup(tuner)
    regrets = [run_tuner(table, section, seed, evaluations, MODES[mode], encoding) for seed in seeds]
    return job, np.array(regrets), (time.process_time() - start) / len(seeds)


def quiet_nni():
    """NNI's tuners log every proposal (a run's errors still raise)."""
    logging.disable(logging.WARNING)


# ============================================================ The benchmark

def run_benchmark(modes, tuners, names, seeds, evaluations, workers, log=print):
    """{(mode, tuner, table): regrets (seeds, evaluations)}, the jobs spread over `workers` processes."""
    for name in names:
        tables.load(name)  # once, before the workers fork
    jobs = [(mode, tuner, name, tuple(seeds), evaluations) for mode in modes for tuner in tuners for name in names]
    results, start = {}, time.monotonic()
    with ProcessPoolExecutor(workers) as pool:
        futures = [pool.submit(run_job, job) for job in jobs]
        for done, future in enumerate(as_completed(futures), 1):
            job, regrets, seconds = future.result()
            results[job[:3]] = regrets
            log(f'[{done}/{len(jobs)} {time.monotonic() - start:.0f}s] {job[0]} {job[1]} {job[2]}: '
                f'{seconds:.2f} CPU s a run, regret at {evaluations}: {regrets[:, -1].mean():.4g}')
    return {job[:3]: results[job[:3]] for job in jobs}  # in the order asked, not the order finished


# ============================================================ Ranks and tables

@functools.lru_cache(maxsize=None)
def random_search_curve(name, evaluations):
    """Random search's exact expected regret after 1..`evaluations` evaluations of a table."""
    return tables.load(name).random_search_regret(evaluations)


def mean_regrets(results, budget):
    """{(mode, tuner, table): mean regret over seeds after `budget` evaluations}."""
    return {key: float(regrets[:, budget - 1].mean()) for key, regrets in results.items()}


def average_ranks(results, mode, tuners, names, budget):
    """HPOBench's average rank: on each table the tuners are ranked by their mean regret over
    seeds (1 the best, ties share the mean of their ranks), and the ranks averaged over tables."""
    means = mean_regrets(results, budget)
    ranks = {tuner: [] for tuner in tuners}
    for name in names:
        values = np.array([means[mode, tuner, name] for tuner in tuners])
        for tuner, value in zip(tuners, values):
            ranks[tuner].append((values < value).sum() + ((values == value).sum() + 1) / 2)
    return {tuner: float(np.mean(r)) for tuner, r in ranks.items()}


def summary_rows(results):
    """Rows of regret.csv: each (mode, tuner, table, budget), its mean regret and standard error,
    and random search's exact expectation there."""
    rows = []
    for (mode, tuner, name), regrets in results.items():
        exact = random_search_curve(name, regrets.shape[1])
        for budget in budgets(regrets.shape[1]):
            column = regrets[:, budget - 1]
            rows.append({'mode': mode, 'tuner': tuner, 'table': name, 'evaluations': budget,
                         'mean_regret': column.mean(), 'standard_error': column.std(ddof=1) / np.sqrt(len(column))
                         if len(column) > 1 else float('nan'), 'random_search_exact': exact[budget - 1]})
    return rows


def budgets(evaluations):
    """The budgets tabulated for runs of `evaluations`: BUDGETS up to it, and itself."""
    return [b for b in BUDGETS if b < evaluations] + [evaluations]


def keys_of(results, mode=None):
    """The modes, tuners and tables of `results` (those run in `mode`, if given), in first-seen order."""
    keys = [key for key in results if mode in (None, key[0])]
    modes, tuners, names = ({key[i]: None for key in keys} for i in range(3))
    return list(modes), list(tuners), list(names)


def ranks_table(results):
    """The markdown of ranks.md and the rows of ranks.csv: average ranks over all tables at each
    budget, and over each family's tables at KEY_BUDGET."""
    modes, _, names = keys_of(results)
    evaluations = next(iter(results.values())).shape[1]
    repetitions = next(iter(results.values())).shape[0]
    key_budget = min(KEY_BUDGET, evaluations)
    families = {family: [name for name in names if name.startswith(family + '/')] for family in tables.FAMILIES}
    families = {family: found for family, found in families.items() if found}
    lines, rows = [], []
    for mode in modes:
        _, tuners, _ = keys_of(results, mode)
        at = {b: average_ranks(results, mode, tuners, names, b) for b in budgets(evaluations)}
        by_family = {family: average_ranks(results, mode, tuners, found, key_budget)
                     for family, found in families.items()}
        means = mean_regrets(results, key_budget)
        below = {tuner: sum(means[mode, tuner, name] < random_search_curve(name, evaluations)[key_budget - 1]
                            for name in names) for tuner in tuners}
        lines += [f'### {mode} (trialConcurrency {MODES[mode]})', '',
                  '| tuner | ' + ' | '.join(f'rank at {b}' for b in at) + ' | ' +
                  ' | '.join(f'{family} ({len(found)}) at {key_budget}' for family, found in families.items()) +
                  f' | tables below random search at {key_budget} |',
                  '|---|' + '---|' * (len(at) + len(families)) + '---|']
        for tuner in sorted(tuners, key=lambda t: at[key_budget][t]):
            lines.append(f'| {tuner} | ' + ' | '.join(f'{at[b][tuner]:.2f}' for b in at) + ' | ' +
                         ' | '.join(f'{by_family[family][tuner]:.2f}' for family in families) +
                         f' | {below[tuner]}/{len(names)} |')
            rows += [{'mode': mode, 'tuner': tuner, 'tables': 'all', 'evaluations': b,
                      'average_rank': round(at[b][tuner], 3)} for b in at]
            rows += [{'mode': mode, 'tuner': tuner, 'tables': family, 'evaluations': key_budget,
                      'average_rank': round(by_family[family][tuner], 3)} for family in families]
        lines.append('')
    header = [f'Average rank over {len(names)} tables ({repetitions} seeds each): on each table the tuners are '
              'ranked by their mean regret over seeds (1 the best, ties share), and the ranks averaged, over all '
              'tables and over each family\'s. "Below random search": tables on which the tuner\'s mean regret '
              'is lower than random search\'s exact expectation at that budget.', '']
    return '\n'.join(header + lines), rows


def regret_table(results, mode, budget):
    """Per table at `budget`: each tuner's mean regret ± standard error and random search's expectation."""
    _, tuners, names = keys_of(results, mode)
    lines = [f'### Mean regret after {budget} evaluations, {mode}', '',
             '| table | random search (exact) | ' + ' | '.join(tuners) + ' |', '|---|---|' + '---|' * len(tuners)]
    for name in names:
        exact = random_search_curve(name, results[mode, tuners[0], name].shape[1])[budget - 1]
        cells = []
        for tuner in tuners:
            column = results[mode, tuner, name][:, budget - 1]
            cells.append(f'{column.mean():.3g} ± {column.std(ddof=1) / np.sqrt(len(column)):.2g}')
        lines.append(f'| {name} | {exact:.3g} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines + [''])


# ============================================================ Files

def write_runs(results, path):
    """runs.csv: one row per run; `regret_steps` lists "evaluation:regret" each time the
    incumbent's regret changed (the curve is a step function), enough to redraw every figure."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator='\n')
    writer.writerow(['mode', 'tuner', 'table', 'seed', 'evaluations', 'regret_steps'])
    for (mode, tuner, name), regrets in results.items():
        for seed, curve in enumerate(regrets):
            changes = [0] + [i for i in range(1, len(curve)) if curve[i] != curve[i - 1]]
            writer.writerow([mode, tuner, name, seed, len(curve),
                             ' '.join(f'{i + 1}:{curve[i]:.9g}' for i in changes)])
    atomic_write_text(buffer.getvalue(), path)


def read_runs(path):
    """runs.csv back as {(mode, tuner, table): regrets (seeds, evaluations)}."""
    curves = {}
    with open(path, newline='') as f:
        for row in csv.DictReader(f):
            curve = np.empty(int(row['evaluations']))
            steps = [step.split(':') for step in row['regret_steps'].split()]
            for (start, value), (end, _) in zip(steps, steps[1:] + [(len(curve) + 1, None)]):
                curve[int(start) - 1:int(end) - 1] = float(value)
            curves.setdefault((row['mode'], row['tuner'], row['table']), []).append(curve)
    return {key: np.array(value) for key, value in curves.items()}


def write_csv(rows, path):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator='\n')
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(buffer.getvalue(), path)


def atomic_write_text(text, path):
    from .files import atomic_write_text as write  # imports torch: only once there is something to write
    write(text, path)


def plot_family(results, mode, family, path):
    """One subplot per table of `family`: each tuner's mean regret with a band of one standard
    error, and random search's exact expectation (black, dashed). Log scale, its bottom half the
    smallest nonzero mean drawn; a mean regret of 0 (every seed found the best) is drawn there."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    _, tuners, names = keys_of(results, mode)
    names = [name for name in names if name.startswith(family + '/')]
    columns = min(len(names), 4)
    rows = -(-len(names) // columns)
    width = max(4.2 * columns, 10)
    labels = ['random search (exact)'] + tuners
    legend_columns = max(1, min(len(labels), int(width // (0.6 + 0.075 * max(map(len, labels))))))
    legend_rows = -(-len(labels) // legend_columns)
    height = 3.4 * rows + 0.6 + 0.22 * legend_rows
    fig, axes = plt.subplots(rows, columns, figsize=(width, height), squeeze=False)
    colors = [plt.get_cmap('tab10' if len(tuners) <= 10 else 'tab20')(i % 20) for i in range(len(tuners))]
    for ax, name in zip(axes.flat, names):
        table = tables.load(name)
        n = results[mode, tuners[0], name].shape[1]
        x = np.arange(1, n + 1)
        curves = {'random search (exact)': (random_search_curve(name, n), np.zeros(n))}
        for tuner in tuners:
            regrets = results[mode, tuner, name]
            error = regrets.std(0, ddof=1) / np.sqrt(len(regrets)) if len(regrets) > 1 else np.zeros(n)
            curves[tuner] = (regrets.mean(0), error)
        drawn = np.concatenate([mean for mean, _ in curves.values()])
        floor = drawn[drawn > 0].min() / 2 if (drawn > 0).any() else 1e-9
        for (label, (mean, error)), color in zip(curves.items(), ['k'] + colors):
            ax.plot(x, np.maximum(mean, floor), color=color, lw=1.5 if color == 'k' else 1.2,
                    ls='--' if color == 'k' else '-', label=label)
            if error.any():
                ax.fill_between(x, np.maximum(mean - error, floor), np.maximum(mean + error, floor), color=color,
                                alpha=0.15, lw=0)
        ax.set_yscale('log')
        ax.set_ylim(bottom=floor * 0.9)
        ax.set_title(f'{name} ({table.metric}, {"max" if table.maximize else "min"})', fontsize=10)
        ax.set_xlabel('evaluations')
        ax.set_ylabel('regret')
        ax.grid(alpha=0.3, which='both', lw=0.5)
    for ax in list(axes.flat)[len(names):]:
        ax.axis('off')
    seeds = next(iter(results.values())).shape[0]
    fig.suptitle(f'{family}, {mode} (trialConcurrency {MODES[mode]}): mean regret of the incumbent over '
                 f'{seeds} seeds ± 1 standard error', fontsize=11)
    handles, _ = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc='lower center', ncol=legend_columns, fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, (0.3 + 0.22 * legend_rows) / height, 1, 1))  # the legend below the plots
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(results, out, made):
    """Everything under `out` but runs.csv: regret.csv, ranks.md/.csv, one PNG per family and mode,
    and command.txt: `made`, how the runs were made, which also heads ranks.md."""
    out = Path(out)
    atomic_write_text(made + '\n', out / 'command.txt')
    modes, tuners, names = keys_of(results)
    evaluations = next(iter(results.values())).shape[1]
    write_csv(summary_rows(results), out / 'regret.csv')
    markdown, rank_rows = ranks_table(results)
    write_csv(rank_rows, out / 'ranks.csv')
    key_budget = min(KEY_BUDGET, evaluations)
    figures = []
    for mode in modes:
        for family in tables.FAMILIES:
            if any(name.startswith(family + '/') for name in names):
                path = out / f'regret_{mode}_{family}.png'
                plot_family(results, mode, family, path)
                figures.append(f'![{family}, {mode}]({path.name})')
    regrets = [regret_table(results, mode, key_budget) for mode in modes]
    atomic_write_text('\n'.join(['# Tuners on tabular benchmarks', '', made, '', markdown,
                                 *regrets, *figures]) + '\n', out / 'ranks.md')
    return out / 'ranks.md'


# ============================================================ Command line

def build_parser():
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--tables', nargs='+', default=list(tables.ALL_TABLES), metavar='TABLE',
                        help='tables, or families (hpolib, hpobench, nb201) (default: all 15)')
    parser.add_argument('--tuners', nargs='+', default=list(TUNERS), metavar='TUNER',
                        help=f'of {", ".join(TUNERS)} (default: all); NAME:key=value sets a classArg or the '
                             f'search space\'s encoding ({"/".join(table_trial.ENCODINGS)}, default '
                             f'{table_trial.ENCODING}): \'Evolution:population_size=50\', \'TPE:encoding=ordinal\'')
    parser.add_argument('--modes', nargs='+', default=list(MODES), metavar='MODE',
                        help=f'of {", ".join(MODES)} (default: both)')
    parser.add_argument('--repetitions', type=int, default=20, help='seeds 0..R-1 of every run (default: 20)')
    parser.add_argument('--evaluations', type=int, default=200, help='evaluations per run (default: 200)')
    parser.add_argument('--workers', type=int, default=2, help='worker processes (default: 2)')
    parser.add_argument('--out', default='docs/results/tuners', help='where the results go (default: %(default)s)')
    parser.add_argument('--replot', nargs='+', default=[], metavar='DIR',
                        help='redraw the figures and tables of DIR/runs.csv (of several, merged) into --out; '
                             'nothing is run, and the runs stay where they are')
    return parser


def check(args):
    names = []
    for entry in args.tables:
        found = tables.FAMILIES.get(entry)
        if found:
            names += [f'{entry}/{dataset}' for dataset in found]
        elif entry in tables.ALL_TABLES:
            names.append(entry)
        else:
            raise ConfigError(f'--tables {entry!r}: expected a family ({", ".join(tables.FAMILIES)}) or one of '
                              f'{", ".join(tables.ALL_TABLES)}')
    for spec in args.tuners:
        section, encoding = tuner_setup(spec)
        try:  # a misspelled classArg fails here, not in a worker minutes later
            build_tuner(section, True, 0).update_search_space(table_trial.search_space(tables.load(names[0]),
                                                                                       encoding))
        except (TypeError, ValueError) as error:
            raise ConfigError(f'--tuners {spec!r}: {error}') from None
    for mode in args.modes:
        if mode not in MODES:
            raise ConfigError(f'--modes {mode!r}: expected one of {", ".join(MODES)}')
    for flag, value in (('--repetitions', args.repetitions), ('--evaluations', args.evaluations),
                        ('--workers', args.workers)):
        if value < 1:
            raise ConfigError(f'{flag} {value}: must be at least 1')
    return list(dict.fromkeys(names))


def main(argv=None):
    args = build_parser().parse_args(argv)
    return exit_status(lambda: run(args, argv))


def run(args, argv):
    given = sys.argv[1:] if argv is None else argv
    command = ' '.join(['python bench/tuners.py'] + [shlex.quote(arg) for arg in given])
    if args.replot:
        results, made = {}, []
        for folder in args.replot:
            runs = Path(folder) / 'runs.csv'
            if not runs.is_file():
                raise ConfigError(f'--replot {folder}: no runs.csv there')
            if (Path(folder) / 'command.txt').is_file():
                made.append(re.sub(r'^Redrawn by `[^`]*`\. ', '', (Path(folder) / 'command.txt').read_text().strip()))
            for key, regrets in read_runs(runs).items():
                if key in results:
                    raise ConfigError(f'--replot {folder}: {" ".join(key)} is in an earlier folder too')
                if key[0] in args.modes:
                    results[key] = regrets
        print(f'wrote {write_outputs(results, args.out, " ".join([f"Redrawn by `{command}`."] + made))}')
        return 0
    quiet_nni()
    names = check(args)
    start, load = time.monotonic(), os.getloadavg()[0]
    print(f'{len(args.modes)} mode(s) x {len(args.tuners)} tuner(s) x {len(names)} table(s), {args.repetitions} '
          f'seeds of {args.evaluations} evaluations, {args.workers} worker(s); load average {load:.1f}', flush=True)
    results = run_benchmark(args.modes, args.tuners, names, range(args.repetitions), args.evaluations, args.workers,
                            log=lambda line: print(line, flush=True))
    write_runs(results, Path(args.out) / 'runs.csv')
    minutes = (time.monotonic() - start) / 60
    path = write_outputs(results, args.out, f'Made by `{command}` in {minutes:.1f} minutes with {args.workers} '
                                            f'worker process(es) on {os.cpu_count()} CPU cores, load average '
                                            f'{load:.1f} at the start and {os.getloadavg()[0]:.1f} at the end.')
    print(f'wrote {path}; wall time {minutes:.1f} minutes', flush=True)
    return 0
