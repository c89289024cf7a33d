"""`trial/main.py --check_space FILE`: shipped spaces pass; a space the trial cannot run is refused
before an experiment starts, naming the file, the key and what is allowed."""
import json
import subprocess
import sys

import pytest

from cifar_automl import reporting, trial
from cifar_automl.config import ConfigError
from cifar_automl.search_space import check_space
from conftest import REPO

# The spaces of trial/main.py; tabular_*.json are trial/table.py's (tests/test_table_trial.py).
SHIPPED = sorted(p for p in (REPO / 'search_spaces').glob('*.json') if not p.name.startswith('tabular_'))
LAB_MODELS = ['resnet18', 'resnet50', 'resnext50_32x4d', 'vgg16', 'vgg16_bn', 'densenet121', 'squeezenet1_1',
              'shufflenet_v2_x1_0', 'mobilenet_v2', 'mnasnet1_0']


def write_space(tmp_path, space):
    path = tmp_path / 'space.json'
    path.write_text(json.dumps(space))
    return path


def refused(tmp_path, space):
    path = write_space(tmp_path, space)
    with pytest.raises(ConfigError) as error:
        check_space(path)
    message = str(error.value)
    assert str(path) in message
    return message


@pytest.mark.parametrize('path', SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_space_passes(path):
    assert check_space(path)


def test_shipped_spaces_cover_the_course_lab():
    names = {p.name for p in SHIPPED}
    assert {'cifar10_lab_full.json', 'cifar10_lab_refined.json', 'cifar10_fast.json',
            'quickstart_digits.json'} <= names
    full = json.loads((REPO / 'search_spaces/cifar10_lab_full.json').read_text())
    assert {'initial_lr', 'weight_decay', 'cutout', 'batch_size', 'optimizer', 'momentum', 'epochs', 'model',
            'grad_clip'} <= set(full)
    assert full['initial_lr']['_type'] == full['weight_decay']['_type'] == 'loguniform'
    assert sorted(full['model']['_value']) == sorted(LAB_MODELS)
    # The lab's bug, fixed: 0 (no clipping) is reachable, as a choice, not the low end of a log range.
    assert full['grad_clip']['_type'] == 'choice' and 0 in full['grad_clip']['_value']
    refined = json.loads((REPO / 'search_spaces/cifar10_lab_refined.json').read_text())
    assert set(refined['model']['_value']) < set(full['model']['_value'])


def test_command_line_prints_ok_and_exits_0():
    result = subprocess.run([sys.executable, 'trial/main.py', '--check_space', 'search_spaces/quickstart_digits.json'],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert 'OK' in result.stdout and 'initial_lr' in result.stdout


def test_check_runs_before_nni_parameters_and_training(tmp_path, monkeypatch, capsys):
    """Under NNI or not, --check_space never asks NNI for parameters and never trains."""
    def no_nni():
        raise AssertionError('asked NNI for parameters')
    monkeypatch.setattr(trial, 'nni_parameters', no_nni)
    monkeypatch.setattr(reporting, 'nni_parameters', no_nni)
    monkeypatch.setattr(trial, 'run', lambda cfg: pytest.fail('trained'))
    bad = write_space(tmp_path, {'grad_clip': {'_type': 'loguniform', '_value': [0, 10]}})
    assert trial.main(['--check_space', str(bad)]) == 2
    assert 'error:' in capsys.readouterr().err
    good = REPO / 'search_spaces/cifar10_lab_full.json'
    assert trial.main(['--check_space', str(good)]) == 0


def test_lab_grad_clip_bug_is_refused_with_the_fix(tmp_path):
    message = refused(tmp_path, {'grad_clip': {'_type': 'loguniform', '_value': [0, 10]}})
    assert 'grad_clip' in message and 'choice' in message


def test_unknown_key_is_refused_naming_the_tunable_ones(tmp_path):
    message = refused(tmp_path, {'lr': {'_type': 'loguniform', '_value': [0.01, 0.1]}})
    assert "'lr'" in message and 'initial_lr' in message


def test_run_setting_is_refused(tmp_path):
    message = refused(tmp_path, {'data_dir': {'_type': 'choice', '_value': ['data']}})
    assert '--data_dir' in message


@pytest.mark.parametrize('key, spec, expected', [
    ('cutout', {'_type': 'choice', '_value': [0, 8, 40]}, 'cutout=40'),  # one bad choice among good ones
    ('model', {'_type': 'choice', '_value': ['resnet18', 'vgg19']}, "model='vgg19'"),
    ('optimizer', {'_type': 'choice', '_value': ['sgd', 'lion']}, "'lion'"),
    ('momentum', {'_type': 'uniform', '_value': [0.5, 1.5]}, 'high end'),  # range past the option's bound
    ('initial_lr', {'_type': 'loguniform', '_value': [1e-9, 0.1]}, 'low end'),
    ('cutout', {'_type': 'randint', '_value': [0, 34]}, 'cutout=33'),  # randint excludes its upper bound
    ('batch_size', {'_type': 'uniform', '_value': [32, 256]}, 'non-integers'),
    ('optimizer', {'_type': 'uniform', '_value': [0, 1]}, 'use a choice'),
    ('weight_decay', {'_type': 'normal', '_value': [0.001, 0.001]}, 'unbounded'),
])
def test_value_the_trial_refuses_is_refused(tmp_path, key, spec, expected):
    message = refused(tmp_path, {key: spec})
    assert f"'{key}'" in message and expected in message


@pytest.mark.parametrize('space', [
    {'cutout': {'_type': 'randint', '_value': [0, 33]}},
    {'batch_size': {'_type': 'quniform', '_value': [64, 512, 64]}},
    {'epochs': {'_type': 'qloguniform', '_value': [5, 80, 1]}},
    {'grad_clip': {'_type': 'choice', '_value': [0, 1, 5]}},
    {'flip': {'_type': 'choice', '_value': [True, False]}},
])
def test_spaces_within_the_trial_options_pass(tmp_path, space):
    assert check_space(write_space(tmp_path, space)) == list(space)


def test_nested_choice_checks_each_branch(tmp_path):
    """A nested choice (optimizer-specific settings) is checked branch by branch, as the trial
    flattens it (config.flatten_nni_params)."""
    space = {'optimizer': {'_type': 'choice', '_value': [
        {'_name': 'sgd', 'initial_lr': {'_type': 'loguniform', '_value': [0.01, 0.5]},
         'momentum': {'_type': 'uniform', '_value': [0.8, 0.95]}},
        {'_name': 'adam', 'initial_lr': {'_type': 'loguniform', '_value': [1e-4, 1e-2]}},
    ]}}
    assert check_space(write_space(tmp_path, space)) == ['initial_lr', 'momentum', 'optimizer']
    space['optimizer']['_value'][1]['beta2'] = {'_type': 'uniform', '_value': [0.9, 0.999]}
    assert "'beta2'" in refused(tmp_path, space)
    space['optimizer']['_value'][1] = {'_name': 'adam', 'optimizer': {'_type': 'choice', '_value': ['sgd']}}
    assert 'outside this nested choice' in refused(tmp_path, space)
    space['optimizer']['_value'][1] = {'_name': 'adam'}
    space['momentum'] = {'_type': 'uniform', '_value': [0.5, 0.9]}  # also set inside the sgd branch
    assert "'momentum' is already set outside" in refused(tmp_path, space)
    del space['momentum']
    space['optimizer']['_value'][1] = {'_name': 'lion'}
    assert "'lion'" in refused(tmp_path, space)


@pytest.mark.parametrize('space, expected', [
    ({'cutout': {'_type': 'triangular', '_value': [0, 8]}}, 'unsupported type'),
    ({'initial_lr': {'_type': 'uniform', '_value': [0.1, 0.01]}}, 'high > low'),
    ({'initial_lr': {'_value': [0.1, 0.2]}}, '_type'),
    ({'cutout': [0, 8]}, 'expect a dict'),
])
def test_nni_own_validation_runs(tmp_path, space, expected):
    message = refused(tmp_path, space)
    assert 'NNI refuses' in message and expected in message


def test_unreadable_or_bad_json_is_refused(tmp_path):
    with pytest.raises(ConfigError, match='cannot read'):
        check_space(tmp_path / 'missing.json')
    path = tmp_path / 'broken.json'
    path.write_text('{"initial_lr": ')
    with pytest.raises(ConfigError, match='not valid JSON'):
        check_space(path)
    path.write_text('[]')
    with pytest.raises(ConfigError, match='non-empty JSON object'):
        check_space(path)
