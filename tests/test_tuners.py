"""Every tuner and assessor a shipped config names runs here, built as NNI's dispatcher builds it
(nni.__main__._create_algo from the config's canonical JSON), over the config's own search space,
and everything a tuner proposes is accepted by the trial (config.resolve)."""
import json
import math
import shlex
from types import SimpleNamespace

import nni
import numpy as np
import pytest
from nni.__main__ import _create_algo
from nni.algorithms.hpo.hyperband_advisor import Hyperband as NNIHyperband
from nni.assessor import AssessResult
from nni.experiment.config import ExperimentConfig
from nni.runtime import msg_dispatcher_base
from nni.runtime.tuner_command_channel import CommandType

from cifar_automl import config, table_trial, tables
from cifar_automl.nni_tuners import Hyperband, OptunaTPE
from conftest import REPO

CONFIGS = sorted((REPO / 'nni_configs').glob('*.yml'))


def experiment_json(path):
    """The config as nnictl loads it (remote and cluster configs carry placeholders for machines,
    which do not concern the tuner), with its search space read from searchSpaceFile."""
    exp = ExperimentConfig.load(str(path))
    exp.search_space = json.loads((path.parent / exp.search_space_file).read_text())
    return exp


def tuner_configs():
    found = []
    for path in CONFIGS:
        exp = experiment_json(path)
        tuner = exp.tuner.json()
        if tuner.get('className') == 'cifar_automl.nni_tuners.Hyperband':
            continue  # an advisor: test_hyperband_* below
        name = tuner.get('name') or tuner['className'].rsplit('.', 1)[-1]
        found.append(pytest.param(tuner, exp.search_space, trial_check(exp), id=f'{path.stem}-{name}'))
    return found


def trial_check(exp):
    """What the config's trial does with a tuner's parameters before any work: raises on anything
    it refuses. trial/main.py resolves them into its config; trial/table.py looks them up."""
    command = shlex.split(exp.trial_command)
    if command[1] == 'trial/table.py':
        args = table_trial.build_parser().parse_args(command[2:])
        table = tables.load(args.table)
        space = table_trial.search_space(table, args.encoding)
        return lambda parameters: table_trial.evaluate(table, parameters, space, np.random.default_rng(0))

    def resolve(parameters):
        config.resolve([], parameters)
        assert set(config.flatten_nni_params(parameters)) <= set(exp.search_space) | nested_keys(exp.search_space)
    return resolve


def assessor_configs():
    return [pytest.param(experiment_json(p).assessor.json(), id=f'{p.stem}-{experiment_json(p).assessor.name}')
            for p in CONFIGS if experiment_json(p).assessor is not None]


def test_the_course_tuners_are_shipped():
    names = {experiment_json(p).tuner.json().get('name') for p in CONFIGS}
    assert {'TPE', 'Random', 'Anneal'} <= names
    assessors = {experiment_json(p).assessor.name for p in CONFIGS if experiment_json(p).assessor}
    assert 'Medianstop' in assessors


@pytest.mark.parametrize('tuner_json, space, trial_accepts', tuner_configs())
def test_tuner_proposes_parameters_the_trial_accepts(tuner_json, space, trial_accepts):
    """25 rounds: past TPE's 20 random start-up trials, so its model-based proposals run too.
    Anneal is hyperopt 0.1.2's, which needs numpy 1.x (requirements.txt pins both)."""
    tuner = _create_algo(tuner_json, 'tuner')
    tuner.update_search_space(space)
    rng = np.random.default_rng(0)
    for parameter_id in range(25):
        parameters = tuner.generate_parameters(parameter_id)
        trial_accepts(parameters)  # raises ConfigError on anything the trial refuses
        accuracy = float(rng.uniform(10, 95))
        tuner.receive_trial_result(parameter_id, parameters, accuracy)
        tuner.trial_end(parameter_id, True)


def test_anneal_runs_on_the_pinned_numpy_and_hyperopt():
    """The Anneal test above ran on what requirements.txt pins: hyperopt 0.1.2 breaks on numpy 2."""
    from importlib.metadata import version
    pins = dict(line.split('==') for line in (REPO / 'requirements.txt').read_text().splitlines()
                if '==' in line and not line.startswith('#'))
    assert pins['numpy'] == version('numpy') and pins['numpy'].startswith('1.')
    assert pins['hyperopt'] == version('hyperopt') == '0.1.2'


