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


@pytest.mark.parametrize('argv, line', [
    (['--learning_rate', '0.1'], 'unknown flag --learning_rate; did you mean --initial_lr, --ending_lr, '
                                 '--lr_batch_size or --lr_schedule?'),
    (['--lr=0.1'], 'unknown flag --lr; did you mean --initial_lr, '),
    (['--data-dir', 'x'], 'unknown flag --data-dir; did you mean --data_dir? '),
    (['--epoch', '3'], 'unknown flag --epoch; did you mean --epochs? '),
    # no abbreviations (flags are NNI parameter names), but the flag it begins is named first
    (['--init', '2'], 'unknown flag --init; did you mean --initial_lr or --dirac_init? '),
    (['0.1'], 'unexpected argument 0.1; every value follows its --flag'),
    (['--epochs', 'ten'], "argument --epochs: invalid int value: 'ten'"),
])
def test_bad_command_line_is_one_error_line_naming_the_closest_flags(argv, line, capsys):
    with pytest.raises(SystemExit) as exit:
        resolve(argv)
    err = capsys.readouterr().err
    assert exit.value.code == 2 and err.startswith(f'error: {line}') and err.count('\n') == 1, err


@pytest.mark.parametrize('script, line', [
    ('trial/main.py', 'unknown flag --learning_rate; did you mean --initial_lr, '),
    ('nas/search_darts.py', 'unknown flag --learning_rate; did you mean --initial_lr, '),
    ('retrain/retrain.py', 'unknown flag --learning_rate; did you mean --initial_lr, '),
    ('bench/bench_trial.py', 'unknown flag --learning_rate (--help lists every flag)'),  # no rate to tune there
    ('bench/bench_darts.py', 'unknown flag --data_dir (--help lists every flag)'),  # it makes its own images
    ('bench/ablation.py', 'unknown flag --learning_rate (--help lists every flag)'),
])
def test_every_entry_script_names_the_closest_flag(script, line):
    import subprocess
    import sys
    from conftest import REPO
    result = subprocess.run([sys.executable, str(REPO / script), '--data_dir', 'x', '--learning_rate', '0.1'],
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 2 and result.stdout == ''
    assert result.stderr.startswith(f'error: {line}') and result.stderr.count('\n') == 1, result.stderr


def test_help_shows_each_default_once_and_says_what_an_empty_one_does():
    helps = {action.dest: action.help for action in config.build_parser()._actions}
    for name, opt in config.OPTIONS.items():
        defaults = helps[name].count('(default: ')
        assert "(default: '')" not in helps[name] and (defaults == 1 or defaults == 0 and opt.default == ''), name
    text = ' '.join(config.build_parser().format_help().split())
    assert 'outputs/trial-<time>' in text and 'TensorBoard directory when standalone (default: none)' in text


def test_config_error_is_a_leaf_module_that_breaks_the_import_cycle():
    import subprocess
    import sys
    from conftest import REPO
    code = ('import sys; import cifar_automl.arch_files, cifar_automl.models.darts; '
            'print("cifar_automl.config" in sys.modules)')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.stdout.strip() == 'False', result.stderr
    assert config.ConfigError is __import__('cifar_automl.errors').errors.ConfigError


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
