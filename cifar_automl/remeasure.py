"""Re-measure experiments' winners: each one's top-k configurations trained again with several
seeds, reported as mean ± std, beside a baseline command at the same seeds.

    python -m cifar_automl.remeasure EXPERIMENT --top 3 --seeds 0 1 2 --out remeasure/ \\
        --baseline "python3 trial/main.py --preset cpu --data_dir data --log_frequency 0"
    python -m cifar_automl.remeasure EXPERIMENT --set epochs=10 ...  # a short-trial search's winners, trained longer
    python -m cifar_automl.remeasure TPE_ID RANDOM_ID ANNEAL_ID --top 1 ...  # tuners compared, one baseline

The top of a search is partly selection noise: out of many configurations, the one with the
luckiest seed and validation split tops the table, and its own numbers overstate it. Here each
configuration runs as the experiment ran it (its trial command with the trial's parameters, as
best_command.txt) plus `--seed S`, one run after the other (a CPU run uses every core, and
timings stay comparable). Each run lands in OUT/<config>/seed<S>/ (metrics.json, run.log,
command.txt); a run whose metrics.json is there is not run again, so an interrupted
re-measurement resumes, and one more experiment added to a finished re-measurement runs only its
own configurations. A run found there with another command is refused, not reused.
Writes runs.csv (every run) and summary.csv / summary.md (per configuration, mean ± std).
"""
import argparse
import json
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

from .config import ArgumentParser, ConfigError, exit_status, resolve
from .files import atomic_write_text
from .results.commands import best_command, with_flags
from .results.experiment import ReportError, format_value, is_number
from .results.load import load_all
from .results.write import write_csv

REPO = Path(__file__).resolve().parents[1]
TRIAL_SCRIPT = 'trial/main.py'
MEASURED = ('default', 'test_acc', 'test_acc_tta', 'train_time')  # from each run's metrics.json


def configurations(experiments, top, baseline, overrides):
    """[(label, command, the experiment or None, the trial or None)]: each experiment's `top` best
    trials, with `overrides` {flag: value}, then the baseline. Labels are <experiment id>-trial<N>,
    so that a re-measurement of more experiments into the same folder reuses the runs it has."""
    configs = []
    for experiment in experiments:
        ranked = [trial for trial in experiment.ranked() if is_number(trial.metric)][:top]
        if not ranked:
            raise ConfigError(f'experiment {experiment.id} ({experiment.source}): no trial has a final result '
                              'to re-measure')
        configs += [(f'{experiment.id}-trial{trial.number}',
                     with_flags(best_command(experiment, trial), overrides), experiment, trial)
                    for trial in ranked]
    if baseline:
        configs.append(('baseline', baseline, None, None))
    for label, command, _, _ in configs:
        check_command(label, command)
    return configs


def check_command(label, command):
    """A trial/main.py command's flags are checked now, not after the first run has trained."""
    words = shlex.split(command)
    if len(words) < 2 or words[1] != TRIAL_SCRIPT:
        raise ConfigError(f'{label}: {command!r} does not run {TRIAL_SCRIPT} (expected "python3 {TRIAL_SCRIPT} ...")')
    try:
        resolve(words[2:])
    except SystemExit:  # argparse has printed which flag it does not know
        raise ConfigError(f'{label}: {command!r} has flags {TRIAL_SCRIPT} does not accept') from None
    except ConfigError as error:
        raise ConfigError(f'{label}: {error}') from None


def check_reusable(label, command, directory):
    """A finished run in `directory` is reused only if it ran `command` (as its command.txt says; a
    run copied in without one is taken as it is)."""
    recorded = directory / 'command.txt'
    if not ((directory / 'metrics.json').is_file() and recorded.is_file()):
        return
    ran = recorded.read_text().strip()
    if ran != command:
        raise ConfigError(f'{label}: {directory} holds a run of another command ({ran!r}, not {command!r}): '
                          'remove it, or pass another --out')


