"""Multi-trial NAS on NAS-Bench-201 with NNI's strategies, judged against the exact expectation of
random search: `python nas/multitrial.py --output_dir runs/multitrial`.

NNI does the search: its NAS-Bench-201 space (`nni.nas.hub.pytorch.NasBench201`), its multi-trial
strategies (`nni.nas.strategy.Random`, `RegularizedEvolution`, `PolicyBasedRL`, `TPE`) and
`nni.nas.experiment.NasExperiment` with the sequential execution engine, in this process. A trial
costs a table lookup instead of a training: the evaluator returns the sampled cell's validation
accuracy after 200 epochs for one of the benchmark's seeds, drawn at random, as a real training
would (cifar_automl/tables.py). So a search of 100 trials takes well under a second, and each
strategy is repeated over many seeds.

The yardstick (Table.random_search_regret) is exact: the expected accuracy of random search's
incumbent after n trials, the incumbent being the trial with the best observed accuracy and its
accuracy the cell's mean over the benchmark's seeds (its truth). A strategy's incumbent is scored
the same way, the earliest trial among equal observed values.

Written to --output_dir:
    trials.csv        every trial of every run: the cell, its observed and true accuracy, and the
                      incumbent's observed and true accuracy after it (the best-so-far curve)
    summary.md, .csv  each strategy's mean best-found accuracy +- its standard error over the
                      repetitions at 10, 25, 50 and 100 trials, beside random search's exact expectation
    best_found.png    mean best-found accuracy against trials, a band of +-1 standard error, and the
                      exact random-search curve
    config.json       the resolved flags and every strategy's settings
    nni/              NNI's experiment logs and checkpoints, one folder per run
"""
import argparse
import csv
import dataclasses
import functools
import io
import json
import logging
import math
import time
import types
from pathlib import Path

import numpy as np

from . import config, space_nb201, tables
from .config import ConfigError, Option
from .environment import import_nni_nas
from .files import atomic_write_json, atomic_write_text
from .training import log

OPTIONS = {
    'datasets': Option('cifar10', 'NAS-Bench-201 datasets to search, comma-separated: '
                                  + ', '.join(space_nb201.TABLES)),
    'strategies': Option('random,evolution,rl,tpe',
                         'NNI strategies to run, comma-separated, each NAME or NAME:setting=value:...; the names '
                         'and settings are listed under STRATEGIES in cifar_automl/nas_multitrial.py (e.g. '
                         'evolution:population_size=20:sample_size=5)'),
    'trials': Option(100, 'trials (cells evaluated) in each run', low=1, high=15625),
    'repetitions': Option(20, 'runs of each strategy on each dataset', low=1, high=10000),
    'seed': Option(0, 'repetition r runs with seed seed+r: the strategy\'s, and the evaluator\'s draw of a '
                      'benchmark seed per trial; every strategy sees the same seeds', low=0),
    'output_dir': Option('', 'where the results go (required)'),
}
MultitrialConfig = dataclasses.make_dataclass(
    'MultitrialConfig', [(name, opt.type, dataclasses.field(default=opt.default)) for name, opt in OPTIONS.items()])

# Each strategy's settings, by NNI's names, with the defaults this module runs: NNI's own, except
# where a try on other seeds (100..119, cifar10) did better within 100 trials. NNI's
# RegularizedEvolution keeps 100 individuals and draws its tournaments of 25 from them, so 100
# trials are all random ones; a population of 10 whose best is always the parent (sample_size 10),
# each edge redrawn with probability 0.1, did best. TPE's on_duplicate is this module's (sequential_tpe).
# docs/nas_multitrial.md records every setting tried.
STRATEGIES = {
    'random': {},
    'evolution': {
        'population_size': Option(10, 'individuals kept; the first ones are random', low=1),
        'sample_size': Option(10, 'individuals in each tournament; the best is the parent', low=1),
        'mutation_prob': Option(0.1, 'probability that an edge is drawn anew (NNI may draw the same op)',
                                low=0.0, high=1.0),
        'crossover': Option(False, 'the parent is a crossover of two tournaments\' winners'),
    },
    'rl': {
        'samples_per_update': Option(20, 'cells sampled between two updates of the PPO policy', low=1),
        'lr': Option(1e-4, 'Adam learning rate of the policy (an LSTM over the six edges)', low=1e-8, high=1.0),
        'hidden_dim': Option(64, 'LSTM and MLP width of the policy', low=1),
        'update_times': Option(5, 'PPO updates at each update', low=1),
        'repeat': Option(5, 'passes over the replay buffer in each PPO update', low=1),
        'batch_size': Option(32, 'minibatch of transitions (6 a cell) in a PPO pass', low=1),
    },
    'tpe': {
        'n_startup_jobs': Option(20, 'random trials before TPE models the history', low=0),
        'gamma': Option(0.25, 'share of the history TPE counts as good', low=0.0, high=1.0),
        'n_ei_candidates': Option(24, 'candidates drawn for each suggestion', low=1),
        'linear_forgetting': Option(25, 'trials after which older ones weigh less', low=1),
        'prior_weight': Option(1.0, 'weight of the uniform prior among the good trials', low=0.0),
        'on_duplicate': Option('random', 'when TPE proposes a cell it tried, a random untried cell replaces it, or '
                                         'NNI\'s next untried cell in grid order (grid)', choices=('random', 'grid')),
    },
}
CHECKPOINTS = (10, 25, 50, 100)  # trial counts of the summary
TRIALS_CSV, SUMMARY, PLOT, CONFIG_FILE, NNI_DIR = 'trials.csv', 'summary', 'best_found.png', 'config.json', 'nni'


