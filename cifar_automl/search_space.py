"""Check an NNI search-space file against what the trial accepts, before an experiment starts.

    python trial/main.py --check_space search_spaces/cifar10_lab_full.json

An experiment whose space names a flag the trial does not know, or lets a tuner draw a
value the trial refuses, fails trial after trial in the WebUI; NNI itself only checks the
file's shape. This check reads the same table as the trial (config.OPTIONS): every key
must be a tunable option, and every value a tuner can draw must pass config.check_value.
"""
import json
import math
from pathlib import Path

from .config import OPTIONS, ConfigError, allowed, check_value, exit_status

# Types whose draws are unbounded on at least one side: only for options without that bound.
NORMAL_TYPES = ('normal', 'qnormal')
LOGNORMAL_TYPES = ('lognormal', 'qlognormal')


def load_space(path):
    """The JSON object in `path`, or ConfigError naming the file."""
    path = Path(path)
    try:
        space = json.loads(path.read_text())
    except OSError as error:
        raise ConfigError(f'{path}: cannot read the search space: {error.strerror}') from None
    except json.JSONDecodeError as error:
        raise ConfigError(f'{path}: not valid JSON: {error}') from None
    if not isinstance(space, dict) or not space:
        raise ConfigError(f'{path}: a search space is a non-empty JSON object of '
                          '{"parameter": {"_type": ..., "_value": [...]}}')
    return space


def check_space(path):
    """Return the parameter names of the search space in `path`; raise ConfigError on the first problem."""
    space = load_space(path)
    names = []
    _check_level(space, str(path), (), names)
    return names


def _check_level(space, source, outer_names, names):
    """One level of the space: top level, or the keys beside `_name` in a nested choice."""
    from nni.common.hpo_utils import validate_search_space  # NNI's own shape check (types, arity, low < high)
    for name, spec in space.items():
        _refuse_log_range_from_zero(name, spec, source)
    try:
        validate_search_space(space, raise_exception=True)
    except ValueError as error:
        raise ConfigError(f'{source}: NNI refuses it: {error}') from None
    enclosing = outer_names + tuple(space)  # what a choice nested here may not set again
    for name, spec in space.items():
        where = f'{source}: {name!r}'
        if name not in OPTIONS:
            raise ConfigError(f'{where} is not a parameter of the trial; tunable parameters: '
                              f'{", ".join(tunable_names())}')
        if not OPTIONS[name].tunable:
            raise ConfigError(f'{where} is a run setting, not a tunable parameter; pass --{name} in the '
                              f'trialCommand instead')
        if name in outer_names:
            raise ConfigError(f'{where} is already set outside this nested choice; set it in one place')
        _check_spec(name, spec['_type'], spec['_value'], where, enclosing, names)
        if name not in names:
            names.append(name)


def _check_spec(name, kind, values, where, outer_names, names):
    opt = OPTIONS[name]
    if kind == 'choice':
        for value in values:
            if isinstance(value, dict):  # nested choice: {"_name": value of this option, other parameters...}
                if '_name' not in value:
                    raise ConfigError(f'{where}: a nested choice needs "_name" (the value of {name}); got {value}')
                check_value(name, value['_name'], where)
                inner = {key: spec for key, spec in value.items() if key != '_name'}
                if inner:
                    _check_level(inner, f'{where} (_name {value["_name"]!r})', outer_names, names)
            else:
                check_value(name, value, where)
        return
    if opt.type not in (int, float):
        raise ConfigError(f'{where}: {kind} draws numbers, but {name} takes {allowed(name)}; use a choice')
    low, high = _range(kind, values)
    if opt.type is int and not _integral(kind, values):
        raise ConfigError(f'{where}: {kind} {values} draws non-integers, but {name} takes {allowed(name)}; '
                          'use randint, a choice, or quniform/qloguniform with integer bounds and q')
    for bound, label in ((low, 'low'), (high, 'high')):
        if math.isinf(bound):
            raise ConfigError(f'{where}: {kind} {values} is unbounded ({label} end), but {name} takes '
                              f'{allowed(name)}; use uniform or loguniform within the bounds')
        check_value(name, bound, f'{where} ({kind} {label} end)')


def _refuse_log_range_from_zero(name, spec, source):
    """The course lab's bug: `grad_clip` loguniform [0, 10]. NNI refuses a log range from 0; say why and the fix."""
    if not isinstance(spec, dict) or spec.get('_type') not in ('loguniform', 'qloguniform'):
        return
    values = spec.get('_value')
    if isinstance(values, list) and values and isinstance(values[0], (int, float)) and values[0] <= 0:
        raise ConfigError(f'{source}: {name!r}: {spec["_type"]} {values} has low end {values[0]}, but a log range '
                          'never reaches 0 or below (NNI refuses it); where 0 means "off", use a choice '
                          f'such as [0, 0.1, 1, 10] or a nested choice that switches it on')


def _range(kind, values):
    """The smallest and largest value a tuner can draw from one spec."""
    if kind == 'randint':
        return values[0], values[1] - 1  # NNI's randint excludes the upper bound
    if kind in NORMAL_TYPES:
        return -math.inf, math.inf
    if kind in LOGNORMAL_TYPES:
        return 0.0, math.inf
    return values[0], values[1]  # uniform, loguniform and their q forms are clipped to [low, high]


def _integral(kind, values):
    if kind == 'randint':
        return True
    if kind in ('quniform', 'qloguniform'):
        return all(float(v).is_integer() for v in values)  # round(x / q) * q, clipped to integer bounds
    return False


def tunable_names():
    return [name for name, opt in OPTIONS.items() if opt.tunable]


def main(path):
    """`trial/main.py --check_space FILE`: print OK and return 0, or the error and return 2."""
    def check():
        names = check_space(path)
        print(f'{path}: OK ({len(names)} parameters: {", ".join(names)})', flush=True)
        return 0
    return exit_status(check)
