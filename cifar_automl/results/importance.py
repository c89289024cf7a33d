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


def first_order_importance(X, y, seed=0, background=256, grid=48):
    """Functional ANOVA's first-order importance of each column of X for y, on a random forest.

    The forest stands in for the unknown response surface f. Over configurations drawn from the
    product of the parameters' marginal distributions (each column of X resampled on its own,
    as fANOVA's decomposition assumes independent parameters), the importance of parameter j
    is Var_xj( E_x-j[f(xj, x-j)] ) / Var(f): the share of the predicted metric's variance that
    parameter j explains alone. The shares need not sum to 1; the rest is interactions.
    Hutter et al. (ICML 2014) integrate over each tree's partition exactly under uniform
    marginals; here the marginals are the trials' own (the tuner's sampling, concentrated
    where it searched) and the integrals are Monte Carlo.

    Returns (importances, forest out-of-bag R^2): an R^2 near 0 or below means the forest
    did not find the metric predictable from the parameters, and the importances mean little.
    """
    from sklearn.ensemble import RandomForestRegressor
    X, y = np.asarray(X, dtype=float), np.asarray(y, dtype=float)
    forest = RandomForestRegressor(n_estimators=200, min_samples_leaf=2, max_features=0.5, oob_score=True,
                                   random_state=seed, n_jobs=1).fit(X, y)
    rng = np.random.default_rng(seed)
    n, d = X.shape
    product = np.column_stack([rng.choice(X[:, j], background) for j in range(d)])
    importances = np.zeros(d)
    for j in range(d):
        values = rng.choice(X[:, j], min(grid, n), replace=False)
        batch = np.repeat(product[None], len(values), axis=0)
        batch[:, :, j] = values[:, None]
        predictions = forest.predict(batch.reshape(-1, d)).reshape(len(values), background)
        # Total variance over the same points: the share then stays within [0, 1] despite sampling noise.
        total = predictions.var()
        importances[j] = predictions.mean(axis=1).var() / total if total > 0 else 0.0
    return importances, forest.oob_score_


@dataclass
class Importance:
    shares: list  # (parameter, share of the predicted metric's variance), largest first
    r2: float  # the forest's out-of-bag R^2
    trials: int  # the trials it rests on

    @property
    def noise(self):
        """The parameters hardly predict the metric on held-out trials: read the shares as noise."""
        return self.r2 < MIN_R2_FOR_IMPORTANCE


def parameter_importance(experiments):
    """fANOVA first-order importance over every finished trial; None with too few of them."""
    pairs = scored_trials(experiments)
    if len(pairs) < MIN_TRIALS_FOR_IMPORTANCE:
        return None
    names, space = [], {}
    for experiment in experiments:
        names += [name for name in experiment.parameter_names() if name not in names]
        space = {**(experiment.profile.get('searchSpace') or {}), **space}
    fixed = {experiment.id: command_values(experiment) for experiment in experiments}
    X = encode([{**fixed[e.id], **trial.parameters} for e, trial in pairs], names, space)
    varied = [j for j, name in enumerate(names) if len({str(x) for x in X[:, j]}) > 1]  # a constant explains nothing
    if not varied:
        return None
    shares, r2 = first_order_importance(X[:, varied], [trial.metric for _, trial in pairs])
    return Importance(sorted(zip((names[j] for j in varied), shares.tolist()), key=lambda item: -item[1]),
                      r2, len(pairs))


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
              'explains alone (the rest of 100% is interactions). The forest\'s out-of-bag R² is '
              f'{importance.r2:.2f}' + (': the parameters hardly predict the metric here, so read these '
                                        'shares as noise.' if importance.noise else '.'), '',
              '| parameter | importance |', '|---|---|']
    lines += [f'| {name} | {share:.1%} |' for name, share in importance.shares]
    return lines + ['', f'![importance]({plot.name})', ''], plot