@dataclasses.dataclass(frozen=True)
class StrategySpec:
    label: str  # as given on the command line
    name: str
    settings: dict  # every setting, the given ones over the defaults


def parse_strategy(text, source='--strategies'):
    """'evolution:population_size=20:sample_size=5' as a StrategySpec; ConfigError naming what is wrong."""
    name, *given = text.strip().split(':')
    if name not in STRATEGIES:
        raise ConfigError(f'{source}: no strategy {name!r}; the strategies are {", ".join(STRATEGIES)}')
    options = STRATEGIES[name]
    settings = {setting: opt.default for setting, opt in options.items()}
    for item in given:
        setting, equals, value = item.partition('=')
        where = f'{source}: {name}'
        if not equals:
            raise ConfigError(f'{where}: {item!r} is not setting=value')
        if setting not in options:
            known = ', '.join(options) or 'none'
            raise ConfigError(f'{where}: unknown setting {setting!r}; its settings are {known}')
        settings[setting] = config.check_value(setting, parse_value(value, options[setting]), where, options)
    if name == 'evolution' and settings['sample_size'] > settings['population_size']:
        raise ConfigError(f'{source}: {name}: sample_size {settings["sample_size"]} is larger than population_size '
                          f'{settings["population_size"]}; a tournament draws from the population')
    return StrategySpec(text.strip(), name, settings)


def parse_value(text, opt):
    """A setting's text as the option's type, or the text itself for check_value to refuse by name."""
    try:
        if opt.type is bool:
            return config._parse_bool(text)
        return opt.type(text)
    except (ValueError, argparse.ArgumentTypeError):
        return text


def resolve(argv=None):
    cfg = MultitrialConfig(**config.parse_flags(__doc__.split('\n\n')[0].replace('\n', ' '), OPTIONS, argv))
    if not cfg.output_dir:
        raise ConfigError('--output_dir: where should the results go? (e.g. --output_dir runs/multitrial)')
    names = datasets(cfg)
    for dataset in names:
        if dataset not in space_nb201.TABLES:
            raise ConfigError(f'--datasets: no NAS-Bench-201 dataset {dataset!r}; they are '
                              f'{", ".join(space_nb201.TABLES)}')
    if not names or len(set(names)) < len(names):
        raise ConfigError(f'--datasets: name each of {", ".join(space_nb201.TABLES)} at most once, and one at least')
    labels = [spec.label for spec in strategies(cfg)]
    if len(set(labels)) < len(labels):
        raise ConfigError(f'--strategies: {", ".join(sorted({x for x in labels if labels.count(x) > 1}))} '
                          f'given twice')
    return cfg


def datasets(cfg):
    return [name.strip() for name in cfg.datasets.split(',') if name.strip()]


def strategies(cfg):
    specs = [parse_strategy(text) for text in cfg.strategies.split(',') if text.strip()]
    if not specs:
        raise ConfigError(f'--strategies: name at least one of {", ".join(STRATEGIES)}')
    return specs


# ============================================================ NNI: the space, the evaluator, the strategies

