"""One experiment's plots: final metric per trial, intermediate results, each parameter against
the metric. PNGs through matplotlib's Agg backend, written atomically."""
import io
import math

from ..files import atomic_write_bytes
from .experiment import is_number


def best_so_far(values, maximize=True):
    """The running best of `values`, in their order."""
    running, best = [], None
    for value in values:
        if best is None or (value > best if maximize else value < best):
            best = value
        running.append(best)
    return running


def save_figure(fig, path):
    buffer = io.BytesIO()
    fig.savefig(buffer, format='png', dpi=110, bbox_inches='tight')
    atomic_write_bytes(buffer.getvalue(), path)


def pyplot():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def plot_metric_per_trial(experiment, plt, path):
    scored = [t for t in experiment.trials if is_number(t.metric)]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter([t.number for t in scored], [t.metric for t in scored], label='trial', zorder=3)
    ax.step([t.number for t in scored], best_so_far([t.metric for t in scored], experiment.maximize),
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


def write_plots(experiment, out):
    plt = pyplot()
    plots = [out / 'metric_per_trial.png', out / 'intermediate.png']
    plot_metric_per_trial(experiment, plt, plots[0])
    plot_intermediate(experiment, plt, plots[1])
    if experiment.parameter_names():
        plots.append(out / 'parameters.png')
        plot_parameters(experiment, plt, plots[2])
    return plots
