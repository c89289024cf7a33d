"""A tabular benchmark (cifar_automl/tables.py) as an NNI search space and trial: the trial looks
its configuration up instead of training it, so an NNI experiment of 100 trials takes minutes.

    python trial/table.py --table nb201/cifar10 --Op0 nor_conv_3x3 --Op1 ... --Op5 nor_conv_1x1
    python trial/table.py --table hpolib/protein_structure --help     # a table's parameter flags

Under NNI the parameters come from the tuner (and override the flags). The trial reports
`default`, the value of one of the configuration's seeds (as a real training would give one run's
value), and beside it `truth`, the mean over its seeds, and `regret`, how far that mean is from
the table's best.

Encoding. A parameter whose choices are text (an operation, an activation) is an NNI `choice`. A
numeric grid (learning rates, widths, batch sizes) can be a `choice` too, which every NNI tuner
treats as unordered categories, or, `ordinal`, its position in the grid as a `quniform` from -0.5
to k-0.5 in steps of 1, so that tuners see 0 < 1 < 2 ... as ordered and every position is drawn
with the same probability as a prior. Which one this repository uses is ENCODING below, chosen
from the tuner benchmark (docs/tuners.md).
"""
import argparse
import json
import math
import os

import numpy as np

from . import tables
from .config import ArgumentParser, ConfigError, exit_status

ENCODINGS = ('ordinal', 'categorical')
# One space for every tuner, as a user writes a grid; it ranked better than ordinal for Optuna's TPE
# and Anneal at 100 evaluations, worse for NNI's TPE (docs/tuners.md, "Encoding and settings").
ENCODING = 'categorical'


def is_ordinal(choices):
    return all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in choices) and len(choices) > 2


def search_space(table, encoding=ENCODING):
    """The NNI search space of a table, in the table's parameter order."""
    if encoding not in ENCODINGS:
        raise ConfigError(f'encoding {encoding!r}: expected one of {", ".join(ENCODINGS)}')
    space = {}
    for name, choices in table.space.items():
        if encoding == 'ordinal' and is_ordinal(choices):
            space[name] = {'_type': 'quniform', '_value': [-0.5, len(choices) - 0.5, 1]}
        else:
            space[name] = {'_type': 'choice', '_value': list(choices)}
    return space


def configuration(table, parameters, space):
    """The table's configuration {parameter: value} for NNI `parameters` drawn from `space`
    (search_space's answer). Raises ConfigError naming a parameter the space does not have."""
    unknown = sorted(set(parameters) - set(table.space))
    if unknown:
        raise ConfigError(f'{table.name}: unknown parameter(s) {", ".join(unknown)}; the table has '
                          f'{", ".join(table.space)}')
    values = {}
    for name, value in parameters.items():
        choices = table.space[name]
        if space[name]['_type'] == 'quniform':
            # NNI rounds half to even and clips to [-0.5, k-0.5]: the ends belong to the first and last positions.
            if not isinstance(value, (int, float)) or not -0.5 <= value <= len(choices) - 0.5:
                raise ConfigError(f'{table.name}: parameter {name!r} is {value!r}; it takes a position '
                                  f'0 to {len(choices) - 1} in {list(choices)}')
            value = choices[min(max(math.floor(value + 0.5), 0), len(choices) - 1)]
        values[name] = value
    return values


def evaluate(table, parameters, space, rng):
    """What the trial reports for NNI `parameters`: {'default': one seed's value, 'truth': the mean
    over seeds, 'regret': truth's distance to the table's best}."""
    try:
        row = table.index(configuration(table, parameters, space))
    except tables.TableError as error:
        raise ConfigError(str(error)) from None
    truth = float(table.truth[row])
    return {'default': table.observe_row(row, rng), 'truth': truth, 'regret': table.regret(truth)}


def observation_rng(seed, parameter_id):
    """The random generator that picks which of a configuration's seeds an evaluation returns:
    fixed by the run's seed and the evaluation's parameter id, so that the in-process benchmark and
    a real NNI experiment with the same tuner seed see the same values (docs/tuners.md)."""
    return np.random.default_rng([seed, parameter_id])


def build_parser(table=None, encoding=ENCODING):
    """The trial's flags; with a table, a flag per parameter too, named as in the search space."""
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--table', required=True, help=f'one of {", ".join(tables.ALL_TABLES)}')
    parser.add_argument('--encoding', default=ENCODING, choices=ENCODINGS,
                        help=f'how the search space encodes numeric grids (default: {ENCODING})')
    parser.add_argument('--seed', type=int, default=0,
                        help='with the trial\'s sequence number, picks which seed\'s value is returned (default: 0)')
    if table is not None:
        for name, spec in search_space(table, encoding).items():
            parser.add_argument(f'--{name}', help=f'position 0-{len(table.space[name]) - 1} in '
                                f'{list(table.space[name])}' if spec['_type'] == 'quniform'
                                else f'one of {spec["_value"]}')
    return parser


def main(argv=None):
    """Under NNI the tuner's parameters override the parameter flags, as in trial/main.py."""
    first = argparse.ArgumentParser(add_help=False)  # which table, to know its parameter flags
    first.add_argument('--table')
    first.add_argument('--encoding', default=ENCODING)
    known, _ = first.parse_known_args(argv)
    table = tables.load(known.table) if known.table in tables.ALL_TABLES else None
    args = build_parser(table, known.encoding if known.encoding in ENCODINGS else ENCODING).parse_args(argv)
    return exit_status(lambda: run(args))


def flag_parameters(space, args):
    """The parameters given as flags, as a tuner would give them (numbers as numbers)."""
    parameters = {}
    for name, spec in space.items():
        text = getattr(args, name)
        if text is None:
            continue
        numeric = spec['_type'] == 'quniform' or all(isinstance(c, (int, float)) for c in spec['_value'])
        try:
            parameters[name] = float(text) if numeric else text
        except ValueError:
            raise ConfigError(f'--{name} {text!r}: expected a number') from None
    return parameters


def run(args):
    if args.table not in tables.ALL_TABLES:
        raise ConfigError(f'--table {args.table!r}: expected one of {", ".join(tables.ALL_TABLES)}')
    table = tables.load(args.table)
    space = search_space(table, args.encoding)
    parameters, sequence = flag_parameters(space, args), 0
    under_nni = bool(os.environ.get('NNI_PLATFORM'))
    if under_nni:
        import nni
        # The trial's sequence number is the dispatcher's parameter id when trials start one at a time.
        parameters, sequence = {**parameters, **nni.get_next_parameter()}, nni.get_sequence_id()
    result = evaluate(table, parameters, space, observation_rng(args.seed, sequence))
    print(json.dumps({'table': args.table, 'parameters': parameters, **result}), flush=True)
    if under_nni:
        nni.report_final_result(result)
    return 0
