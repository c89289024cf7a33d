"""The CPU experiments on real CIFAR-10 (nni_configs/cifar10_cpu*.yml): an hour on 2 cores, one
trial at a time, no trial that trains longer than --preset cpu does (so a winner is not bought
with training time); Hyperband over the whole recipe, the plain tuners over its continuous
settings with its parts fixed."""
import shlex

import pytest
from nni.__main__ import _create_algo

from cifar_automl import config
from conftest import REPO
from test_tuners import experiment_json, finish, no_manager, start_advisor  # noqa: F401 (a fixture)

HYPERBAND = REPO / 'nni_configs/cifar10_cpu.yml'
PLAIN = {name: REPO / f'nni_configs/cifar10_cpu_{name.lower()}.yml' for name in ('TPE', 'Random', 'Anneal')}
ALL = [HYPERBAND, *PLAIN.values()]
PRESET = config.PRESETS['cpu']


def trial_config(exp, parameters=None):
    return config.resolve(shlex.split(exp.trial_command)[2:], parameters)


@pytest.mark.parametrize('path', ALL, ids=[p.stem for p in ALL])
def test_an_hour_on_a_cpu_one_trial_at_a_time(path):
    exp = experiment_json(path)
    assert exp.max_experiment_duration == '60m'
    assert exp.trial_concurrency == 1 and exp.trial_gpu_number is None
    cfg = trial_config(exp)
    assert cfg.device == 'cpu' and cfg.dataset == 'cifar10' and cfg.preset == 'cpu'


def test_hyperband_tunes_the_recipe_at_no_more_width_than_the_preset():
    exp = experiment_json(HYPERBAND)
    assert (HYPERBAND.parent / exp.search_space_file).resolve() == REPO / 'search_spaces/cifar10_cpu.json'
    space = exp.search_space
    assert {'initial_lr', 'weight_decay', 'label_smoothing', 'width', 'batch_size'} <= set(space)
    assert len(set(space) & set(config.RECIPE_PARTS)) >= 5, 'the recipe\'s parts are tuned too'
    assert max(space['width']['_value']) <= PRESET['width']


@pytest.mark.parametrize('tuner', PLAIN)
def test_plain_tuners_run_the_continuous_space_with_the_recipe_fixed(tuner):
    """Short trials promoted the parts that learn fastest at first (Hyperband's hour, docs/results.md),
    so the plain tuners leave the parts at their defaults and the width at the preset's."""
    exp = experiment_json(PLAIN[tuner])
    assert exp.tuner.name == tuner
    assert (PLAIN[tuner].parent / exp.search_space_file).resolve() == REPO / 'search_spaces/cifar10_cpu_continuous.json'
    space = exp.search_space
    assert not {'width', 'epochs'} & set(space)
    switched = [name for name in set(space) & set(config.RECIPE_PARTS) if space[name]['_type'] == 'choice']
    assert not switched, f'parts switched on and off: {switched}; only continuous settings are tuned'
    cfg = trial_config(exp)
    assert cfg.epochs == 5 and cfg.tta == 0  # about 4.5 minutes a trial here: some 13 trials an hour


def test_hyperband_iteration_trains_at_most_the_presets_epochs(no_manager):
    """One full iteration, driven as NNI's manager drives it with one trial at a time: 22 trials,
    78 epochs; the first two brackets (51 epochs) fit the hour at about a minute an epoch."""
    exp = experiment_json(HYPERBAND)
    advisor = _create_algo(exp.tuner.json(), 'tuner')
    recorder = start_advisor(advisor, exp.search_space)
    budgets = []
    for index in range(exp.max_trial_number):
        advisor.handle_request_trial_jobs(1)
        jobs = recorder.new_jobs()
        assert len(jobs) == 1, f'trial {index}: the advisor proposed {len(jobs)} jobs for one slot'
        cfg = trial_config(exp, jobs[0]['parameters'])
        assert cfg.width <= PRESET['width'] and cfg.epochs <= PRESET['epochs']
        budgets.append(cfg.epochs)
        finish(advisor, jobs[0], accuracy=50.0 + index % 7, trial_job_id=f'trial{index}')
    assert budgets == [1] * 9 + [3] * 3 + [9] + [3] * 5 + [9] + [9] * 3
    assert sum(budgets) == 78 and sum(budgets[:19]) == 51