def nested_keys(space):
    keys = set()
    for spec in space.values():
        for value in spec['_value'] if spec['_type'] == 'choice' else []:
            if isinstance(value, dict):
                inner = {k: v for k, v in value.items() if k != '_name'}
                keys |= set(inner) | nested_keys(inner)
    return keys


def curve(final, epochs, rate=0.25):
    """A learning curve in percent rising from 10% (chance) towards `final`."""
    return [final + (10 - final) * math.exp(-rate * (epoch + 1)) for epoch in range(epochs)]


@pytest.mark.parametrize('assessor_json', assessor_configs())
def test_assessor_stops_a_bad_trial_and_keeps_a_good_one(assessor_json):
    """The trial reports validation accuracy (percent) every epoch as 'default'; the dispatcher
    hands the assessor those numbers."""
    assessor = _create_algo(assessor_json, 'assessor')
    epochs = 20
    for trial, final in (('done1', 88), ('done2', 90), ('done3', 86)):
        history = curve(final, epochs)
        for step in range(1, epochs + 1):
            assessor.assess_trial(trial, history[:step])
        assessor.trial_end(trial, True)

    def first_bad(trial, history):
        for step in range(1, len(history) + 1):
            if assessor.assess_trial(trial, history[:step]) is AssessResult.Bad:
                return step
        return None

    stopped_at = first_bad('poor', curve(40, epochs))
    assert stopped_at == max(assessor_json['classArgs'].get('start_step', 1), 1)  # as soon as it may judge
    assert first_bad('better', curve(92, epochs)) is None


# Hyperband is an advisor: it talks to the NNI manager itself. These tests drive it with the
# commands the manager sends and record what it sends back.

class Recorder:
    def __init__(self):
        self.sent = []

    def __call__(self, command, data):
        self.sent.append((command, data))

    def new_jobs(self):
        jobs = [nni.load(data) for command, data in self.sent if command is CommandType.NewTrialJob]
        self.sent.clear()
        return jobs


@pytest.fixture
def no_manager(monkeypatch):
    """An advisor connects to the manager's websocket when built; NNI's own tests use this URL prefix
    to skip that."""
    monkeypatch.setattr(msg_dispatcher_base, 'dispatcher_env_vars',
                        SimpleNamespace(NNI_TUNER_COMMAND_CHANNEL='ws://_unittest_', NNI_MODE='new'))


def start_advisor(advisor, space):
    recorder = Recorder()
    advisor.send = recorder
    advisor.handle_initialize(space)
    return recorder


def finish(advisor, job, accuracy, trial_job_id):
    advisor.handle_report_metric_data({'parameter_id': job['parameter_id'], 'trial_job_id': trial_job_id,
                                       'type': 'FINAL', 'sequence': 0, 'value': nni.dump({'default': accuracy})})
    advisor.handle_trial_end({'trial_job_id': trial_job_id, 'event': 'SUCCEEDED', 'hyper_params': nni.dump(job)})


def hyperband_config():
    exp = experiment_json(REPO / 'nni_configs/cifar10_hyperband.yml')
    return exp.tuner.json(), exp.search_space


def test_hyperband_config_builds_the_fixed_subclass(no_manager):
    tuner_json, _ = hyperband_config()
    advisor = _create_algo(tuner_json, 'tuner')
    assert type(advisor) is Hyperband and isinstance(advisor, msg_dispatcher_base.MsgDispatcherBase)


def test_hyperband_runs_rounds_with_growing_epochs(no_manager):
    """Bracket s=3 of R=27, eta=3: 27 trials of 1 epoch, the best 9 then run 3 epochs, and so on;
    every trial's parameters are ones the trial accepts, its budget in `epochs`."""
    tuner_json, space = hyperband_config()
    advisor = _create_algo(tuner_json, 'tuner')
    recorder = start_advisor(advisor, space)
    advisor.handle_request_trial_jobs(27)
    first_round = recorder.new_jobs()
    assert len(first_round) == 27
    for job in first_round:
        assert 'TRIAL_BUDGET' not in job['parameters'] and job['parameters']['epochs'] == 1
        config.resolve([], job['parameters'])
    for index, job in enumerate(first_round):
        finish(advisor, job, accuracy=50.0 + index, trial_job_id=f'trial{index}')
    advisor.handle_request_trial_jobs(9)  # the manager asks for more as trials end
    second_round = recorder.new_jobs()
    assert [job['parameters']['epochs'] for job in second_round] == [3] * 9
    promoted = {json.dumps({k: v for k, v in job['parameters'].items() if k != 'epochs'}, sort_keys=True)
                for job in second_round}
    best_nine = {json.dumps({k: v for k, v in job['parameters'].items() if k != 'epochs'}, sort_keys=True)
                 for job in first_round[-9:]}
    assert promoted == best_nine  # the nine most accurate go on


