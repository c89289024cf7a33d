"""The tuners this repository adds to NNI 3.0 (its last release): NNI's Hyperband and TPE with the
fixes they need, and Optuna's TPE behind NNI's tuner interface.

A config names one as a custom tuner; the dispatcher imports it from the repository:

    tuner:
      codeDirectory: ..
      className: cifar_automl.nni_tuners.Hyperband
      classArgs: {optimize_mode: maximize, R: 27, eta: 3}
"""
import logging
import math
import warnings

import numpy as np
from nni.algorithms.hpo import hyperband_advisor, random_tuner, tpe_tuner
from nni.common.hpo_utils import Deduplicator
from nni.tuner import Tuner
from nni.utils import OptimizeMode, extract_scalar_reward

_logger = logging.getLogger(__name__)
BUDGET_KEY = hyperband_advisor._KEY  # 'TRIAL_BUDGET', the name NNI's Hyperband gives the budget


class Hyperband(hyperband_advisor.Hyperband):
    """NNI's Hyperband with two fixes.

    1. NNI 3.0's dispatcher dies after the first trial ends: Hyperband's parameter ids are
       strings ('0-3_0_5': bracket, round, counter) and `Recoverable.is_created_in_previous_exp`
       compares them to an int (`TypeError: '<=' not supported between instances of 'str' and
       'int'`, microsoft/nni#5263). Here a trial is "from a previous run" exactly when its
       bracket is not one this tuner created, which is what the check is for after a resume.
    2. The budget arrives as the parameter `TRIAL_BUDGET`, which the trial refuses as unknown;
       here it arrives as `budget_parameter` (default `epochs`), so a trial with budget r trains
       r epochs with its whole learning-rate schedule. R is then the longest trial, in epochs.
    """

    def __init__(self, optimize_mode='maximize', R=27, eta=3, exec_mode='parallelism', budget_parameter='epochs'):
        super().__init__(optimize_mode=optimize_mode, R=R, eta=eta, exec_mode=exec_mode)
        self.budget_parameter = budget_parameter

    def is_created_in_previous_exp(self, param_id):
        if param_id is None:
            return False
        return str(param_id).split('_')[0] not in self.brackets

    def handle_update_search_space(self, data):
        if self.budget_parameter in data:
            raise ValueError(f'search space: {self.budget_parameter!r} is the Hyperband budget (1 to R={self.R}); '
                             'remove it from the search space')
        super().handle_update_search_space(data)

    def _get_one_trial_job(self):
        job = super()._get_one_trial_job()
        if job is None:
            return None
        parameters = dict(job['parameters'])  # a copy: the bracket keeps the original and raises its budget later
        parameters[self.budget_parameter] = parameters.pop(BUDGET_KEY)
        return {**job, 'parameters': parameters}


class TPE(tpe_tuner.TpeTuner):
    """NNI's TPE with one fix, for search spaces of discrete parameters only (choice, randint, q*).

    NNI 3.0's TPE picks, per parameter, the value most likely among the good trials relative to the
    others; once its model settles it proposes the same configuration again and again. NNI's Deduplicator then hands out
    the next unseen configuration in grid order instead, whose results hardly move the model, so
    the run turns into a grid walk: on NAS-Bench-201, 169 of the 172 proposals from the 29th on, and
    a regret after 100 evaluations worse than random search's (docs/tuners.md). Here a duplicate is
    replaced by a configuration drawn at random from the search space (the tuner's seeded
    generator), as the random tuner would draw it. With any continuous parameter no proposal is ever
    a duplicate and this is NNI's TPE unchanged.
    """

    def update_search_space(self, space):
        super().update_search_space(space)
        self.dedup = _RandomDeduplicator(self.space, self.rng)


class _RandomDeduplicator(Deduplicator):
    DRAWS = 1000  # random draws before handing over to NNI's grid search, which ends when all is seen

    def __init__(self, space, rng):
        super().__init__(space)
        self.rng = rng

    def __call__(self, formatted_parameters):
        if self._never_dup or self._not_dup(formatted_parameters):
            return formatted_parameters
        for _ in range(self.DRAWS):
            drawn = random_tuner.suggest(self.rng, self._space)
            if self._not_dup(drawn):
                return drawn
        return super().__call__(formatted_parameters)


