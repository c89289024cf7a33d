"""Several experiments compared: comparison.csv, best-so-far curves overlaid, and report.md with
importance and the Pareto front over all their trials, beside each experiment's own report."""
import math
from pathlib import Path

from ..files import atomic_write_text
from .experiment import format_value, is_number, training_time
from .plots import best_so_far, pyplot, save_figure
from .write import trial_set_sections, write_csv, write_report


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
        best = best_so_far([t.metric for t in done], experiment.maximize)
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