def import_nni():
    import_nni_nas()
    # NNI logs a line or two per trial (the sample, its metric, TPE's deduplication) and per checkpoint.
    logging.getLogger('nni').setLevel(logging.WARNING)
    # "`training_service` will be ignored for sequential execution engine", on every config copy.
    logging.getLogger('nni.nas.experiment.config.experiment').setLevel(logging.ERROR)


def build_space():
    """NNI's NAS-Bench-201 space at its smallest (one channel, one cell a stage): NasExperiment needs
    the space, the table needs only the sampled cell, and no network is ever built from it (so its
    classifier's 10 classes do not matter on CIFAR-100 either)."""
    from nni.nas.hub.pytorch import NasBench201
    return NasBench201(stem_out_channels=1, num_modules_per_stack=1)


def make_evaluator(table, rng):
    """An NNI evaluator that scores a sampled cell from `table` (one benchmark seed's accuracy, drawn
    with `rng`), reports it as the trial's final result and keeps every (cell, observed) in `history`."""
    from nni.nas.evaluator import Evaluator

    class TableEvaluator(Evaluator):
        def __init__(self):
            self.history = []

        def _execute(self, model):
            # NNI calls _execute with the sampled model space, whose .sample is the architecture
            # dict; its default builds the network first (model.executable_model()), which a
            # table lookup does not need. NNI's docstring invites this override.
            import nni
            arch = dict(model.sample)
            value = table.observe(space_nb201.table_params(arch), rng)
            self.history.append((arch, value))
            nni.report_final_result(value)
            return value

    return TableEvaluator()


def make_strategy(spec, seed):
    from nni.nas import strategy
    s = spec.settings
    if spec.name == 'random':
        return strategy.Random(seed=seed)
    if spec.name == 'evolution':
        return strategy.RegularizedEvolution(seed=seed, **s)
    if spec.name == 'rl':  # PPO: torch and numpy's global generators, seeded by run_once
        from nni.nas.strategy._rl_impl import default_policy_fn
        return strategy.PolicyBasedRL(
            samples_per_update=s['samples_per_update'],
            policy_fn=functools.partial(default_policy_fn, lr=s['lr'], hidden_dim=s['hidden_dim']),
            update_kwargs={key: s[key] for key in ('batch_size', 'repeat', 'update_times')})
    return sequential_tpe(seed, s)


def sequential_tpe(seed, settings):
    """NNI's TPE strategy (`nni.nas.strategy.TPE`: `HPOTunerStrategy` over `TpeTuner`) with two changes.
    - No second of sleep after every trial: its loop waits for a worker of a parallel engine, but the
      sequential engine has finished the trial by then.
    - on_duplicate=random: when TPE proposes a cell it has tried, NNI's `Deduplicator` replaces it
      with the next untried cell in grid order (on_duplicate=grid), which starts at the all-'none'
      cells (10% accuracy). Once TPE's model concentrates, every later trial was such a cell and the
      search stalled. A random untried cell, drawn with the tuner's generator, replaces it instead
      (cifar_automl/nni_tuners.py's TPE, which the tuner benchmark uses too). (Asking TPE again, up to 100 times, did no better in a try and took 30 times as long.)
    NNI's TpeTuner minimises by default: the accuracy is maximised."""
    from nni.algorithms.hpo import tpe_tuner
    from nni.nas.strategy import hpo

    from .nni_tuners import TPE  # NNI's TPE whose duplicates are replaced at random

    class SequentialTPE(hpo.HPOTunerStrategy):
        def _run(self):
            original, hpo.time = hpo.time, types.SimpleNamespace(sleep=lambda seconds: None)
            try:
                super()._run()
            finally:
                hpo.time = original

    tpe_args = {key: value for key, value in settings.items() if key != 'on_duplicate'}
    tuner = TPE if settings['on_duplicate'] == 'random' else tpe_tuner.TpeTuner
    return SequentialTPE(tuner(optimize_mode='maximize', seed=seed, tpe_args=tpe_args))


def in_process_experiment_class():
    from nni.nas.experiment import NasExperiment

    class InProcessExperiment(NasExperiment):
        """A NasExperiment that does not add itself to nnictl's manifest (~/nni-experiments/.experiment,
        fixed by NNI at import): an in-process sequential run has nothing nnictl could show or stop,
        and a study runs hundreds. Its log and checkpoint go to its working directory."""

        def _start_without_nni_manager(self):
            pass

        def _stop_without_nni_manager(self):
            pass

    return InProcessExperiment


