"""Which trials trade accuracy against training time best: the Pareto front, in report.md and
pareto.png."""
import math

from .commands import best_command
from .experiment import format_value, scored_trials, training_time
from .plots import save_figure


def pareto_front(accuracies, costs):
    """Indices of the points no other point beats on both counts (higher accuracy, lower cost),
    cheapest first."""
    order = sorted(range(len(costs)), key=lambda i: (costs[i], -accuracies[i]))
    front, best = [], -math.inf
    for i in order:
        if accuracies[i] > best:
            front.append(i)
            best = accuracies[i]
    return front


def pareto_trials(experiments):
    """(experiment, trial) on the front of the final metric against training time, cheapest first."""
    pairs = [(e, t) for e, t in scored_trials(experiments) if training_time(t) is not None]
    front = pareto_front([t.metric if e.maximize else -t.metric for e, t in pairs],
                                  [training_time(t) for _, t in pairs])
    return pairs, [pairs[i] for i in front]


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


def pareto_section(experiments, out, plt):
    """report.md's Pareto-front section over the experiments' trials, and its PNG (or None)."""
    pairs, front = pareto_trials(experiments)
    if not front:
        return [], None
    plot = out / 'pareto.png'
    plot_pareto(experiments, pairs, front, plt, plot)
    lines = ['## Accuracy against training time: the Pareto front', '',
             f'Of {len(pairs)} trials, these {len(front)} are beaten by no other on both the final metric '
             'and training time (cheapest first):', '',
             '| experiment | trial | default | test_acc | training time (s) | command |',
             '|---|---|---|---|---|---|']
    lines += [f'| {e.id} | {t.number} | {format_value(t.metric, ".2f")} | '
              f'{format_value(t.final.get("test_acc"), ".2f")} | {format_value(training_time(t), ".1f")} | '
              f'`{best_command(e, t)}` |' for e, t in front]
    return lines + ['', f'![pareto]({plot.name})', ''], plot
