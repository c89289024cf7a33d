"""Results out of NNI experiments, without the WebUI and without opening db/nni.sqlite by hand.

    python -m cifar_automl.report EXPERIMENT_ID --out results/      # a running experiment (REST API)
    python -m cifar_automl.report ~/nni-experiments/ID --out results/  # a stopped or copied-back one
    python -m cifar_automl.report ID1 ID2 runs/ --out compare/      # several, or a folder of them

One experiment: trials.csv (every trial: parameters, final and best intermediate metric,
duration), report.md (the trials table, best first, parameter importance and the Pareto front
of accuracy against training time), best_command.txt (the best trial as a ready-to-run trial
command line) and PNG plots. Several: that report for each in its own folder, and one
comparison (comparison.csv, report.md, best-so-far curves overlaid, importance and Pareto front
over all their trials). NNI 3.0's own `nnictl view` cannot open an experiment directory copied
from another machine; this reads its db/nni.sqlite directly.

Both sources are read into the shapes NNI's REST API serves (`/experiment`, `/trial-jobs`,
`/metric-data`), so everything after loading is one code path.
"""
import csv
import io
import json
import math
import re
import shlex
import sqlite3
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from . import analysis
from .config import OPTIONS, ArgumentParser, ConfigError, flatten_nni_params, resolve
from .files import atomic_write_bytes, atomic_write_text

TERMINAL_EVENTS = ('SUCCEEDED', 'FAILED', 'USER_CANCELED', 'SYS_CANCELED', 'EARLY_STOPPED')
REGISTRY = Path('~/nni-experiments/.experiment')  # where nnictl lists the experiments it started


class ReportError(ValueError):
    """Bad input: no such experiment, no database, nothing to report."""


@dataclass
class Trial:
    number: int  # NNI's sequence id: "Trial No." in the WebUI
    id: str
    status: str
    parameters: dict
    final: dict = field(default_factory=dict)  # the final result; 'default' is the tuned metric
    intermediate: list = field(default_factory=list)  # one dict per reported epoch, in order
    start_ms: int = None
    end_ms: int = None

    @property
    def metric(self):
        return self.final.get('default')

    @property
    def duration_s(self):
        if self.start_ms is None or self.end_ms is None:
            return None
        return (self.end_ms - self.start_ms) / 1000


@dataclass
class Experiment:
    id: str
    profile: dict  # the experiment's config as NNI stores it (searchSpace, trialCommand, tuner, ...)
    trials: list
    source: str  # where it was read from, for the report's header
    start_ms: int = None  # when NNI started it
    exec_s: float = None  # NNI's running time, what maxExperimentDuration counts

    @property
    def maximize(self):
        algorithm = self.profile.get('tuner') or self.profile.get('advisor') or {}
        return (algorithm.get('classArgs') or {}).get('optimize_mode', 'maximize') != 'minimize'

    def better(self, a, b):
        return a > b if self.maximize else a < b

    def ranked(self):
        """Trials with a final metric, best first, then the others by trial number."""
        scored = sorted((t for t in self.trials if is_number(t.metric)),
                        key=lambda t: -t.metric if self.maximize else t.metric)
        return scored + [t for t in self.trials if not is_number(t.metric)]

    def best(self):
        ranked = self.ranked()
        return ranked[0] if ranked and is_number(ranked[0].metric) else None

    def tuner(self):
        """The tuner's name as a config gives it (TPE, or a custom tuner's class), and the assessor's."""
        names = []
        for key in ('tuner', 'advisor', 'assessor'):
            algorithm = self.profile.get(key) or {}
            name = algorithm.get('name') or (algorithm.get('className') or '').rsplit('.', 1)[-1]
            names += [name] if name else []
        return ' + '.join(names) or '?'

    def wall_time_s(self):
        """NNI's own running time; for a database without it, first trial start to last trial end."""
        if self.exec_s:
            return float(self.exec_s)
        starts = [t.start_ms for t in self.trials if t.start_ms is not None]
        ends = [t.end_ms for t in self.trials if t.end_ms is not None]
        return (max(ends) - min(starts)) / 1000 if starts and ends else None

    def limits_reached(self):
        """{config key: its value} for the limits that ended the experiment: one stopped by its
        maxExperimentDuration had its last trial cut short, and its best is the best of that time."""
        reached = {}
        duration = self.profile.get('maxExperimentDuration')
        if duration and self.exec_s is not None and self.exec_s >= seconds(duration):
            reached['maxExperimentDuration'] = duration
        max_trials = self.profile.get('maxTrialNumber')
        if max_trials and len(self.trials) >= max_trials:
            reached['maxTrialNumber'] = max_trials
        return reached

    def limits_text(self):
        return ' and '.join(f'{key} {value}' for key, value in self.limits_reached().items())

    def tuned_metric(self):
        """What is tuned, in words: experiments compare only when this is the same (the trial's
        --dataset, and whether `default` is maximised or minimised)."""
        dataset = re.search(r'--dataset[= ](\S+)', self.profile.get('trialCommand') or '')
        return (f'{"maximize" if self.maximize else "minimize"} `default` on '
                f'{dataset.group(1) if dataset else OPTIONS["dataset"].default}')

    def parameter_names(self):
        """Search-space order first, then any name only the trials carry (nested choices)."""
        names = list(self.profile.get('searchSpace') or {})
        for trial in self.trials:
            names += [name for name in trial.parameters if name not in names]
        return names


