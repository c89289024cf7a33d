"""The docs hold up for a reader who follows them. In README.md and docs/*.md every relative link
leads to a file (and heading) of this repository, every docs/results/ path they name exists, and
every command they show, in a ```bash block or inline as `python ...` or `nnictl ...`, parses with
its entry script's own parser and value checks: known flags, allowed values, existing configs."""
import argparse
import contextlib
import importlib.util
import io
import logging
import re
import shlex
import sys
import warnings
from unittest import mock

import pytest

from cifar_automl import (cell_table, config, darts_search, environment, nas_multitrial, random_cells, remeasure,
                          report, retrain, search_summary, space_nb201, table_trial, trial, tuner_bench)
from conftest import REPO

DOCS = [REPO / 'README.md', *sorted((REPO / 'docs').glob('*.md'))]
FENCE = re.compile(r'^ *```(\w*)\n(.*?)^ *```', re.M | re.S)
LINK = re.compile(r'\]\(([^)\s]+)\)')
RESULTS_PATH = re.compile(r'(?<![\w/.-])(docs/results/[\w./*-]*|results/[\w*-][\w./*-]*)')
# A value a reader replaces: ID, DIR, N, or anything with <...> in it (outputs/darts-<time>).
PLACEHOLDER = re.compile(r'[A-Z][A-Z0-9_]*|.*<[^>]+>.*')
# Programs of other projects (installers, Docker, SSH, the shell): their own tools check them.
OTHER_PROGRAMS = {'pip', 'docker', 'ssh', 'curl', 'sudo', 'sed', 'gpg', 'tee', 'tensorboard', 'nvidia-smi', 'export'}
# Inline code that names an nnictl command in prose rather than showing one to run.
MENTIONS = {'nnictl create', 'nnictl create --foreground', 'nnictl experiment export', 'nnictl tensorboard start'}


def read(doc):
    return doc.read_text()


def prose(text):
    return FENCE.sub('', text)


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r'[^\w\- ]', '', heading.strip().lower()).replace(' ', '-')


def anchors(doc):
    return {slug(heading) for heading in re.findall(r'^#+ (.+)$', prose(read(doc)), re.M)}


def doc_params():
    return [pytest.param(doc, id=doc.name) for doc in DOCS]


def broken_link(doc, target):
    path, _, anchor = target.partition('#')
    linked = (doc.parent / path).resolve() if path else doc
    if not linked.exists():
        return 'no such file'
    if anchor and not (linked.suffix == '.md' and anchor in anchors(linked)):
        return 'no such heading'
    return None


@pytest.mark.parametrize('doc', doc_params())
def test_every_relative_link_leads_to_a_file_and_heading(doc):
    targets = [target for target in LINK.findall(prose(read(doc))) if not re.match(r'[a-z]+:', target)]
    broken = [f'{target}: {broken_link(doc, target)}' for target in targets if broken_link(doc, target)]
    assert not broken, f'{doc.name}: ' + '; '.join(broken)


def missing(doc, named):
    path = (REPO if named.startswith('docs/') else doc.parent) / named
    # a path, a glob of paths, or a prefix as --table takes (nas_table: nas_table.md and .csv)
    return not (path.exists() or list(path.parent.glob(path.name)) or list(path.parent.glob(path.name + '.*')))


@pytest.mark.parametrize('doc', doc_params())
def test_every_results_path_the_docs_name_exists(doc):
    named = [path.rstrip('.,') for path in RESULTS_PATH.findall(read(doc))
             if path.startswith('docs/') or doc.parent.name == 'docs']
    absent = [path for path in named if missing(doc, path)]
    assert not absent, f'{doc.name} names paths that are not in the repository: {", ".join(absent)}'


# ============================================================ Commands

def shell_lines(doc):
    """Each command line of the doc's ```bash blocks (continuations joined), then each inline command."""
    text = read(doc)
    for language, block in FENCE.findall(text):
        if language == 'bash':
            yield from (line for line in block.replace('\\\n', ' ').splitlines() if line.strip())
    for code in re.findall(r'`([^`]+)`', prose(text)):
        code = ' '.join(code.split())
        if re.match(r'(python3?|nnictl) ', code) and code not in MENTIONS:
            yield code


