"""The trial's one config surface.

Every option below is at once a command-line flag (`--initial_lr`), an NNI
parameter name (`"initial_lr"` in search_space.json) and a key of the `config`
saved in metrics.json. Defaults and allowed values live here and nowhere else:
argparse, the NNI parameter check and the search-space check all read OPTIONS.
"""
import argparse
import dataclasses
import difflib
import math
import re
import sys

from .errors import ConfigError  # noqa: F401 (re-exported: entry scripts and tests import it from here)


def exit_status(work):
    """Run `work()` for an entry script and return its exit status: bad input is printed as
    `error: ...` on stderr and gives 2, before anything was trained."""
    try:
        return work()
    except ConfigError as error:
        print(f'error: {error}', file=sys.stderr, flush=True)
        return 2


@dataclasses.dataclass(frozen=True)
class Option:
    default: object
    help: str
    choices: tuple = None  # allowed values, for strings and small enums
    low: float = None  # inclusive bounds for numbers
    high: float = None
    tunable: bool = True  # may be set by an NNI parameter (paths and run modes may not)
    off: object = None  # for a part of the training recipe: the value that switches it off

    @property
    def type(self):
        return type(self.default) if self.default is not None else str


# The course lab's flags keep the lab's names and meanings; the rest are additions.
OPTIONS = {
    # data
    'dataset': Option('cifar10', 'training data: CIFAR-10, or scikit-learn\'s bundled digits (offline, tiny)',
                      choices=('cifar10', 'digits')),
    'data_dir': Option('data', 'directory holding (or receiving) cifar-10-batches-py', tunable=False),
    'val_size': Option(-1, 'training images held out for validation, class-balanced; '
                           '-1: the dataset\'s default (5000 for cifar10, 300 for digits)', low=-1),
    'subset': Option(0, 'use only this many training images (0: all), for quick tries', low=0),
    'num_workers': Option(0, 'kept for the course lab\'s command lines: the pipeline runs on '
                             'tensors on the device and needs no loader workers', low=0),
    # model
    'model': Option('airbench', 'network; see cifar_automl/models. darts:PATH is a searched DARTS cell: '
                                'any architecture file retrain/retrain.py reads, or DARTS_V2 (the paper\'s)'),
    'width': Option(64, 'base channel width: airbench\'s first group (then 4x, 4x), resnet9\'s first stage '
                        '(then 2x, 4x), or the channels of a darts: model\'s first cells (36 in the DARTS paper)',
                    low=4, high=1024),
    'num_cells': Option(8, 'cells of a darts: model (reduction cells at 1/3 and 2/3 of the depth)', low=3, high=100),
    'auxiliary_weight': Option(0.4, 'a darts: model\'s auxiliary head (at 2/3 of the depth, used in training only): '
                                    'the weight of its loss (0: no auxiliary head)', low=0.0, high=10.0),
    'drop_path_prob': Option(0.2, 'a darts: model\'s drop-path probability, ramped linearly from 0 at the first '
                                  'epoch to this at the last (0: no drop path)', low=0.0, high=0.9),
    # optimisation
    'optimizer': Option('sgd', 'optimizer; muon: Muon for the convolution filters (their Nesterov step '
                               'orthogonalised, their norm fixed) and Nesterov SGD for the rest',
                        choices=('sgd', 'adam', 'adamw', 'rmsprop', 'adagrad', 'muon')),
    'initial_lr': Option(1.5, 'learning rate at the peak of the schedule (after warmup), for a batch of '
                              'lr_batch_size images', low=1e-7, high=100.0),
    'ending_lr': Option(0.105, 'learning rate on the last step, for a batch of lr_batch_size images',
                        low=0.0, high=100.0),
    'lr_batch_size': Option(1024, 'the batch size initial_lr and ending_lr are given for: at another batch_size '
                                  'both scale in proportion (and with them the weight decay per step), so that '
                                  'batch_size can be tuned without re-tuning the lr. 0: use them as given',
                            low=0, off=0),
    'lr_schedule': Option('linear', 'after the warmup, decay linearly or along a cosine to ending_lr',
                          choices=('linear', 'cosine'), off='cosine'),
    'warmup_epochs': Option(2.3, 'linear warmup from 0 to initial_lr, at most a quarter of the run', low=0.0,
                            high=100.0, off=0.0),
    'momentum': Option(0.85, 'SGD/RMSprop momentum (Adam: beta1)', low=0.0, high=0.9999),
    'nesterov': Option(True, 'Nesterov momentum for SGD'),
    'muon_lr': Option(0.1, '--optimizer muon: the filters\' learning rate at the schedule\'s peak, the '
                           'relative size of their step (not scaled with the batch size)', low=1e-5, high=10.0),
    'muon_momentum': Option(0.6, '--optimizer muon: the filters\' Nesterov momentum', low=0.0, high=0.9999),
    'weight_decay': Option(1.33e-3, 'L2 weight decay (PyTorch\'s, applied through the learning rate)',
                           low=0.0, high=1.0),
    'bias_lr_scale': Option(64.0, 'SGD: learning rate multiplier of the BatchNorm biases (their weight decay is '
                                  'divided by it); Adam-family optimizers ignore it', low=0.01, high=1000.0, off=1.0),
    'lookahead': Option(0.95, 'lookahead: every 5 steps the weights move to an average of themselves with this '
                              'decay per step, ramped up over the run (0: off)', low=0.0, high=0.9999, off=0.0),
    'label_smoothing': Option(0.2, 'label smoothing of the cross-entropy loss', low=0.0, high=0.99, off=0.0),
    'logit_scale': Option(1 / 9, 'the loss sees the logits times this', low=1e-3, high=100.0, off=1.0),
    'batch_size': Option(0, 'training batch size; 0: the largest power of two up to 512 that gives at least '
                            '32 steps an epoch (512 on CIFAR-10, 32 on digits)', low=0, high=65536),
    'epochs': Option(10, 'training epochs', low=1, high=100000),
    'grad_clip': Option(0.0, 'clip the gradient norm to this value; 0 means no clipping', low=0.0),
    # network initialisation and normalisation
    'whiten': Option(True, 'airbench\'s first layer is fitted to whiten 2x2 patches of the training images '
                           'and frozen (false: learned)', off=False),
    'whiten_bias_epochs': Option(3, 'epochs the whitening layer\'s bias trains before it freezes', low=0),
    'dirac_init': Option(True, 'each 3x3 convolution starts as the identity on its first channels', off=False),
    'bn_momentum': Option(0.4, 'BatchNorm running-statistics momentum (PyTorch\'s sense: weight of the new '
                               'batch; PyTorch\'s default is 0.1)', low=0.0, high=1.0, off=0.1),
    'freeze_bn_scale': Option(True, 'keep the BatchNorm scales at 1 (the biases still learn)', off=False),
    # augmentation
    'crop_padding': Option(2, 'pad-and-random-crop padding in pixels (0: off)', low=0, high=16, off=4),
    'flip': Option(True, 'random horizontal flip'),
    'alternate_flip': Option(True, 'flip each image the other way than in the epoch before, from a random '
                                   'first epoch', off=False),
    'cutout': Option(0, 'cutout square side in pixels; 0 is off', low=0, high=32),
    'tta': Option(2, 'test-time augmentation of the final evaluation, reported beside the plain accuracy: '
                     '0 none, 1 mirror, 2 mirror and 1-pixel shifts', choices=(0, 1, 2), off=0),
    # speed
    'device': Option('auto', 'where to train: auto (the GPU torch sees first, else the CPU), cpu, cuda, or cuda:N '
                             '(the N-th GPU that CUDA_VISIBLE_DEVICES leaves visible); a GPU asked for and not '
                             'usable is an error, not a CPU run', tunable=False),
    'precision': Option('auto', 'autocast dtype; auto: bf16 on GPUs and on CPUs with bf16 units (AVX512-BF16 or '
                                'AMX), fp16 on GPUs without bf16, else fp32 (and fp32 for a darts: model on CPU)',
                        choices=('auto', 'fp32', 'bf16', 'fp16'), tunable=False),
    'channels_last': Option(True, 'NHWC memory format of the model and the batches (the layout GPU '
                                  'convolutions run fastest in)', tunable=False),
    'compile': Option(False, 'torch.compile the model (pays on GPU for runs of minutes or more)', tunable=False),
    'threads': Option(0, 'CPU threads for torch (0: torch\'s default)', low=0, tunable=False),
    # stopping a dead trial early
    'divergence_epochs': Option(3, 'stop if validation accuracy is still at chance after this many '
                                   'epochs (0: never); a non-finite loss always stops', low=0),
    # run control
    'seed': Option(0, 'random seed (data split, init, augmentation)', low=0),
    'log_frequency': Option(50, 'print progress every this many steps (0: only per epoch)', low=0, tunable=False),
    'output_dir': Option('', 'where metrics.json and best.pt go (default: the NNI trial\'s output '
                             'directory under NNI, else outputs/trial-<time>)', tunable=False),
    'logdir': Option('', 'TensorBoard directory when standalone (default: none); under NNI always '
                         '<trial output>/tensorboard', tunable=False),
    'find_lr': Option(False, 'run the learning-rate range test instead of training', tunable=False),
    'preset': Option('', 'a named group of defaults, overridden by explicit flags: cpu is width 32, 10 epochs; '
                         'plain switches every part of the recipe off (the lab\'s training) (default: none)',
                     choices=('', 'cpu', 'plain'), tunable=False),
    'check_space': Option('', 'check an NNI search-space JSON file against these options, print OK or the '
                              'problem, and exit (0 or 2) without training', tunable=False),
}

