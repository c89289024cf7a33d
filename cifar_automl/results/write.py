"""One experiment's report: trials.csv, best_command.txt, report.md and its PNGs."""
import csv
import io
from pathlib import Path

from ..files import atomic_write_text
from .commands import best_command
from .experiment import ReportError, format_value, is_number
from .fidelity import fidelity_section
from .importance import importance_section
from .pareto import pareto_section
from .plots import pyplot, write_plots


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


def trial_set_sections(experiments, out, plt):
    """report.md's sections over the experiments' trials (whether short trials can be trusted,
    importance, Pareto front), and their PNGs."""
    lines, plots = fidelity_section(experiments), []
    for section in (importance_section, pareto_section):
        more, plot = section(experiments, out, plt)
        lines += more
        plots += [plot] if plot else []
    return lines, plots


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