def seconds(duration):
    """NNI's duration strings ('60m', '1.5h', '3600s', '2d', or a bare number of seconds) in seconds."""
    number, unit = re.fullmatch(r'\s*([\d.]+)\s*([smhd]?)\s*', str(duration)).groups()
    return float(number) * {'': 1, 's': 1, 'm': 60, 'h': 3600, 'd': 86400}[unit]


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# ---------------------------------------------------------------- loading

def decode_metric(data):
    """A metric's `data` is JSON of what the trial reported, which nni serialised to JSON
    again: '"{\\"default\\": 34.0, ...}"' -> {'default': 34.0, ...}. A bare number reported
    becomes {'default': number}."""
    value = data
    while isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            break
    if isinstance(value, dict):
        return value
    return {'default': value}


def build_experiment(experiment_id, profile, jobs, metrics, source, start_ms=None, exec_s=None):
    """jobs and metrics as the REST API's /trial-jobs and /metric-data serve them."""
    trials = {}
    for job in jobs:
        hyper = json.loads(job['hyperParameters'][0]) if job.get('hyperParameters') else {}
        trials[job['trialJobId']] = Trial(
            number=job.get('sequenceId', len(trials)), id=job['trialJobId'], status=job['status'],
            parameters=flatten_nni_params(hyper.get('parameters') or {}),
            start_ms=job.get('startTime'), end_ms=job.get('endTime'))
    for metric in sorted(metrics, key=lambda m: (m['type'] != 'PERIODICAL', m['sequence'], m['timestamp'])):
        trial = trials.get(metric['trialJobId'])
        if trial is None:
            continue
        if metric['type'] == 'FINAL':
            trial.final = decode_metric(metric['data'])
        elif metric['type'] == 'PERIODICAL':
            trial.intermediate.append(decode_metric(metric['data']))
    return Experiment(experiment_id, profile, sorted(trials.values(), key=lambda t: t.number), source,
                      start_ms, exec_s)


def load_directory(directory):
    """A stopped experiment, or one copied back from a remote machine or cluster."""
    directory = Path(directory).expanduser()
    database = directory / 'db' / 'nni.sqlite'
    if not database.is_file():
        found = [str(path) for path in experiment_directories(directory)]
        hint = (f'; the experiment directories under it: {", ".join(found)}' if found else
                '; pass an experiment\'s own directory (<experimentWorkingDirectory>/<id>, by default '
                '~/nni-experiments/<id>)')
        raise ReportError(f'{directory}: no db/nni.sqlite here{hint}')
    # Read-only: the experiment may still be running, or the copy may sit on read-only storage.
    connection = sqlite3.connect(f'{database.resolve().as_uri()}?mode=ro', uri=True)
    try:
        connection.row_factory = sqlite3.Row
        profile_row = connection.execute(
            'SELECT params, id, startTime, execDuration FROM ExperimentProfile ORDER BY revision DESC LIMIT 1'
        ).fetchone()
        events = connection.execute(
            'SELECT timestamp, trialJobId, event, data, sequenceId FROM TrialJobEvent ORDER BY rowid').fetchall()
        metrics = [dict(row) for row in connection.execute(
            'SELECT timestamp, trialJobId, parameterId, type, sequence, data FROM MetricData ORDER BY rowid')]
    except sqlite3.DatabaseError as error:
        raise ReportError(f'{database}: not an NNI experiment database ({error})') from error
    finally:
        connection.close()
    if profile_row is None:
        raise ReportError(f'{database}: no experiment profile stored yet')
    return build_experiment(profile_row['id'], json.loads(profile_row['params']), replay_events(events),
                            metrics, str(directory), profile_row['startTime'], profile_row['execDuration'])


def experiment_directories(folder):
    """The experiment directories in `folder`, as NNI's experimentWorkingDirectory holds them."""
    return sorted(path.parent.parent for path in Path(folder).glob('*/db/nni.sqlite')
                  if not path.parent.parent.is_symlink())  # NNI's `_latest` link repeats one of them


