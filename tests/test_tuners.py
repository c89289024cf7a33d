"""Every tuner and assessor a shipped config names runs here, built as NNI's dispatcher builds it
(nni.__main__._create_algo from the config's canonical JSON), over the config's own search space,
and everything a tuner proposes is accepted by the trial (config.resolve)."""
import json
import math
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

from cifar_automl import config
from cifar_automl.nni_tuners import Hyperband
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
        found.append(pytest.param(tuner, exp.search_space, id=f'{path.stem}-{tuner.get("name")}'))
    return found


def assessor_configs():
    return [pytest.param(experiment_json(p).assessor.json(), id=f'{p.stem}-{experiment_json(p).assessor.name}')
            for p in CONFIGS if experiment_json(p).assessor is not None]


def test_the_course_tuners_are_shipped():
    names = {experiment_json(p).tuner.json().get('name') for p in CONFIGS}
    assert {'TPE', 'Random', 'Anneal'} <= names
    assessors = {experiment_json(p).assessor.name for p in CONFIGS if experiment_json(p).assessor}
    assert 'Medianstop' in assessors


@pytest.mark.parametrize('tuner_json, space', tuner_configs())
def test_tuner_proposes_parameters_the_trial_accepts(tuner_json, space):
    """25 rounds: past TPE's 20 random start-up trials, so its model-based proposals run too.
    Anneal is hyperopt 0.1.2's, which needs numpy 1.x (requirements.txt pins both)."""
    tuner = _create_algo(tuner_json, 'tuner')
    tuner.update_search_space(space)
    rng = np.random.default_rng(0)
    for parameter_id in range(25):
        parameters = tuner.generate_parameters(parameter_id)
        cfg = config.resolve([], parameters)  # raises ConfigError on anything the trial refuses
        assert set(config.flatten_nni_params(parameters)) <= set(space) | nested_keys(space)
        accuracy = float(rng.uniform(10, 95))
        tuner.receive_trial_result(parameter_id, parameters, accuracy)
        assert cfg.epochs >= 1


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
