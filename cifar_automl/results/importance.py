"""Which parameters matter: functional ANOVA's first-order importance (Hutter, Hoos and
Leyton-Brown, ICML 2014) of a random forest fitted to the trials, in report.md and importance.png."""
import math
from dataclasses import dataclass

import numpy as np

from .commands import command_values
from .experiment import scored_trials
from .plots import save_figure

MIN_TRIALS_FOR_IMPORTANCE = 8  # fewer finished trials and a forest fits noise
MIN_R2_FOR_IMPORTANCE = 0.2  # a forest that predicts held-out trials worse than this: its shares are noise


def encode(parameter_dicts, names, space):
    """Trials' parameters as a float matrix for a forest: numbers as they are (log10 of
    log-scaled ones, so that a split halves a range as the tuner samples it), anything else
    (choices, strings, booleans) as its index in the search space's order, and a parameter a
    trial lacks (the other branch of a nested choice) as NaN, which scikit-learn's forests route
    as missing."""
    columns = []
    for name in names:
        values = [params.get(name) for params in parameter_dicts]
        kind = (space.get(name) or {}).get('_type', '')
        present = [v for v in values if v is not None]
        if kind != 'choice' and present and all(is_plain_number(v) for v in present):
            log = kind in ('loguniform', 'qloguniform') and min(present) > 0
            columns.append([math.nan if v is None else (math.log10(v) if log else float(v)) for v in values])
        else:
            categories = [str(c.get('_name', c)) if isinstance(c, dict) else str(c)
                          for c in (space.get(name) or {}).get('_value', [])] if kind == 'choice' else []
            categories += sorted({str(v) for v in present} - set(categories))
            columns.append([math.nan if v is None else float(categories.index(str(v))) for v in values])
    return np.array(columns, dtype=float).T.reshape(len(parameter_dicts), len(names))


def is_plain_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def first_order_importance(X, y, seed=0):
    """Functional ANOVA's first-order importance of each column of X for y, on a random forest.

    The forest's prediction f stands in for the unknown response surface. Over the product of
    the parameters' marginal distributions (fANOVA's decomposition assumes independent
    parameters), the importance of parameter j is Var_xj( E_x-j[f(xj, x-j)] ) / Var(f): the
    share of the predicted metric's variance that parameter j explains alone. Every share has the
    same denominator, the variance of f over that one distribution, so the shares sum to at most
    1; the rest is interactions. The marginals are the trials' own (each column's values equally
    likely: the tuner's sampling, concentrated where it searched), where Hutter et al. (ICML 2014)
    take them uniform over the search space; as in their fANOVA the integrals are exact, over the
    boxes into which the trees cut the space (forest_boxes), not sampled. Var(f) sums over pairs
    of leaves: a few seconds for 60 trials on 2 cores, growing with the square of the trials.

    Returns (importances, forest out-of-bag R^2): an R^2 near 0 or below means the forest
    did not find the metric predictable from the parameters, and the importances mean little.
    """
    from sklearn.ensemble import RandomForestRegressor
    X, y = np.asarray(X, dtype=float), np.asarray(y, dtype=float)
    forest = RandomForestRegressor(n_estimators=200, min_samples_leaf=2, max_features=0.5, oob_score=True,
                                   random_state=seed, n_jobs=1).fit(X, y)
    n, d = X.shape
    # Each column's values as the trees compare them (in float32), sorted; missing ones apart.
    columns = [np.sort(X[~np.isnan(X[:, k]), k].astype(np.float32).astype(float)) for k in range(d)]
    missing = np.array([n - len(column) for column in columns])
    value, low, high, with_missing = forest_boxes(forest, columns)
    mass = (np.clip(high - low, 0, None) + with_missing * missing) / n  # (leaf, column): P(x_k in the box)
    trees = len(forest.estimators_)
    # f - E[f] as a sum over every tree's leaves: a tree's leaves cover the space once, so taking
    # E[f] / trees off each leaf takes E[f] off f (and Var(f) needs no E[f^2] - E[f]^2).
    value = (value - value @ mass.prod(axis=1) / trees) / trees
    total = variance(value, low, high, with_missing, missing, n)
    if total <= 1e-12 * np.mean(y ** 2):  # the forest predicts one value
        return np.zeros(d), forest.oob_score_
    importances = np.zeros(d)
    for j in range(d):
        weight = value * np.delete(mass, j, axis=1).prod(axis=1)  # each leaf's E over x-j, given xj in it
        # E_x-j[f] - E[f] at each of column j's values, in sorted order: the leaves whose interval holds it
        steps = np.zeros(len(columns[j]) + 1)
        np.add.at(steps, low[:, j], weight)
        np.add.at(steps, np.maximum(low[:, j], high[:, j]), -weight)
        marginal = np.cumsum(steps)[:-1]
        importances[j] = ((marginal ** 2).sum() + missing[j] * (weight @ with_missing[:, j]) ** 2) / n / total
    return importances, forest.oob_score_