def replay_events(events):
    """Trial jobs from their event log, as NNI's manager replays it for /trial-jobs: the latest
    event is the status, the first event with data holds the parameters."""
    jobs = {}
    for event in events:
        job_id = event['trialJobId']
        if not job_id:  # experiment-wide events (imported data, customised trials)
            continue
        job = jobs.setdefault(job_id, {'trialJobId': job_id, 'hyperParameters': []})
        kind = event['event']
        if kind == 'RUNNING':
            job['startTime'] = event['timestamp']
        elif kind in TERMINAL_EVENTS:
            job['endTime'] = event['timestamp']
        if kind == 'USER_TO_CANCEL':
            job['status'] = 'USER_CANCELED'
        elif kind == 'ADD_CUSTOMIZED':
            job['status'] = 'WAITING'
        elif kind != 'ADD_HYPERPARAMETER':
            job['status'] = kind
        if event['data'] and not job['hyperParameters']:
            job['hyperParameters'].append(event['data'])
        if event['sequenceId'] is not None:
            job.setdefault('sequenceId', event['sequenceId'])
    return list(jobs.values())


def fetch_json(url):
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def load_rest(base_url):
    """A running experiment through the REST API the WebUI reads (base: http://HOST:PORT)."""
    api = base_url.rstrip('/') + '/api/v1/nni'
    try:
        profile = fetch_json(f'{api}/experiment')
        jobs = fetch_json(f'{api}/trial-jobs')
        metrics = fetch_json(f'{api}/metric-data')
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise ReportError(f'{base_url}: no NNI REST API answers there ({error})') from error
    return build_experiment(profile['id'], profile['params'], jobs, metrics, base_url,
                            profile.get('startTime'), profile.get('execDuration'))


def registered_experiments():
    path = REGISTRY.expanduser()
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError as error:
        raise ReportError(f'{path}: unreadable experiment registry ({error})') from error


def load(experiment, url=None):
    """An experiment directory, a URL, or an experiment id that nnictl registered."""
    if url:
        return load_rest(url)
    if Path(experiment).expanduser().is_dir():
        return load_directory(experiment)
    if '/' in experiment or experiment.startswith(('.', '~')):
        raise ReportError(f'{experiment}: no such directory')
    entry = registered_experiments().get(experiment)
    if entry is None:
        raise ReportError(f'{experiment!r}: not an experiment directory, and no experiment with this id in '
                          f'{REGISTRY} (nnictl experiment list --all); for one started elsewhere pass its '
                          f'directory, or --url http://HOST:PORT while it runs')
    if entry.get('status') != 'STOPPED':
        prefix = f"/{entry['prefixUrl'].strip('/')}" if entry.get('prefixUrl') else ''
        try:
            return load_rest(f"http://127.0.0.1:{entry['port']}{prefix}")
        except ReportError:
            pass  # registered as running but its manager is gone: read what it left on disk
    return load_directory(Path(entry['logDir']).expanduser() / experiment)


def load_all(arguments, url=None):
    """Every experiment the arguments name: ids, experiment directories, folders holding
    experiment directories, and a running one's --url. Raises ReportError before anything is
    written when one is missing, or when they do not measure the same metric."""
    experiments = [load_rest(url)] if url else []
    for argument in arguments:
        path = Path(argument).expanduser()
        inside = experiment_directories(path) if path.is_dir() and not (path / 'db' / 'nni.sqlite').is_file() else []
        experiments += [load_directory(directory) for directory in inside] or [load(argument)]
    ids = [experiment.id for experiment in experiments]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise ReportError(f'experiment {", ".join(twice)} given twice (' + ', '.join(
            e.source for e in experiments if e.id in twice) + ')')
    metrics = {experiment.tuned_metric() for experiment in experiments}
    if len(metrics) > 1:
        raise ReportError('these experiments do not measure the same metric, so they cannot be compared: ' +
                          '; '.join(f'{e.id} ({e.source}): {e.tuned_metric()}' for e in experiments))
    for experiment in experiments:
        if not experiment.trials:
            raise ReportError(f'experiment {experiment.id} ({experiment.source}) has no trials yet')
    return experiments


# ---------------------------------------------------------------- outputs

def format_value(value, float_format='.4g'):
    if value is None:
        return ''
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return format(value, float_format)
    return str(value)


def final_keys(experiment):
    keys = []
    for trial in experiment.trials:
        keys += [key for key in trial.final if key != 'default' and key not in keys]
    return keys


def best_intermediate(experiment, trial):
    values = [m['default'] for m in trial.intermediate if is_number(m.get('default'))]
    if not values:
        return None
    return max(values) if experiment.maximize else min(values)


def trial_rows(experiment):
    """One dict per trial, best first: the CSV's rows."""
    parameters, finals = experiment.parameter_names(), final_keys(experiment)
    rows = []
    for trial in experiment.ranked():
        row = {'trial': trial.number, 'id': trial.id, 'status': trial.status}
        row.update({name: trial.parameters.get(name) for name in parameters})
        row['default'] = trial.metric
        row.update({key: trial.final.get(key) for key in finals})
        row['best_intermediate'] = best_intermediate(experiment, trial)
        row['intermediate_results'] = len(trial.intermediate)
        row['duration_s'] = None if trial.duration_s is None else round(trial.duration_s, 1)
        rows.append(row)
    return rows