DEVICE = re.compile(r'auto|cpu|cuda(:\d+)?')  # what --device accepts

# The parts of the training recipe: each option with a value that switches it off.
RECIPE_PARTS = {name: opt.off for name, opt in OPTIONS.items() if opt.off is not None}

# Named defaults for a whole kind of run. Explicit flags and NNI parameters win.
PRESETS = {
    'cpu': dict(width=32, epochs=10),
    # Every part of the recipe off: the plain training a lab script does (cosine, random flip and
    # 4-pixel crops, learning rate as given), for the lab's search spaces and as the ablation's floor.
    'plain': {**RECIPE_PARTS, 'ending_lr': 0.0},
}

TrialConfig = dataclasses.make_dataclass(
    'TrialConfig', [(name, opt.type, dataclasses.field(default=opt.default)) for name, opt in OPTIONS.items()])


def _parse_bool(text):
    lowered = str(text).lower()
    if lowered in ('1', 'true', 'yes', 'on'):
        return True
    if lowered in ('0', 'false', 'no', 'off'):
        return False
    raise argparse.ArgumentTypeError(f'expected true or false, got {text!r}')


class ArgumentParser(argparse.ArgumentParser):
    """argparse for every entry script: a bad command line is one `error: ...` line, as bad values
    are, and an unknown flag names the closest known ones instead of printing the usage.
    No abbreviations: the flags are NNI parameter names, and a prefix that works today would
    become ambiguous when a flag is added."""

    def __init__(self, **kwargs):
        super().__init__(allow_abbrev=False, **kwargs)

    def parse_args(self, args=None, namespace=None):
        namespace, unknown = self.parse_known_args(args, namespace)
        for arg in unknown:
            if arg.startswith('-'):
                self.error(unknown_flag_message(arg.split('=')[0], self.flags()))
        if unknown:
            self.error(f'unexpected argument{"s" * (len(unknown) > 1)} {" ".join(unknown)}; every value follows '
                       f'its --flag')
        return namespace

    def flags(self):
        return [flag for action in self._actions for flag in action.option_strings if flag.startswith('--')]

    def error(self, message):
        self.exit(2, f'error: {message} (--help lists every flag)\n')