def simple_commands(line):
    """The commands of one shell line, split at && || | ; with comments dropped."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars='|&;')  # <...> is a placeholder here
    lexer.whitespace_split = True
    command = []
    for token in lexer:
        if token in ('&&', '||', '|', ';'):
            yield command
            command = []
        else:
            command.append(token)
    yield command


def commands(doc):
    for line in shell_lines(doc):
        for command in simple_commands(line):
            if command[-1:] == ['...']:  # "and the rest as above"
                command = command[:-1]
            if command:
                yield command


class Refused(Exception):
    pass


class Parsed(Exception):
    """Raised by the entry script's parser once it has parsed: nothing else of the script runs."""


def parse_only(main, args, takes_argv=True):
    """What `main`'s own parser makes of `args` (a config.ArgumentParser, as every entry script has):
    its namespace, None for --help, or Refused with the parser's error line."""
    parse_args = config.ArgumentParser.parse_args

    def parse_and_stop(self, argv=None, namespace=None):
        raise Parsed(parse_args(self, argv, namespace))

    stderr = io.StringIO()
    with (mock.patch.object(config.ArgumentParser, 'parse_args', parse_and_stop),
          mock.patch.object(sys, 'argv', ['script', *args]),
          contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO())):
        try:
            main(args) if takes_argv else main()
        except Parsed as parsed:
            return parsed.args[0]
        except SystemExit as stop:
            if stop.code == 0:
                return None
            raise Refused(stderr.getvalue().strip()) from None
    raise AssertionError(f'{main.__module__}.main returned without parsing its arguments')


def with_placeholders_as_defaults(args, options):
    """A placeholder (S in `--seed S`) stands for any allowed value: the option's default."""
    args = list(args)
    for i, (flag, value) in enumerate(zip(args, args[1:])):
        opt = options.get(flag[2:]) if flag.startswith('--') else None
        if opt and (opt.type is not str or opt.choices) and PLACEHOLDER.fullmatch(value):
            args[i + 1] = str(opt.default)
    return args


def check_value(name, value, source, options):
    try:
        config.check_value(name, value, source, options)
    except config.ConfigError as error:
        raise Refused(str(error)) from None


def options_checker(options):
    """A script whose flags are `options`: each given value must pass config.check_value."""
    def check(namespace):
        for name, value in vars(namespace).items():
            check_value(name, value, f'--{name}', options)
    return check