def write_csv(rows, path):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator='\n')
    writer.writeheader()
    for row in rows:
        writer.writerow({key: '' if value is None else value for key, value in row.items()})
    atomic_write_text(buffer.getvalue(), path)


def best_command(experiment, trial):
    """The experiment's trial command with the trial's parameters as flags: what NNI ran,
    runnable by hand from the trial code directory (the parameters override flags of the same name)."""
    return with_flags(experiment.profile.get('trialCommand') or 'python trial/main.py', trial.parameters)


def with_flags(command, flags):
    """`command` with each of `flags` as `--name value`, replacing the command's own value of that name."""
    for name, value in flags.items():
        # Drop the command's own `--name value` / `--name=value` so the tuned value is the one that counts.
        command = re.sub(rf'(?<!\S)--{re.escape(name)}(=\S*|\s+(?!--)\S+)?(?!\S)', '', command)
        command = f'{command.rstrip()} --{name} {shlex.quote(format_flag(value))}'
    return re.sub(r' {2,}', ' ', command).strip()


def format_flag(value):
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)  # repr-exact for floats: 0.0005 stays 0.0005


def markdown_table(experiment, rows):
    parameters = experiment.parameter_names()
    metric_keys = ['default'] + [key for key in ('test_acc',) if key in rows[0]]
    headers = ['rank', 'trial', 'id', 'status'] + parameters + [
        'val acc (default)' if key == 'default' else key for key in metric_keys] + [
        'best intermediate', 'epochs', 'duration (s)']
    lines = ['| ' + ' | '.join(headers) + ' |', '|' + '|'.join('---' for _ in headers) + '|']
    for rank, row in enumerate(rows, 1):
        cells = [str(rank) if is_number(row['default']) else '', str(row['trial']), f'`{row["id"]}`',
                 row['status']]
        cells += [format_value(row[name]) for name in parameters]
        cells += [format_value(row[key], '.2f') for key in metric_keys]
        cells += [format_value(row['best_intermediate'], '.2f'), str(row['intermediate_results']),
                  format_value(row['duration_s'], '.1f')]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def markdown_report(experiment, rows, command, plots):
    statuses = {}
    for trial in experiment.trials:
        statuses[trial.status] = statuses.get(trial.status, 0) + 1
    lines = [f'# NNI experiment `{experiment.id}`' + (f': {experiment.profile["experimentName"]}'
                                                      if experiment.profile.get('experimentName') else ''),
             '',
             f'- Source: `{experiment.source}`',
             f'- Tuner: {experiment.tuner()} ({"maximize" if experiment.maximize else "minimize"} `default`)',
             f'- Trials: {len(experiment.trials)} (' + ', '.join(f'{n} {s}' for s, n in sorted(statuses.items()))
             + ')' + ('; read from the database, where a trial killed by `nnictl stop` stays RUNNING'
                      if not experiment.source.startswith('http') and 'RUNNING' in statuses else ''),
             f'- Trial command: `{experiment.profile.get("trialCommand", "")}`']
    wall, limits = experiment.wall_time_s(), experiment.limits_text()
    if wall is not None:
        lines += [f'- Ran {wall / 60:.1f} min' + (f'; ended at its {limits}' if limits else '')
                  + ('; the trial running at the time limit was cut short'
                     if 'maxExperimentDuration' in experiment.limits_reached() else '')]
    lines += ['']
    best = experiment.best()
    if best is not None:
        lines += [f'## Best trial: {best.number} (`{best.id}`), default {best.metric:.2f}', '',
                  'Run it again:', '', '```bash', command, '```', '']
    lines += ['## Trials, best first', '', markdown_table(experiment, rows), '']
    if plots:
        lines += ['## Plots', ''] + [f'![{path.stem}]({path.name})' for path in plots] + ['']
    return '\n'.join(lines)


# ---------------------------------------------------------------- plots

def save_figure(fig, path):
    buffer = io.BytesIO()
    fig.savefig(buffer, format='png', dpi=110, bbox_inches='tight')
    atomic_write_bytes(buffer.getvalue(), path)