class OptunaTPE(Tuner):
    """Optuna's TPESampler (optuna 5.1.0) as an NNI tuner, through Optuna's ask-and-tell interface.

    It ranked first of the eight tuners on the 15 tabular benchmarks (docs/tuners.md). As a
    custom tuner, `nnictl create`, the WebUI and `report` work with it unchanged:

        tuner:
          codeDirectory: ..
          className: cifar_automl.nni_tuners.OptunaTPE
          classArgs: {optimize_mode: maximize, seed: 0}

    `multivariate`, `group`, `constant_liar` and `n_startup_trials` are TPESampler's, with its
    defaults: in optuna 5 the default TPE is multivariate (one joint density over all parameters,
    where NNI's TPE models each parameter alone) and penalises the parameters of running trials
    (constant liar), which is how it spreads out trialConcurrency > 1. Without a seed one is
    drawn and logged, as NNI's TPE does, so a run can be repeated.

    Search spaces: choice (not nested), randint, uniform, quniform, loguniform and qloguniform.
    quniform proposes the multiples of q inside [low, high]; qloguniform a log-uniform value
    rounded to q and clipped, as NNI does; normal priors have no Optuna counterpart.
    """

    def __init__(self, optimize_mode='maximize', seed=None, multivariate=True, group=False, constant_liar=True,
                 n_startup_trials=10):
        import optuna
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if seed is None:
            seed = int(np.random.default_rng().integers(2 ** 31))
        _logger.info('Optuna TPE, random seed %d', seed)
        with warnings.catch_warnings():  # `group` is "experimental" in optuna 5.1
            warnings.simplefilter('ignore', optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(seed=seed, multivariate=multivariate, group=group,
                                                 constant_liar=constant_liar, n_startup_trials=n_startup_trials)
        maximize = OptimizeMode(optimize_mode) is OptimizeMode.Maximize
        self.study = optuna.create_study(sampler=sampler, direction='maximize' if maximize else 'minimize')
        self.space = None  # name -> (NNI spec, Optuna distribution)
        self.running = {}  # parameter_id -> the Optuna trial waiting for its result

    def update_search_space(self, search_space):
        self.space = {name: (spec, _optuna_distribution(name, spec)) for name, spec in search_space.items()}

    def generate_parameters(self, parameter_id, **kwargs):
        trial = self.study.ask({name: distribution for name, (_, distribution) in self.space.items()})
        self.running[parameter_id] = trial
        return {name: _nni_value(spec, trial.params[name]) for name, (spec, _) in self.space.items()}

    def receive_trial_result(self, parameter_id, parameters, value, **kwargs):
        trial = self.running.pop(parameter_id, None)
        if trial is not None:  # None: a result reported twice, or a trial this tuner did not propose
            self.study.tell(trial, extract_scalar_reward(value))

    def trial_end(self, parameter_id, success, **kwargs):
        trial = self.running.pop(parameter_id, None)
        if trial is not None:  # ended without a final result: failed, killed, or never reported one
            import optuna
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)

    def import_data(self, data):
        """Finished trials of a resumed experiment, [{'parameter': ..., 'value': ...}]."""
        import optuna
        for record in data:
            params = {name: _optuna_value(spec, record['parameter'][name]) for name, (spec, _) in self.space.items()}
            self.study.add_trial(optuna.trial.create_trial(
                params=params, distributions={name: d for name, (_, d) in self.space.items()},
                value=extract_scalar_reward(record['value'])))


def _optuna_distribution(name, spec):
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    kind, values = spec['_type'], spec['_value']
    if kind == 'choice':
        if any(isinstance(value, dict) for value in values):
            raise ValueError(f'search space: {name!r} is a nested choice, which OptunaTPE does not take')
        return CategoricalDistribution(values)
    if kind == 'randint':
        return IntDistribution(int(values[0]), int(values[1]) - 1)
    if kind in ('uniform', 'loguniform', 'qloguniform'):
        return FloatDistribution(values[0], values[1], log=kind != 'uniform')
    if kind == 'quniform':
        low, high, q = values
        if math.ceil(low / q) > math.floor(high / q):
            raise ValueError(f'search space: {name!r} quniform {values} holds no multiple of {q}')
        return IntDistribution(math.ceil(low / q), math.floor(high / q))
    raise ValueError(f'search space: {name!r} is {kind}; OptunaTPE takes choice, randint, uniform, quniform, '
                     'loguniform and qloguniform')


def _nni_value(spec, value):
    """The value the trial gets for Optuna's `value`, as NNI's own tuners would give it."""
    if spec['_type'] == 'quniform':
        return value * spec['_value'][2]
    if spec['_type'] == 'qloguniform':
        low, high, q = spec['_value']
        return min(max(round(value / q) * q, low), high)
    return value


def _optuna_value(spec, value):
    if spec['_type'] == 'quniform':
        return round(value / spec['_value'][2])
    return value