def bench_main(name):
    spec = importlib.util.spec_from_file_location(f'bench_{name}', REPO / 'bench' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def check_remeasure(namespace):
    if namespace.baseline:
        baseline = shlex.split(namespace.baseline)
        if baseline[1:2] != ['trial/main.py']:
            raise Refused(f'--baseline {namespace.baseline!r}: not a trial/main.py command')
        check_command(baseline)
    for name, value in remeasure.parse_overrides(namespace.set).items():
        check_command(['python', 'trial/main.py', f'--{name}', value])


def check_bench_trial(namespace):
    for model in namespace.models.split(','):
        check_value('model', model, '--models', config.OPTIONS)


def check_multitrial(namespace):
    options_checker(nas_multitrial.OPTIONS)(namespace)
    given = {name: getattr(namespace, name, opt.default) for name, opt in nas_multitrial.OPTIONS.items()}
    try:
        nas_multitrial.strategies(argparse.Namespace(**given))
    except config.ConfigError as error:
        raise Refused(str(error)) from None
    for dataset in nas_multitrial.datasets(argparse.Namespace(**given)):
        if dataset not in space_nb201.TABLES:
            raise Refused(f'--datasets: no NAS-Bench-201 dataset {dataset!r}')


def check_tuner_bench(namespace):
    try:
        tuner_bench.check(namespace)  # tables, tuners and their classArgs, modes
    except config.ConfigError as error:
        raise Refused(str(error)) from None


# The entry scripts: (main, whether main takes argv, the options for placeholders, the check of its namespace).
ENTRY_POINTS = {
    'trial/main.py': (trial.main, True, config.OPTIONS, options_checker(config.OPTIONS)),
    'nas/search_darts.py': (darts_search.main, True, darts_search.OPTIONS, options_checker(darts_search.OPTIONS)),
    'retrain/retrain.py': (retrain.main, True, retrain.OPTIONS, options_checker(retrain.OPTIONS)),
    'nas/random_cells.py': (random_cells.main, True, random_cells.OPTIONS, options_checker(random_cells.OPTIONS)),
    'nas/cell_table.py': (cell_table.main, True, {}, lambda ns: check_command(
        ['python', 'retrain/retrain.py', *ns.retrain_flags])),
    '-m cifar_automl.report': (report.main, True, {}, lambda ns: None),
    '-m cifar_automl.environment': (environment.main, True, {}, lambda ns: None),
    '-m cifar_automl.remeasure': (remeasure.main, True, {}, check_remeasure),
    'bench/ablation.py': (lambda: bench_main('ablation')(), False, {}, lambda ns: check_command(
        ['python', 'trial/main.py', *ns.trial_flags])),
    'bench/bench_trial.py': (lambda: bench_main('bench_trial')(), False, {}, check_bench_trial),
    'bench/bench_darts.py': (lambda: bench_main('bench_darts')(), False, {}, lambda ns: None),
    'bench/gpu_check.py': (lambda argv: bench_main('gpu_check')(argv), True, {}, lambda ns: None),
    'bench/committed_reports.py': (lambda argv: bench_main('committed_reports')(argv), True, {}, lambda ns: None),
    'trial/table.py': (table_trial.main, True, {}, lambda ns: None),
    'nas/multitrial.py': (nas_multitrial.main, True, nas_multitrial.OPTIONS, check_multitrial),
    '-m cifar_automl.search_summary': (search_summary.main, True, {}, lambda ns: None),
    'bench/tuners.py': (tuner_bench.main, True, {}, lambda ns: None if ns.replot else check_tuner_bench(ns)),
}


def check_pytest(args):
    values_of = ('-m', '-k')
    for previous, arg in zip(['', *args], args):
        if previous not in values_of and not arg.startswith('-') and not (REPO / arg.split('::')[0]).exists():
            raise Refused(f'pytest: {arg}: no such test file')


def check_nnictl(args):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # nnictl imports pkg_resources
        from nni.tools.nnictl.nnictl import get_parser
    level = logging.getLogger().level
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            namespace = get_parser().parse_args(args)
    except SystemExit:
        raise Refused(stderr.getvalue().strip().splitlines()[-1]) from None
    finally:
        logging.getLogger().setLevel(level)  # get_parser sets it to ERROR
    named = getattr(namespace, 'config', None)
    if args[:1] == ['create'] and named and not PLACEHOLDER.fullmatch(named) and not (REPO / named).is_file():
        raise Refused(f'nnictl create --config {named}: no such file')


def check_command(command):
    while command and re.fullmatch(r'[A-Z_]+=\S*', command[0]):  # CUDA_VISIBLE_DEVICES=1 python ...
        command = command[1:]
    program, *args = command
    if program in OTHER_PROGRAMS:
        return
    if program == 'nnictl':
        return check_nnictl(args)
    assert program in ('python', 'python3'), f'{shlex.join(command)}: no check for {program}'
    entry, args = (' '.join(args[:2]), args[2:]) if args[:1] == ['-m'] else (args[0], args[1:])
    if entry == '-m pytest':
        return check_pytest(args)
    assert entry in ENTRY_POINTS, f'{shlex.join(command)}: no check for {entry}'
    main, takes_argv, options, check = ENTRY_POINTS[entry]
    namespace = parse_only(main, with_placeholders_as_defaults(args, options), takes_argv)
    if namespace is not None:
        check(namespace)


@pytest.mark.parametrize('doc', doc_params())
def test_every_command_in_the_docs_parses_with_its_scripts_own_checks(doc):
    refused = []
    for command in commands(doc):
        try:
            check_command(command)
        except Refused as refusal:
            refused.append(f'{shlex.join(command)}\n  -> {refusal}')
    assert not refused, f'{doc.name}:\n' + '\n'.join(refused)


@pytest.mark.parametrize('command, refusal', [
    ('python trial/main.py --lr 0.1', 'unknown flag --lr'),
    ('python trial/main.py --tta 3', 'tta=3 is not allowed'),
    ('python nas/search_darts.py --strategy enas', "strategy='enas' is not allowed"),
    ('python -m cifar_automl.remeasure ID --baseline "python3 trial/main.py --preset cpu ..."', 'unexpected argument'),
    ('python -m cifar_automl.remeasure ID --set epochs=ten', "invalid int value: 'ten'"),
    ('python bench/bench_trial.py --data_dir DIR --models resnet9,resnet7', "model='resnet7' is not allowed"),
    ('python nas/cell_table.py --cells DARTS_V2 -- --num_cells 2', 'num_cells=2 is not allowed'),
    ('nnictl update duration ID 90m', 'required: --value'),
    ('nnictl create --config nni_configs/nothing.yml', 'no such file'),
])
def test_the_command_check_refuses_what_a_reader_could_not_run(command, refusal):
    with pytest.raises(Refused, match=re.escape(refusal)):
        check_command(shlex.split(command))
