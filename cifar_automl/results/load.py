"""Experiments read from where NNI keeps them: a running one's REST API (the one the WebUI
reads), a stopped or copied one's db/nni.sqlite (its trial jobs replayed from their events, as
NNI's manager does), or an id in nnictl's registry. Both sources are read into the shapes the
REST API serves (`/experiment`, `/trial-jobs`, `/metric-data`), so everything after loading is
one code path."""
import json
import sqlite3
import sys
import urllib.error
import urllib.request
from pathlib import Path

from ..config import flatten_nni_params
from .experiment import Experiment, ReportError, Trial

TERMINAL_EVENTS = ('SUCCEEDED', 'FAILED', 'USER_CANCELED', 'SYS_CANCELED', 'EARLY_STOPPED')
REGISTRY = Path('~/nni-experiments/.experiment')  # where nnictl lists the experiments it started


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


def is_experiment_directory(path):
    return (path / 'db' / 'nni.sqlite').is_file()


def without_repeating_links(arguments):
    """The arguments less each link to an experiment directory that an argument before or after it
    names too: NNI keeps a `_latest` link beside the experiments it starts, so `report EXPDIR/*`
    names the latest one twice, once by its link. Each link skipped is said on stderr."""
    named = {}  # the experiment directories the arguments that are not links name, resolved
    for argument in arguments:
        path = Path(argument).expanduser()
        if path.is_dir() and not path.is_symlink():
            inside = [path] if is_experiment_directory(path) else experiment_directories(path)
            named.update((directory.resolve(), directory) for directory in inside)
    kept = []
    for argument in arguments:
        path = Path(argument).expanduser()
        if path.is_symlink() and is_experiment_directory(path):
            if path.resolve() in named:
                print(f'note: {argument} is a link to {named[path.resolve()]}, read once', file=sys.stderr)
                continue
            named[path.resolve()] = path
        kept.append(argument)
    return kept


def load_all(arguments, url=None):
    """Every experiment the arguments name: ids, experiment directories, folders holding
    experiment directories, and a running one's --url. Raises ReportError before anything is
    written when one is missing, or when they do not measure the same metric."""
    experiments = [load_rest(url)] if url else []
    for argument in without_repeating_links(arguments):
        path = Path(argument).expanduser()
        inside = experiment_directories(path) if path.is_dir() and not is_experiment_directory(path) else []
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