# What users type for the words of a flag name, so that --learning_rate finds --initial_lr.
SHORT_WORDS = {'learning_rate': 'lr', 'learningrate': 'lr', 'num_epochs': 'epochs', 'n_epochs': 'epochs'}


def closest_names(name, names):
    """Up to 4 of `names` that `name` may have meant: the same with '_' for '-', names it begins
    (--init: --initial_lr), names spelled alike (difflib), then names sharing a word with it, in
    the order of `names` (--help's)."""
    name = name.replace('-', '_').lower()
    for long, short in SHORT_WORDS.items():
        name = name.replace(long, short)
    if name in names:
        return [name]
    # an abbreviation, not a word of its own: --lr is a word (initial_lr), not lr_schedule's start
    close = [known for known in names if known.startswith(name)] if len(name) >= 4 else []
    close += [known for known in difflib.get_close_matches(name, names, n=3, cutoff=0.6) if known not in close]
    words = set(name.split('_'))
    close += [known for known in names if words & set(known.split('_')) and known not in close]
    return close[:4]


def did_you_mean(candidates):
    if not candidates:
        return ''
    listed = candidates[0] if len(candidates) == 1 else ', '.join(candidates[:-1]) + ' or ' + candidates[-1]
    return f'; did you mean {listed}?'


def unknown_flag_message(flag, known):
    """`unknown flag --lr; did you mean --initial_lr, --ending_lr, ...?`"""
    candidates = closest_names(flag.lstrip('-'), [k[2:] for k in known])
    return f'unknown flag {flag}' + did_you_mean(['--' + name for name in candidates])