def run(command, seed, directory):
    """One training of `command` with `seed` into `directory`; its metrics.json, or None if it failed."""
    metrics = directory / 'metrics.json'
    if metrics.is_file():
        return json.loads(metrics.read_text())
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_text(command + '\n', directory / 'command.txt')
    words = shlex.split(with_flags(command, {'seed': seed, 'output_dir': str(directory.resolve())}))
    with open(directory / 'run.log', 'w') as log:
        finished = subprocess.run(words, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    if finished.returncode != 0 or not metrics.is_file():
        return None
    return json.loads(metrics.read_text())


def mean_std(values):
    values = [v for v in values if is_number(v)]
    if not values:
        return None, None
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(configs, runs):
    """One row per configuration: NNI's number for it, then mean and std over its seeds."""
    rows = []
    for label, command, experiment, trial in configs:
        mine = [r for r in runs if r['config'] == label and r['status'] == 'ok']
        row = {'config': label, 'experiment': experiment.id if experiment else '',
               'tuner': experiment.tuner() if experiment else '', 'nni_default': trial.metric if trial else None,
               'nni_test_acc': trial.final.get('test_acc') if trial else None, 'runs': len(mine)}
        for key in MEASURED:
            row[f'{key}_mean'], row[f'{key}_std'] = mean_std([r[key] for r in mine])
        row['command'] = command
        rows.append(row)
    return rows


def plus_minus(row, key, digits=2):
    mean, std = row[f'{key}_mean'], row[f'{key}_std']
    return '' if mean is None else f'{mean:.{digits}f} ± {std:.{digits}f}'


def summary_markdown(experiments, seeds, rows, overrides):
    baseline = next((row for row in rows if row['config'] == 'baseline'), None)
    named = ', '.join(f'`{experiment.id}` ({experiment.tuner()})' for experiment in experiments)
    lines = [f'# Re-measured: the top of experiment{"s" if len(experiments) > 1 else ""} {named}', '',
             f'Each configuration trained with seeds {", ".join(map(str, seeds))}, one run after the other; '
             'mean ± standard deviation over the runs that finished. "NNI" is what the experiment itself '
             'reported for the trial (one seed, and the best of many: expect it above the mean).'
             + (f' The top configurations ran with `{with_flags("", overrides).strip()}` (--set), unlike '
                'their trials, so NNI\'s figures are of a different training.' if overrides else ''), '',
             '| config | tuner | runs | NNI default | NNI test_acc | default (val) | test_acc | test_acc_tta | '
             'training time (s) |' + (' test_acc vs baseline |' if baseline else ''),
             '|---|---|---|---|---|---|---|---|---|' + ('---|' if baseline else '')]
    for row in rows:
        cells = [row['config'], row['tuner'], str(row['runs']), format_value(row['nni_default'], '.2f'),
                 format_value(row['nni_test_acc'], '.2f'), plus_minus(row, 'default'),
                 plus_minus(row, 'test_acc'), plus_minus(row, 'test_acc_tta'), plus_minus(row, 'train_time', 1)]
        if baseline:
            both = row is not baseline and row['test_acc_mean'] is not None and baseline['test_acc_mean'] is not None
            cells.append(f'{row["test_acc_mean"] - baseline["test_acc_mean"]:+.2f}' if both else '')
        lines.append('| ' + ' | '.join(cells) + ' |')
    lines += ['', '## Commands (each run adds `--seed S --output_dir OUT/<config>/seed<S>`)', '']
    lines += [f'- {row["config"]}: `{row["command"]}`' for row in rows]
    return '\n'.join(lines) + '\n'


def write_results(experiments, seeds, configs, runs, overrides, out):
    write_csv(runs, out / 'runs.csv')
    rows = summarise(configs, runs)
    write_csv(rows, out / 'summary.csv')
    atomic_write_text(summary_markdown(experiments, seeds, rows, overrides), out / 'summary.md')
    return rows


def parse_overrides(assignments):
    pairs = [assignment.partition('=') for assignment in assignments]
    bad = [assignment for assignment, (name, equals, value) in zip(assignments, pairs)
           if not (name and equals and value)]
    if bad:
        raise ConfigError(f'--set {bad[0]}: expected NAME=VALUE, a trial flag and its value (epochs=10)')
    return {name: value for name, _, value in pairs}


def remeasure(args):
    if args.top < 1:
        raise ConfigError(f'--top {args.top}: expected at least 1')
    if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        raise ConfigError(f'--seeds {" ".join(map(str, args.seeds))}: expected distinct seeds >= 0')
    try:
        experiments = load_all(args.experiments)
    except ReportError as error:
        raise ConfigError(str(error)) from None
    overrides = parse_overrides(args.set)
    configs = configurations(experiments, args.top, args.baseline, overrides)
    out = Path(args.out or 'remeasure-' + '-'.join(experiment.id for experiment in experiments))
    for label, command, _, _ in configs:
        for seed in args.seeds:
            check_reusable(label, command, out / label / f'seed{seed}')
    runs = []
    for label, command, _, _ in configs:
        for seed in args.seeds:
            directory = out / label / f'seed{seed}'
            print(f'{label} seed {seed}: {directory}', flush=True)
            metrics = run(command, seed, directory)
            runs.append({'config': label, 'seed': seed, 'status': 'ok' if metrics else 'failed',
                         **{key: (metrics or {}).get(key) for key in MEASURED},
                         'directory': str(directory)})
            if metrics is None:
                print(f'  failed: see {directory / "run.log"}', flush=True)
            # after each run, so that partial results are readable
            write_results(experiments, args.seeds, configs, runs, overrides, out)
    for row in write_results(experiments, args.seeds, configs, runs, overrides, out):
        print(f'{row["config"]}: {row["runs"]} runs, test_acc {plus_minus(row, "test_acc")}, '
              f'training {plus_minus(row, "train_time", 1)} s')
    print(f'wrote {out / "summary.md"}, {out / "summary.csv"}, {out / "runs.csv"}')
    return 0 if all(r['status'] == 'ok' for r in runs) else 1


def main(argv=None):
    parser = ArgumentParser(prog='python -m cifar_automl.remeasure', description=__doc__.split('\n\n')[0],
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('experiments', nargs='+', metavar='experiment',
                        help='experiment ids, experiment directories or folders holding them, as for '
                             'cifar_automl.report; each one\'s top trials are re-measured, the baseline once')
    parser.add_argument('--top', type=int, default=3, help='how many of each experiment\'s best trials to re-run')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2], help='the seeds each one runs with')
    parser.add_argument('--baseline', default='', help='a trial/main.py command to run at the same seeds, e.g. '
                                                       '"python3 trial/main.py --preset cpu --data_dir data"')
    parser.add_argument('--set', nargs='+', default=[], metavar='NAME=VALUE',
                        help='trial flags to change in every top configuration (not the baseline), e.g. epochs=10 '
                             'to train the winners of a short-trial search as long as the baseline')
    parser.add_argument('--out', default='', help='output directory (default: remeasure-<experiment ids>)')
    return exit_status(lambda: remeasure(parser.parse_args(argv)))


if __name__ == '__main__':
    sys.exit(main())