def forest_boxes(forest, columns):
    """Every leaf of the forest's trees as a box: its value, and per column the interval
    [low, high) of positions in that column's sorted values the leaf's path admits (a split
    sends x <= threshold left), and whether it admits a missing value (which a split sends the
    way predict does). Arrays (leaf,), (leaf, column), (leaf, column), (leaf, column)."""
    values, lows, highs, missings = [], [], [], []
    for estimator in forest.estimators_:
        tree = estimator.tree_
        stack = [(0, np.zeros(len(columns), int), np.array([len(c) for c in columns]),
                  np.ones(len(columns), bool))]
        while stack:
            node, low, high, with_missing = stack.pop()
            left, right = tree.children_left[node], tree.children_right[node]
            if left == right:  # a leaf: scikit-learn marks both children -1
                values.append(tree.value[node, 0, 0])
                lows.append(low)
                highs.append(high)
                missings.append(with_missing)
                continue
            k = tree.feature[node]
            cut = np.searchsorted(columns[k], tree.threshold[node], side='right')
            missing_left = bool(tree.missing_go_to_left[node])
            left_high, right_low = high.copy(), low.copy()
            left_high[k], right_low[k] = min(high[k], cut), max(low[k], cut)
            left_missing, right_missing = with_missing.copy(), with_missing.copy()
            left_missing[k], right_missing[k] = with_missing[k] and missing_left, with_missing[k] and not missing_left
            stack += [(left, low, left_high, left_missing), (right, right_low, high, right_missing)]
    return np.array(values), np.array(lows), np.array(highs), np.array(missings)


def variance(value, low, high, with_missing, missing, n):
    """E[g^2] over the product distribution for g(x) = the sum of `value` over the leaves whose
    boxes hold x (Var(f) for g = f - E[f]): the sum over pairs of leaves of their values times the
    probability of their boxes' intersection, each pair once, in blocks of rows that keep the
    arrays to a few million entries."""
    low, high, missing = low.astype(np.int32), high.astype(np.int32), missing.astype(np.int32)
    leaves, columns = low.shape
    rows = max(1, 2_000_000 // (leaves * columns))
    total = 0.0
    for start in range(0, leaves, rows):
        stop = min(leaves, start + rows)
        count = np.minimum(high[start:stop, None], high[None, start:])
        count -= np.maximum(low[start:stop, None], low[None, start:])
        np.clip(count, 0, None, out=count)
        if missing.any():
            count += (with_missing[start:stop, None] & with_missing[None, start:]) * missing
        both = value[start:stop] @ (count / n).prod(axis=2)
        # the block against every leaf from `start` on: pairs off the diagonal block count twice
        total += 2 * both @ value[start:] - both[:stop - start] @ value[start:stop]
    return total


@dataclass
class Importance:
    shares: list  # (parameter, share of the predicted metric's variance), largest first
    r2: float  # the forest's out-of-bag R^2
    trials: int  # the trials it rests on

    @property
    def noise(self):
        """The parameters hardly predict the metric on held-out trials: read the shares as noise."""
        return self.r2 < MIN_R2_FOR_IMPORTANCE


def finished_trials(experiments):
    """What the importance rests on: (parameter names, the merged search space, each finished
    trial's parameters with what its experiment's command fixes for the rest, their final metrics)."""
    pairs = scored_trials(experiments)
    names, space = [], {}
    for experiment in experiments:
        names += [name for name in experiment.parameter_names() if name not in names]
        space = {**(experiment.profile.get('searchSpace') or {}), **space}
    fixed = {experiment.id: command_values(experiment) for experiment in experiments}
    return (names, space, [{**fixed[e.id], **trial.parameters} for e, trial in pairs],
            [trial.metric for _, trial in pairs])


def parameter_importance(experiments):
    """fANOVA first-order importance over every finished trial; None with too few of them."""
    names, space, parameters, metrics = finished_trials(experiments)
    if len(metrics) < MIN_TRIALS_FOR_IMPORTANCE:
        return None
    X = encode(parameters, names, space)
    varied = [j for j, name in enumerate(names) if len({str(x) for x in X[:, j]}) > 1]  # a constant explains nothing
    if not varied:
        return None
    shares, r2 = first_order_importance(X[:, varied], metrics)
    return Importance(sorted(zip((names[j] for j in varied), shares.tolist()), key=lambda item: -item[1]),
                      r2, len(metrics))


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
                 + (f'\nbelow {MIN_R2_FOR_IMPORTANCE}: the parameters hardly predict the metric; read as noise'
                    if importance.noise else ''), fontsize=11)
    ax.grid(axis='x', alpha=0.3)
    save_figure(fig, path)
    plt.close(fig)


def importance_section(experiments, out, plt):
    """report.md's importance section over the experiments' trials, and its PNG (or None)."""
    lines = ['## Which parameters matter', '']
    importance = parameter_importance(experiments)
    if importance is None:
        return lines + [f'Not computed: it needs at least {MIN_TRIALS_FOR_IMPORTANCE} trials with a final '
                        'result and a parameter that varies.', ''], None
    plot = out / 'importance.png'
    plot_importance(importance, plt, plot)
    lines += [f'First-order functional ANOVA (fANOVA) of a random forest fitted to the {importance.trials} '
              'trials with a final result: the share of the predicted metric\'s variance each parameter '
              f'explains alone (together {sum(share for _, share in importance.shares):.1%}; the rest of 100% is '
              'interactions). The forest\'s out-of-bag R² is '
              f'{importance.r2:.2f}' + (': the parameters hardly predict the metric here, so read these '
                                        'shares as noise.' if importance.noise else '.'), '',
              '| parameter | importance |', '|---|---|']
    lines += [f'| {name} | {share:.1%} |' for name, share in importance.shares]
    return lines + ['', f'![importance]({plot.name})', ''], plot