def run_once(space, table, spec, trials, seed, working_directory):
    """One search: `trials` cells sampled by the strategy `spec`, each scored from `table`.
    Returns [(arch, observed)] in trial order."""
    import torch
    from nni.nas.experiment import NasExperimentConfig
    torch.manual_seed(seed)
    np.random.seed(seed)  # tianshou samples PPO's minibatches with numpy's global generator
    evaluator = make_evaluator(table, np.random.default_rng(seed))
    nni_config = NasExperimentConfig('sequential', 'simplified')
    nni_config.max_trial_number = trials
    nni_config.experiment_working_directory = str(working_directory)
    experiment = in_process_experiment_class()(space, evaluator, make_strategy(spec, seed), nni_config)
    if not experiment.run():  # NNI catches Ctrl-C, stops the experiment and returns None
        raise KeyboardInterrupt
    experiment.stop()
    if len(evaluator.history) != trials:
        raise RuntimeError(f'{spec.label} (seed {seed}) evaluated {len(evaluator.history)} cells, not {trials}; '
                           f'see its NNI log under {working_directory}')
    return evaluator.history


# ============================================================ Scoring the runs

def incumbent_rows(observed):
    """For each trial, the index of the incumbent after it: the earliest trial with the best observed value."""
    rows, best = [], 0
    for i, value in enumerate(observed):
        if value > observed[best]:
            best = i
        rows.append(best)
    return np.array(rows)


def random_search_expectation(table, trials):
    """Random search's expected best-found accuracy after 1..trials trials, exactly."""
    return table.best - table.random_search_regret(trials)


def summary_rows(curves, expected, trials):
    """[(checkpoint, mean, standard error, exact random)] of best-found curves (repetitions x trials)."""
    rows = []
    for n in sorted({n for n in CHECKPOINTS if n <= trials} | {trials}):
        values = curves[:, n - 1]
        se = values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else float('nan')
        rows.append((n, float(values.mean()), float(se), float(expected[n - 1])))
    return rows


# ============================================================ Outputs

def write_trials_csv(records, path):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator='\n')
    writer.writerow(['dataset', 'strategy', 'repetition', 'seed', 'trial', 'cell', 'observed', 'truth',
                     'best_observed', 'best_truth'])
    for record in records:
        writer.writerow(record)
    atomic_write_text(buffer.getvalue(), path)


def write_summary(results, specs, cfg, output_dir):
    """summary.md and summary.csv: a row per (dataset, strategy), and random search's exact row."""
    checkpoints = [row[0] for row in next(iter(results.values()))['summary']]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator='\n')
    writer.writerow(['dataset', 'strategy', 'settings', 'trials', 'mean', 'standard_error', 'random_exact',
                     'difference_in_se'])
    lines = ['# Multi-trial NAS on NAS-Bench-201: best-found validation accuracy (%)', '',
             f'Mean over {cfg.repetitions} repetitions (seeds {cfg.seed}..{cfg.seed + cfg.repetitions - 1}) '
             f'+- standard error, of the true accuracy (mean over the benchmark\'s seeds) of the incumbent: the '
             f'trial with the best observed accuracy. Random search (exact) is the expectation of the same quantity '
             f'for uniform sampling, from the table.', '']
    for dataset in datasets(cfg):
        table = tables.load(space_nb201.TABLES[dataset])
        lines += [f'## {dataset} (best cell {table.best:.2f})', '',
                  '| strategy | ' + ' | '.join(f'{n} trials' for n in checkpoints) + ' | last - exact |',
                  '|---|' + '---:|' * (len(checkpoints) + 1)]
        exact = None
        for spec in specs:
            rows = results[dataset, spec.label]['summary']
            exact = [row[3] for row in rows]
            n, mean, se, random_exact = rows[-1]
            difference = (mean - random_exact) / se if se > 0 else float('nan')
            lines.append(f'| {spec.label} | ' + ' | '.join(f'{m:.2f} ± {s:.2f}' for _, m, s, _ in rows)
                         + f' | {mean - random_exact:+.2f} ({difference:+.1f} SE) |')
            for n, mean, se, random_exact in rows:
                writer.writerow([dataset, spec.label, json.dumps(spec.settings, sort_keys=True), n, f'{mean:.4f}',
                                 f'{se:.4f}', f'{random_exact:.4f}', f'{(mean - random_exact) / se:.2f}'
                                 if se > 0 else 'nan'])
        lines += ['| random search (exact) | ' + ' | '.join(f'{x:.2f}' for x in exact) + ' | |', '']
    lines += ['Settings of each strategy:', '']
    lines += [f'- `{spec.label}`: ' + (', '.join(f'{k}={v}' for k, v in spec.settings.items()) or 'none')
              for spec in specs]
    atomic_write_text('\n'.join(lines) + '\n', output_dir / f'{SUMMARY}.md')
    atomic_write_text(buffer.getvalue(), output_dir / f'{SUMMARY}.csv')