def test_nni_hyperband_has_the_defect_the_subclass_fixes(no_manager):
    """If this starts failing, NNI fixed microsoft/nni#5263 and the subclass's first fix can go."""
    advisor = NNIHyperband(optimize_mode='maximize', R=3, eta=3)
    recorder = start_advisor(advisor, {'initial_lr': {'_type': 'loguniform', '_value': [0.01, 0.1]}})
    advisor.handle_request_trial_jobs(1)
    job = recorder.new_jobs()[0]
    assert 'TRIAL_BUDGET' in job['parameters']
    with pytest.raises(TypeError, match="'<=' not supported"):
        finish(advisor, job, 50.0, 'trial0')


def test_hyperband_refuses_a_space_that_tunes_the_budget(no_manager):
    advisor = Hyperband(R=9, eta=3)
    with pytest.raises(ValueError, match="'epochs' is the Hyperband budget"):
        start_advisor(advisor, {'epochs': {'_type': 'choice', '_value': [5, 10]}})


def test_hyperband_ignores_trials_from_before_a_resume(no_manager):
    advisor = Hyperband(R=9, eta=3)
    start_advisor(advisor, {'initial_lr': {'_type': 'loguniform', '_value': [0.01, 0.1]}})
    assert advisor.is_created_in_previous_exp('0-2_0_5')  # no such bracket in this run
    assert not advisor.is_created_in_previous_exp(None)


@pytest.mark.slow
def test_hyperband_experiment_runs_past_the_first_trial(tmp_path):
    """cifar10_hyperband.yml through nnictl, shrunk to CPU and digits (R=2, eta=2: two 1-epoch
    trials, the better one again with 2 epochs, then two 2-epoch trials). NNI 3.0's own Hyperband
    dispatcher dies when the first trial ends; here every trial runs, each its budget in epochs."""
    from nni_experiment import nni_experiment
    path = REPO / 'nni_configs/cifar10_hyperband.yml'
    exp = experiment_json(path)
    exp.tuner.class_args.update(R=2, eta=2)
    exp.training_service.max_trial_number_per_gpu = 1
    overrides = dict(tuner=exp.tuner, training_service=exp.training_service, trial_gpu_number=None,
                     max_trial_number=4, trial_concurrency=1, max_experiment_duration='15m',
                     trial_command='python3 trial/main.py --dataset digits --width 16 --log_frequency 0')
    with nni_experiment(path, tmp_path, **overrides) as experiment:
        status = experiment.wait(timeout=900)
        jobs = experiment.api('trial-jobs')
    assert status['status'] == 'DONE' and not status['errors'], status
    assert [job['status'] for job in jobs] == ['SUCCEEDED'] * 4
    budgets = sorted(json.loads(job['hyperParameters'][0])['parameters']['epochs'] for job in jobs)
    assert budgets == [1, 1, 2, 2]
    for job in jobs:
        epochs = json.loads(job['hyperParameters'][0])['parameters']['epochs']
        final = json.loads(json.loads(job['finalMetricData'][0]['data']))
        assert final['epochs_run'] == epochs


# OptunaTPE: Optuna's TPESampler behind NNI's tuner interface (docs/tuners.md).

