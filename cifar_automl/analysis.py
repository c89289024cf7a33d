"""What a set of finished trials says beyond its best one: which parameters matter (a
functional-ANOVA decomposition of a random forest fitted to the trials) and which trials trade
accuracy against training time best (the Pareto front). Plain numbers in, plain numbers out:
report.py reads the experiments and draws the results.
"""
import math

import numpy as np

MIN_TRIALS_FOR_IMPORTANCE = 8  # fewer finished trials and a forest fits noise
MIN_R2_FOR_IMPORTANCE = 0.2  # a forest that predicts held-out trials worse than this: its shares are noise


def best_so_far(values, maximize=True):
    """The running best of `values`, in their order."""
    running, best = [], None
    for value in values:
        if best is None or (value > best if maximize else value < best):
            best = value
        running.append(best)
    return running


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