def plot(results, specs, cfg, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    names = datasets(cfg)
    fig, axes = plt.subplots(1, len(names), figsize=(6.4 * len(names), 4.8), squeeze=False)
    x = np.arange(1, cfg.trials + 1)
    for ax, dataset in zip(axes[0], names):
        table = tables.load(space_nb201.TABLES[dataset])
        expected = random_search_expectation(table, cfg.trials)
        for spec in specs:
            curves = results[dataset, spec.label]['curves']
            mean = curves.mean(0)
            se = curves.std(0, ddof=1) / math.sqrt(len(curves)) if len(curves) > 1 else np.zeros_like(mean)
            (line,) = ax.plot(x, mean, label=spec.label, lw=1.5)
            ax.fill_between(x, mean - se, mean + se, color=line.get_color(), alpha=0.2, lw=0)
        ax.plot(x, expected, 'k--', lw=1.5, label='random search (exact)')
        ax.axhline(table.best, color='grey', ls=':', lw=1, label=f'best cell ({table.best:.2f})')
        low = expected[min(4, cfg.trials - 1)]  # from random search's value at 5 trials
        ax.set_ylim(low - 0.1 * (table.best - low), table.best + 0.05 * (table.best - low))
        ax.set_xlim(1, cfg.trials)
        ax.set_xlabel('trials')
        ax.set_ylabel('best-found validation accuracy (%), true')
        ax.set_title(f'NAS-Bench-201 {dataset}: mean of {cfg.repetitions} runs, band ±1 SE')
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc='lower right')
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ============================================================ The study

def main(argv=None):
    return config.exit_status(lambda: run(resolve(argv)))


def run(cfg):
    import torch
    start = time.perf_counter()
    specs = strategies(cfg)
    output_dir = Path(cfg.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json({**dataclasses.asdict(cfg), 'settings': {spec.label: spec.settings for spec in specs}},
                      output_dir / CONFIG_FILE)
    # One thread: PPO's small LSTM ran 20x slower with two on this shared 2-core machine (1 ms against
    # 20 ms a forward and backward), and nothing here is large enough to share.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        import_nni()
        records, results = [], {}
        space = build_space()
        for dataset in datasets(cfg):
            table = tables.load(space_nb201.TABLES[dataset])
            expected = random_search_expectation(table, cfg.trials)
            for spec in specs:
                begun = time.perf_counter()
                curves = []
                for repetition in range(cfg.repetitions):
                    seed = cfg.seed + repetition
                    history = run_once(space, table, spec, cfg.trials, seed, output_dir / NNI_DIR)
                    observed = np.array([value for _, value in history])
                    truth = np.array([table.true_value(space_nb201.table_params(arch)) for arch, _ in history])
                    best = incumbent_rows(observed)
                    curves.append(truth[best])
                    for trial, (arch, value) in enumerate(history):
                        records.append([dataset, spec.label, repetition, seed, trial + 1, space_nb201.to_string(arch),
                                        value, f'{truth[trial]:.4f}', observed[best[trial]],
                                        f'{truth[best[trial]]:.4f}'])
                curves = np.array(curves)
                summary = summary_rows(curves, expected, cfg.trials)
                results[dataset, spec.label] = {'curves': curves, 'summary': summary}
                n, mean, se, exact = summary[-1]
                log(f'{dataset} {spec.label}: {cfg.repetitions} runs of {cfg.trials} trials in '
                    f'{time.perf_counter() - begun:.1f}s; best-found after {n} trials {mean:.2f} ± {se:.2f}, '
                    f'random search (exact) {exact:.2f}')
    finally:
        torch.set_num_threads(threads)
    write_trials_csv(records, output_dir / TRIALS_CSV)
    write_summary(results, specs, cfg, output_dir)
    plot(results, specs, cfg, output_dir / PLOT)
    log(f'wrote {output_dir / TRIALS_CSV}, {output_dir / SUMMARY}.md/.csv, {output_dir / PLOT}')
    log(f'wall time {time.perf_counter() - start:.1f}s')
    return 0