def test_optuna_tpe_proposes_within_every_supported_space_type():
    space = {'lr': {'_type': 'loguniform', '_value': [1e-4, 1e-1]},
             'momentum': {'_type': 'uniform', '_value': [0.8, 0.95]},
             'width': {'_type': 'quniform', '_value': [16, 64, 16]},
             'position': {'_type': 'quniform', '_value': [-0.5, 3.5, 1]},
             'layers': {'_type': 'randint', '_value': [1, 4]},
             'batch': {'_type': 'qloguniform', '_value': [32, 512, 32]},
             'optimizer': {'_type': 'choice', '_value': ['sgd', 'adam', 0.5]}}
    tuner = OptunaTPE(optimize_mode='minimize', seed=0, n_startup_trials=3)
    tuner.update_search_space(space)
    seen = {name: set() for name in space}
    for parameter_id in range(12):
        parameters = tuner.generate_parameters(parameter_id)
        for name, value in parameters.items():
            seen[name].add(value)
        tuner.receive_trial_result(parameter_id, parameters, {'default': parameters['lr'], 'other': 1.0})
    assert 1e-4 <= min(seen['lr']) and max(seen['lr']) <= 1e-1
    assert seen['width'] <= {16, 32, 48, 64} and seen['position'] <= {0, 1, 2, 3} and seen['layers'] <= {1, 2, 3}
    assert all(b % 32 == 0 and 32 <= b <= 512 for b in seen['batch'])
    assert seen['optimizer'] <= {'sgd', 'adam', 0.5}
    assert len(tuner.study.trials) == 12 and tuner.study.best_value == min(t.value for t in tuner.study.trials)


def test_optuna_tpe_refuses_what_it_cannot_propose():
    tuner = OptunaTPE()
    with pytest.raises(ValueError, match="'lr' is normal; OptunaTPE takes choice"):
        tuner.update_search_space({'lr': {'_type': 'normal', '_value': [0, 1]}})
    with pytest.raises(ValueError, match="'opt' is a nested choice"):
        tuner.update_search_space({'opt': {'_type': 'choice', '_value': [{'_name': 'sgd', 'm': {
            '_type': 'uniform', '_value': [0, 1]}}]}})


def test_optuna_tpe_marks_a_trial_that_ended_without_a_result_failed_and_resumes_from_imported_data():
    from optuna.trial import TrialState
    space = {'x': {'_type': 'uniform', '_value': [0, 1]}, 'k': {'_type': 'quniform', '_value': [0, 10, 5]}}
    tuner = OptunaTPE(seed=1)
    tuner.update_search_space(space)
    parameters = tuner.generate_parameters(0)
    tuner.trial_end(0, False)
    assert tuner.study.trials[0].state is TrialState.FAIL
    tuner.receive_trial_result(0, parameters, 1.0)  # a late result for an ended trial is ignored, not an error
    resumed = OptunaTPE(seed=1)
    resumed.update_search_space(space)
    resumed.import_data([{'parameter': {'x': 0.25, 'k': 10.0}, 'value': {'default': 0.7}}])
    [trial] = resumed.study.trials
    assert trial.params == {'x': 0.25, 'k': 2} and trial.value == 0.7


def test_nni_tpe_walks_the_grid_on_a_discrete_space_and_the_fixed_tpe_draws_at_random():
    """On a space of choices only, NNI's TPE soon proposes what it proposed before, and its
    Deduplicator substitutes the next unseen configuration in grid order; the repository's TPE
    draws the substitute at random. 625 configurations, 80 proposals."""
    from nni.algorithms.hpo.tpe_tuner import TpeTuner
    from cifar_automl.nni_tuners import TPE
    space = {f'op{i}': {'_type': 'choice', '_value': list('abcde')} for i in range(4)}

    def proposals(tuner):
        tuner.update_search_space(space)
        proposed = []
        for parameter_id in range(80):
            parameters = tuner.generate_parameters(parameter_id)
            proposed.append(''.join(parameters[f'op{i}'] for i in range(4)))
            tuner.receive_trial_result(parameter_id, parameters, sum(p == 'c' for p in proposed[-1]))
        return tuner, proposed

    stock, stock_proposed = proposals(TpeTuner(optimize_mode='maximize', seed=0))
    fixed, fixed_proposed = proposals(TPE(optimize_mode='maximize', seed=0))
    assert stock.dedup._grid_search is not None  # NNI's grid search took over ...
    assert stock_proposed[40:] == sorted(stock_proposed[40:])  # ... and walks the grid: 'abaa', 'abab', ...
    assert all(p[0] == 'a' for p in stock_proposed[40:]) and 'cccc' not in stock_proposed
    assert fixed.dedup._grid_search is None and len(set(fixed_proposed)) == 80
    assert sum(p[0] == 'a' for p in fixed_proposed[40:]) < 15 and 'cccc' in fixed_proposed