def plot_metric_per_trial(experiment, plt, path):
    scored = [t for t in experiment.trials if is_number(t.metric)]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter([t.number for t in scored], [t.metric for t in scored], label='trial', zorder=3)
    ax.step([t.number for t in scored], analysis.best_so_far([t.metric for t in scored], experiment.maximize),
            where='post', color='tab:red', label='best so far')
    unscored = [t.number for t in experiment.trials if not is_number(t.metric)]
    if unscored:  # failed, stopped early or still running: marked on the axis
        ax.plot(unscored, [0.02] * len(unscored), 'x', color='tab:gray', transform=ax.get_xaxis_transform(),
                label='no final result', clip_on=False)
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.set_xlabel('trial number')
    ax.set_ylabel('final metric (default)')
    ax.set_title(f'Experiment {experiment.id}: final metric per trial')
    ax.grid(alpha=0.3)
    ax.legend(loc='upper left', bbox_to_anchor=(1.01, 1))  # outside: points may sit anywhere
    save_figure(fig, path)
    plt.close(fig)


def plot_intermediate(experiment, plt, path):
    best = experiment.best()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for trial in experiment.trials:
        values = [m.get('default') for m in trial.intermediate]
        if not values:
            continue
        is_best = best is not None and trial.id == best.id
        ax.plot(range(1, len(values) + 1), values, marker='.', linewidth=2.5 if is_best else 1,
                alpha=1 if is_best else 0.5, label=f'best: trial {trial.number}' if is_best else None,
                color='tab:red' if is_best else None, zorder=3 if is_best else 2)
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.set_xlabel('intermediate result (epoch)')
    ax.set_ylabel('intermediate metric (default)')
    ax.set_title('Intermediate results per trial')
    ax.grid(alpha=0.3)
    if best is not None and best.intermediate:
        ax.legend()
    save_figure(fig, path)
    plt.close(fig)


def plot_parameters(experiment, plt, path):
    names = experiment.parameter_names()
    space = experiment.profile.get('searchSpace') or {}
    scored = [t for t in experiment.trials if is_number(t.metric)]
    columns = min(3, len(names))
    rows = math.ceil(len(names) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        points = [(t.parameters[name], t.metric) for t in scored if name in t.parameters]
        values = [value for value, _ in points]
        kind = space.get(name, {}).get('_type')
        if values and kind != 'choice' and all(is_number(v) for v in values):
            ax.scatter(values, [m for _, m in points])
            if kind in ('loguniform', 'qloguniform'):
                ax.set_xscale('log')
                decades = math.log10(max(values) / min(values)) if min(values) > 0 else 0
                ax.xaxis.set_major_locator(plt.LogLocator(subs=(1, 2, 5) if decades < 1.5 else (1,)))
                ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda value, _: f'{value:g}'))
                ax.xaxis.set_minor_formatter(plt.NullFormatter())
        else:  # a choice, in the search space's order: evenly spaced, whatever the values
            categories = [str(c.get('_name', c)) if isinstance(c, dict) else str(c)
                          for c in space.get(name, {}).get('_value', [])] if kind == 'choice' else []
            categories += sorted({str(v) for v in values} - set(categories))
            ax.scatter([categories.index(str(v)) for v in values], [m for _, m in points])
            ax.set_xticks(range(len(categories)), categories, rotation=30 if len(categories) > 3 else 0,
                          ha='right' if len(categories) > 3 else 'center')
            ax.set_xlim(-0.5, len(categories) - 0.5)
        ax.set_xlabel(name)
        ax.set_ylabel('final metric')
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    fig.suptitle('Each parameter against the final metric')
    fig.tight_layout(rect=(0, 0, 1, 0.98))  # leave the suptitle its own strip above the panels
    save_figure(fig, path)
    plt.close(fig)


def pyplot():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def write_plots(experiment, out):
    plt = pyplot()
    plots = [out / 'metric_per_trial.png', out / 'intermediate.png']
    plot_metric_per_trial(experiment, plt, plots[0])
    plot_intermediate(experiment, plt, plots[1])
    if experiment.parameter_names():
        plots.append(out / 'parameters.png')
        plot_parameters(experiment, plt, plots[2])
    return plots


# ---------------------------------------------------------------- over all trials: importance, Pareto front

@dataclass
class Importance:
    shares: list  # (parameter, share of the predicted metric's variance), largest first
    r2: float  # the forest's out-of-bag R^2
    trials: int  # the trials it rests on

    @property
    def noise(self):
        """The parameters hardly predict the metric on held-out trials: read the shares as noise."""
        return self.r2 < analysis.MIN_R2_FOR_IMPORTANCE


def scored_trials(experiments):
    """(experiment, trial) for every trial with a final metric."""
    return [(experiment, trial) for experiment in experiments for trial in experiment.trials if is_number(trial.metric)]


def training_time(trial):
    """The trial's own training seconds (data loading and the final test excluded), else its run time."""
    value = trial.final.get('train_time')
    return value if is_number(value) else trial.duration_s


def command_values(experiment):
    """What the experiment's trial command sets for every trial option (its flags, else the trial's
    defaults), so that a trial lacking a parameter gets the value it trained with: a plain
    tuner's fixed --epochs beside Hyperband's budgets, or Adam's beta1 where only SGD tunes momentum."""
    words = shlex.split(experiment.profile.get('trialCommand') or '')
    if len(words) < 2 or not words[1].endswith('trial/main.py'):
        return {}
    try:
        return vars(resolve(words[2:]))
    except (ConfigError, SystemExit):  # a command the trial refuses: its trials failed anyway
        return {}