def build_parser(description='', options=None):
    """A flag per option of `options` (default: the trial's OPTIONS). An option whose default is ''
    says in its help what leaving it out does."""
    parser = ArgumentParser(description=description)
    for name, opt in (options or OPTIONS).items():
        help = opt.help if opt.default == '' else f'{opt.help} (default: {opt.default!r})'
        if opt.type is bool:  # `--resume` alone means true; `--flip false` still switches one off
            parser.add_argument(f'--{name}', type=_parse_bool, nargs='?', const=True, default=argparse.SUPPRESS,
                                help=help, metavar='{true,false}')
        else:
            parser.add_argument(f'--{name}', type=opt.type, default=argparse.SUPPRESS, help=help,
                                metavar=_metavar(opt))
    return parser


def parse_flags(description, options, argv=None):
    """The flags given on the command line, each checked and converted: {name: value}. Options left out
    are absent, so the caller's dataclass supplies their defaults."""
    args = vars(build_parser(description, options).parse_args(argv))
    return {name: check_value(name, value, f'--{name}', options) for name, value in args.items()}


def _metavar(opt):
    if opt.choices:
        return '{' + ','.join(str(c) for c in opt.choices if c != '') + '}'
    return opt.type.__name__.upper()


def allowed(name, options=None):
    """What options[name] accepts, in words, for error messages."""
    opt = (options or OPTIONS)[name]
    if name == 'device':
        return "auto, cpu, cuda, or cuda:N (N: the index of a visible GPU, from 0)"
    if name == 'model':
        from .models import model_names
        return 'one of ' + ', '.join(model_names()) + ', or darts:PATH (a DARTS architecture file)'
    if opt.choices:
        return 'one of ' + ', '.join(repr(c) for c in opt.choices)
    if opt.type is bool:
        return 'true or false'
    low = '-inf' if opt.low is None else opt.low
    high = 'inf' if opt.high is None else opt.high
    return f'{opt.type.__name__} in [{low}, {high}]'


def check_value(name, value, source, options=None):
    """Return `value` converted to the option's type, or raise ConfigError naming `source`."""
    options = options or OPTIONS
    if name not in options:
        close = closest_names(name, list(options))
        raise ConfigError(f'{source}: unknown parameter {name!r}' + (did_you_mean([repr(c) for c in close]) if close
                                                                    else f'; known: {", ".join(options)}'))
    opt = options[name]
    bad = ConfigError(f'{source}: {name}={value!r} is not allowed; expected {allowed(name, options)}')
    if opt.type is bool:
        if value in (True, False, 0, 1):
            value = bool(value)
        else:
            raise bad
    elif opt.type is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
            raise bad
        value = int(value)
    elif opt.type is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad
        value = float(value)
    elif not isinstance(value, str):
        raise bad
    if opt.choices is not None and value not in opt.choices:
        raise bad
    if name == 'device' and not DEVICE.fullmatch(value):
        raise bad
    if name == 'model':
        from .models import DARTS_PREFIX, is_model_name
        if not is_model_name(value):
            raise bad
        if value.startswith(DARTS_PREFIX):  # a searched cell: its file is checked now, not after the data loads
            from .arch_files import load_arch
            try:
                load_arch(value[len(DARTS_PREFIX):])
            except ConfigError as error:
                raise ConfigError(f'{source}: {name}={value!r}: {error}') from None
    if (opt.low is not None and value < opt.low) or (opt.high is not None and value > opt.high):
        raise bad
    return value


def flatten_nni_params(params):
    """NNI's nested choices arrive as {"optimizer": {"_name": "sgd", "momentum": 0.9}}:
    the choice's `_name` is the parameter's value and its other keys are parameters too."""
    flat = {}
    for key, value in params.items():
        if isinstance(value, dict) and '_name' in value:
            flat[key] = value['_name']
            flat.update(flatten_nni_params({k: v for k, v in value.items() if k != '_name'}))
        else:
            flat[key] = value
    return flat


def resolve(cli_args=None, nni_params=None):
    """Defaults < preset < command-line flags < NNI parameters. Raises ConfigError."""
    args = parse_flags('', OPTIONS, cli_args)
    values = dict(PRESETS.get(args.get('preset', ''), {}))
    values.update(args)
    for name, value in flatten_nni_params(nni_params or {}).items():
        value = check_value(name, value, 'NNI parameter')
        if not OPTIONS[name].tunable:
            raise ConfigError(f'NNI parameter: {name!r} is a run setting, not a tunable parameter; '
                              f'pass it as --{name} in the trial command instead')
        values[name] = value
    return TrialConfig(**values)
