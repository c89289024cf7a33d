import pytest

from cifar_automl import config
from cifar_automl.config import ConfigError, resolve


def test_lab_flags_exist_with_their_names():
    lab = ['initial_lr', 'ending_lr', 'weight_decay', 'momentum', 'optimizer', 'batch_size', 'epochs', 'cutout',
           'grad_clip', 'model', 'num_workers', 'log_frequency', 'seed']
    cfg = resolve(sum([[f'--{name}', str(config.OPTIONS[name].default)] for name in lab], []))
    assert all(getattr(cfg, name) == config.OPTIONS[name].default for name in lab)


def test_precedence_is_defaults_preset_flags_nni():
    assert resolve([]).epochs == config.OPTIONS['epochs'].default
    assert resolve(['--preset', 'cpu']).width == config.PRESETS['cpu']['width']
    assert resolve(['--preset', 'cpu', '--width', '8']).width == 8
    assert resolve(['--preset', 'cpu', '--width', '8'], {'width': 12}).width == 12


@pytest.mark.parametrize('argv, needle', [
    (['--model', 'resnet1000'], '--model'),
    (['--optimizer', 'lion'], '--optimizer'),
    (['--initial_lr', '-1'], '--initial_lr'),
    (['--cutout', '40'], '--cutout'),
])
def test_bad_flags_are_refused_naming_the_flag(argv, needle):
    with pytest.raises((ConfigError, SystemExit)) as error:
        resolve(argv)
    if error.type is ConfigError:
        assert needle in str(error.value) and 'expected' in str(error.value)


def test_unknown_flag_exits_with_usage(capsys):
    with pytest.raises(SystemExit):
        resolve(['--learning_rate', '0.1'])
    assert 'unrecognized arguments: --learning_rate' in capsys.readouterr().err


@pytest.mark.parametrize('params, needle', [
    ({'learning_rate': 0.1}, "unknown parameter 'learning_rate'"),
    ({'batch_size': 'big'}, "batch_size='big' is not allowed; expected int"),
    ({'batch_size': 64.5}, 'batch_size=64.5'),
    ({'momentum': 1.5}, 'momentum=1.5 is not allowed; expected float in [0.0, 0.9999]'),
    ({'optimizer': 'lion'}, "optimizer='lion' is not allowed; expected one of 'sgd'"),
    ({'model': 'alexnet'}, "expected one of airbench, resnet9, lenet, resnet18"),
    ({'output_dir': '/tmp'}, "'output_dir' is a run setting"),
])
def test_bad_nni_parameters_are_refused_naming_parameter_and_allowed(params, needle):
    with pytest.raises(ConfigError) as error:
        resolve([], params)
    assert 'NNI parameter' in str(error.value) and needle in str(error.value)


def test_nni_values_are_converted_and_nested_choices_flattened():
    cfg = resolve([], {'batch_size': 128.0, 'initial_lr': 1, 'flip': 0,
                       'optimizer': {'_name': 'sgd', 'momentum': 0.8}})
    assert (cfg.batch_size, cfg.initial_lr, cfg.flip, cfg.optimizer, cfg.momentum) == (128, 1.0, False, 'sgd', 0.8)
    assert type(cfg.batch_size) is int and type(cfg.initial_lr) is float


def test_grad_clip_zero_means_off_and_is_allowed():
    assert resolve([], {'grad_clip': 0}).grad_clip == 0.0


def test_switches_work_bare_or_with_a_value():
    assert resolve(['--find_lr']).find_lr is True
    assert resolve(['--find_lr', 'false']).find_lr is False
    assert resolve(['--flip', 'false', '--nesterov']).flip is False