def parameter_importance(experiments):
    """fANOVA first-order importance over every finished trial; None with too few of them."""
    pairs = scored_trials(experiments)
    if len(pairs) < analysis.MIN_TRIALS_FOR_IMPORTANCE:
        return None
    names, space = [], {}
    for experiment in experiments:
        names += [name for name in experiment.parameter_names() if name not in names]
        space = {**(experiment.profile.get('searchSpace') or {}), **space}
    fixed = {experiment.id: command_values(experiment) for experiment in experiments}
    X = analysis.encode([{**fixed[e.id], **trial.parameters} for e, trial in pairs], names, space)
    varied = [j for j, name in enumerate(names) if len({str(x) for x in X[:, j]}) > 1]  # a constant explains nothing
    if not varied:
        return None
    shares, r2 = analysis.first_order_importance(X[:, varied], [trial.metric for _, trial in pairs])
    return Importance(sorted(zip((names[j] for j in varied), shares.tolist()), key=lambda item: -item[1]),
                      r2, len(pairs))


def pareto_trials(experiments):
    """(experiment, trial) on the front of the final metric against training time, cheapest first."""
    pairs = [(e, t) for e, t in scored_trials(experiments) if training_time(t) is not None]
    front = analysis.pareto_front([t.metric if e.maximize else -t.metric for e, t in pairs],
                                  [training_time(t) for _, t in pairs])
    return pairs, [pairs[i] for i in front]


def plot_importance(importance, plt, path):
    names = [name for name, _ in importance.shares][::-1]  # largest at the top
    shares = [share for _, share in importance.shares][::-1]
    fig, ax = plt.subplots(figsize=(7, 0.8 + 0.38 * len(names)))
    bars = ax.barh(names, shares, color='tab:gray' if importance.noise else 'tab:blue')
    ax.bar_label(bars, [f'{share:.0%}' for share in shares], padding=3, fontsize=9)
    ax.set_xlim(0, max(1e-9, max(shares)) * 1.18)
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda value, _: f'{value:.0%}'))
    ax.set_xlabel('share of the predicted metric\'s variance explained by the parameter alone')
    ax.set_title(f'Parameter importance (first-order fANOVA, random forest)\n'
                 f'{importance.trials} trials, forest out-of-bag R² {importance.r2:.2f}'
                 + (f'\nbelow {analysis.MIN_R2_FOR_IMPORTANCE}: the parameters hardly predict the metric; read as noise'
                    if importance.noise else ''), fontsize=11)
    ax.grid(axis='x', alpha=0.3)
    save_figure(fig, path)
    plt.close(fig)


def plot_pareto(experiments, pairs, front, plt, path):
    fig, ax = plt.subplots(figsize=(8, 5))
    several = len(experiments) > 1
    for experiment in experiments:
        mine = [t for e, t in pairs if e is experiment]
        ax.scatter([training_time(t) for t in mine], [t.metric for t in mine], s=18, alpha=0.6,
                   label=f'{experiment.id} ({experiment.tuner()})' if several else 'trial')
    ax.step([training_time(t) for _, t in front], [t.metric for _, t in front], where='post', color='tab:red',
            linewidth=1.2, zorder=3)
    ax.scatter([training_time(t) for _, t in front], [t.metric for _, t in front], s=70, facecolors='none',
               edgecolors='tab:red', linewidths=1.5, zorder=4, label='Pareto front')
    ax.margins(x=0.1)  # room for the labels of the front's last points
    ax.get_xlim(), ax.get_ylim()  # fixes the limits, so that transData gives where each point is drawn
    placed = []  # display positions of the points labelled so far
    for e, t in front:
        x, y = ax.transData.transform((training_time(t), t.metric))
        # Where the front crowds (trials of equal cost and metric) a label would cover its neighbour's:
        # the point keeps its circle, and report.md's table lists every trial on the front.
        if any(abs(x - px) < 50 and abs(y - py) < 14 for px, py in placed):
            continue
        k = len(placed)  # labels alternate below-right and above-left: neighbours stay apart
        placed.append((x, y))
        ax.annotate(f'{e.id}:{t.number}' if several else f'trial {t.number}', (training_time(t), t.metric),
                    textcoords='offset points', xytext=(5, -11) if k % 2 == 0 else (-5, 6),
                    ha='left' if k % 2 == 0 else 'right', fontsize=8, color='tab:red')
    ax.set_xlabel('training time of the trial (s)')
    ax.set_ylabel('final metric (default)')
    ax.set_title('Final metric against training time: the front no trial beats on both')
    ax.grid(alpha=0.3)
    ax.legend(loc='lower right', fontsize=8)
    save_figure(fig, path)
    plt.close(fig)


def trial_set_sections(experiments, out, plt):
    """report.md's importance and Pareto sections over the experiments' trials, and their PNGs."""
    lines, plots = ['## Which parameters matter', ''], []
    importance = parameter_importance(experiments)
    if importance is None:
        lines += [f'Not computed: it needs at least {analysis.MIN_TRIALS_FOR_IMPORTANCE} trials with a final '
                  'result and a parameter that varies.', '']
    else:
        plots.append(out / 'importance.png')
        plot_importance(importance, plt, plots[-1])
        lines += [f'First-order functional ANOVA (fANOVA) of a random forest fitted to the {importance.trials} '
                  'trials with a final result: the share of the predicted metric\'s variance each parameter '
                  'explains alone (the rest of 100% is interactions). The forest\'s out-of-bag R² is '
                  f'{importance.r2:.2f}' + (': the parameters hardly predict the metric here, so read these '
                                            'shares as noise.' if importance.noise else '.'), '',
                  '| parameter | importance |', '|---|---|']
        lines += [f'| {name} | {share:.1%} |' for name, share in importance.shares]
        lines += ['', f'![importance]({plots[-1].name})', '']
    pairs, front = pareto_trials(experiments)
    if front:
        plots.append(out / 'pareto.png')
        plot_pareto(experiments, pairs, front, plt, plots[-1])
        lines += ['## Accuracy against training time: the Pareto front', '',
                  f'Of {len(pairs)} trials, these {len(front)} are beaten by no other on both the final metric '
                  'and training time (cheapest first):', '',
                  '| experiment | trial | default | test_acc | training time (s) | command |',
                  '|---|---|---|---|---|---|']
        lines += [f'| {e.id} | {t.number} | {format_value(t.metric, ".2f")} | '
                  f'{format_value(t.final.get("test_acc"), ".2f")} | {format_value(training_time(t), ".1f")} | '
                  f'`{best_command(e, t)}` |' for e, t in front]
        lines += ['', f'![pareto]({plots[-1].name})', '']
    return lines, plots


# ---------------------------------------------------------------- several experiments

def comparison_rows(experiments):
    """One dict per experiment, best first: comparison.csv's rows."""
    rows = []
    for experiment in experiments:
        best, wall = experiment.best(), experiment.wall_time_s()
        rows.append({
            'experiment': experiment.id, 'name': experiment.profile.get('experimentName', ''),
            'tuner': experiment.tuner(), 'trials': len(experiment.trials),
            'succeeded': sum(trial.status == 'SUCCEEDED' for trial in experiment.trials),
            'wall_time_min': None if wall is None else round(wall / 60, 1),
            'limit_reached': experiment.limits_text(),
            'best_trial': best.number if best else None, 'best_val': best.metric if best else None,
            'best_test': best.final.get('test_acc') if best else None,
            'best_train_time_s': round(training_time(best), 1) if best and training_time(best) else None,
            'source': experiment.source})
    sign = 1 if experiments[0].maximize else -1
    return sorted(rows, key=lambda row: -sign * row['best_val'] if is_number(row['best_val']) else math.inf)


def finished_in_order(experiment):
    """Trials with a final metric in the order they ended, each with its minutes since the experiment began."""
    done = sorted((t for t in experiment.trials if is_number(t.metric) and t.end_ms is not None),
                  key=lambda t: t.end_ms)
    start = experiment.start_ms or min((t.start_ms for t in experiment.trials if t.start_ms is not None), default=0)
    return done, [(t.end_ms - start) / 60000 for t in done]


def plot_best_so_far(experiments, plt, path):
    fig, (by_time, by_count) = plt.subplots(1, 2, figsize=(12, 4.6), sharey=True)
    # Tuners that end level draw on top of each other: a dash pattern each keeps every one visible.
    styles = ('-', '--', ':', '-.')
    for number, experiment in enumerate(experiments):
        done, minutes = finished_in_order(experiment)
        if not done:
            continue
        best = analysis.best_so_far([t.metric for t in done], experiment.maximize)
        wall = (experiment.wall_time_s() or 0) / 60
        style = styles[number % len(styles)]
        line, = by_time.step(minutes + [max(wall, minutes[-1])], best + best[-1:], where='post', linewidth=1.8,
                             linestyle=style, label=f'{experiment.id} ({experiment.tuner()})')
        by_count.step(range(1, len(done) + 1), best, where='post', linewidth=1.8, linestyle=style,
                      color=line.get_color())
    by_time.set_xlabel('wall-clock time since the experiment started (min)')
    by_count.set_xlabel('trials finished')
    by_count.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    by_time.set_ylabel('best final metric so far (default)')
    for ax in (by_time, by_count):
        ax.grid(alpha=0.3)
    by_time.legend(loc='lower right', fontsize=8)
    fig.suptitle('Best so far, all experiments')
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def comparison_table(rows):
    headers = ['experiment', 'tuner', 'trials (succeeded)', 'wall time (min)', 'limit reached', 'best trial',
               'best val (default)',
               'its test_acc', 'its training time (s)']
    lines = ['| ' + ' | '.join(headers) + ' |', '|' + '|'.join('---' for _ in headers) + '|']
    for row in rows:
        lines.append(f'| [{row["experiment"]}]({row["experiment"]}/report.md) | {row["tuner"]} | '
                     f'{row["trials"]} ({row["succeeded"]}) | {format_value(row["wall_time_min"], ".1f")} | '
                     f'{row["limit_reached"] or "-"} | '
                     f'{format_value(row["best_trial"])} | {format_value(row["best_val"], ".2f")} | '
                     f'{format_value(row["best_test"], ".2f")} | {format_value(row["best_train_time_s"], ".1f")} |')
    return '\n'.join(lines)


def write_comparison(experiments, out):
    """Each experiment's report in out/<id>/, and the comparison in out/; returns the paths written."""
    out = Path(out)
    written = []
    for experiment in experiments:
        written += write_report(experiment, out / experiment.id)
    rows = comparison_rows(experiments)
    write_csv(rows, out / 'comparison.csv')
    plt = pyplot()
    plot_best_so_far(experiments, plt, out / 'best_so_far.png')
    sections, plots = trial_set_sections(experiments, out, plt)
    lines = [f'# {len(experiments)} NNI experiments compared', '',
             f'Each tunes {experiments[0].tuned_metric()}. One folder per experiment holds its own report.', '',
             comparison_table(rows), '', '## Best so far', '', '![best_so_far](best_so_far.png)', ''] + sections
    lines += ['## Sources', ''] + [f'- `{e.id}`: `{e.source}`' for e in experiments] + ['']
    atomic_write_text('\n'.join(lines), out / 'report.md')
    return written + [out / 'comparison.csv', out / 'report.md', out / 'best_so_far.png'] + plots


# ---------------------------------------------------------------- entry point

def write_report(experiment, out):
    """Writes every output into `out`; returns their paths."""
    if not experiment.trials:
        raise ReportError(f'experiment {experiment.id} ({experiment.source}) has no trials yet')
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = trial_rows(experiment)
    write_csv(rows, out / 'trials.csv')
    written = [out / 'trials.csv']
    best = experiment.best()
    command = best_command(experiment, best) if best is not None else ''
    if best is not None:
        atomic_write_text(command + '\n', out / 'best_command.txt')
        written.append(out / 'best_command.txt')
    plots = write_plots(experiment, out)
    sections, more_plots = trial_set_sections([experiment], out, pyplot())
    atomic_write_text(markdown_report(experiment, rows, command, plots) + '\n'.join(sections), out / 'report.md')
    return written + [out / 'report.md'] + plots + more_plots


def main(argv=None):
    parser = ArgumentParser(
        prog='python -m cifar_automl.report',
        description='Export NNI experiments\' trials: trials.csv, report.md, best_command.txt, PNG plots; '
                    'with several experiments, also one comparison of them all.')
    parser.add_argument('experiments', nargs='*', metavar='EXPERIMENT',
                        help='experiment id (nnictl experiment list --all), experiment directory (holding '
                             'db/nni.sqlite, e.g. ~/nni-experiments/ID or a copy of it), or a folder holding '
                             'experiment directories')
    parser.add_argument('--url', default='', help='a running experiment\'s WebUI address, http://HOST:PORT '
                                                  '(e.g. through an SSH tunnel)')
    parser.add_argument('--out', default='', help='output directory (default: report-<experiment id>, '
                                                  'or report-comparison for several)')
    args = parser.parse_args(argv)
    if not args.experiments and not args.url:
        parser.error('give an EXPERIMENT id or directory, or --url')
    try:
        started = time.perf_counter()
        experiments = load_all(args.experiments, args.url)
        if len(experiments) == 1:
            written = write_report(experiments[0], args.out or f'report-{experiments[0].id}')
        else:
            written = write_comparison(experiments, args.out or 'report-comparison')
    except ReportError as error:
        print(f'error: {error}', file=sys.stderr, flush=True)
        return 2
    for experiment in experiments:
        best = experiment.best()
        print(f'experiment {experiment.id} ({experiment.tuner()}): {len(experiment.trials)} trials from '
              f'{experiment.source}')
        if best is not None:
            print(f'best: trial {best.number} ({best.id}), default {best.metric:.2f}')
            print(f'  {best_command(experiment, best)}')
    for path in written:
        print(f'wrote {path}')
    print(f'({time.perf_counter() - started:.1f}s)')
    return 0

if __name__ == '__main__':
    sys.exit(main())
