"""Results out of NNI experiments, without the WebUI and without opening db/nni.sqlite by hand.

    python -m cifar_automl.report EXPERIMENT_ID --out results/      # a running experiment (REST API)
    python -m cifar_automl.report ~/nni-experiments/ID --out results/  # a stopped or copied-back one
    python -m cifar_automl.report ID1 ID2 runs/ --out compare/      # several, or a folder of them

One experiment: trials.csv (every trial: parameters, final and best intermediate metric,
duration), report.md (the trials table, best first; whether short trials rank configurations as
full ones do, parameter importance and the Pareto front of accuracy against training time),
best_command.txt (the best trial as a ready-to-run trial command line) and PNG plots. Several:
that report for each in its own folder, and one comparison (comparison.csv, report.md,
best-so-far curves overlaid, each one's short-trial check, importance and Pareto front over all
their trials). NNI 3.0's own `nnictl view` cannot open an experiment directory copied
from another machine; this reads its db/nni.sqlite directly.

The work is done in cifar_automl/results/, one module per job: load (REST, sqlite), write (one
experiment's report), compare (several), plots, fidelity, importance, pareto, commands.
"""
import sys
import time

from .config import ArgumentParser
from .results.commands import best_command
from .results.compare import write_comparison
from .results.experiment import ReportError
from .results.load import load_all
from .results.write import write_report


def main(argv=None):
    parser = ArgumentParser(
        prog='python -m cifar_automl.report',
        description='Export NNI experiments\' trials: trials.csv, report.md, best_command.txt, PNG plots; '
                    'with several experiments, also one comparison of them all.')
    parser.add_argument('experiments', nargs='*', metavar='EXPERIMENT',
                        help='experiment id (nnictl experiment list --all), experiment directory (holding '
                             'db/nni.sqlite, e.g. ~/nni-experiments/ID or a copy of it), or a folder holding '
                             'experiment directories')
    parser.add_argument('--url', default='', help='a running experiment\'s WebUI address, http://HOST:PORT '
                                                  '(e.g. through an SSH tunnel)')
    parser.add_argument('--out', default='', help='output directory (default: report-<experiment id>, '
                                                  'or report-comparison for several)')
    args = parser.parse_args(argv)
    if not args.experiments and not args.url:
        parser.error('give an EXPERIMENT id or directory, or --url')
    try:
        started = time.perf_counter()
        experiments = load_all(args.experiments, args.url)
        if len(experiments) == 1:
            written = write_report(experiments[0], args.out or f'report-{experiments[0].id}')
        else:
            written = write_comparison(experiments, args.out or 'report-comparison')
    except ReportError as error:
        print(f'error: {error}', file=sys.stderr, flush=True)
        return 2
    for experiment in experiments:
        best = experiment.best()
        print(f'experiment {experiment.id} ({experiment.tuner()}): {len(experiment.trials)} trials from '
              f'{experiment.source}')
        if best is not None:
            print(f'best: trial {best.number} ({best.id}), default {best.metric:.2f}')
            print(f'  {best_command(experiment, best)}')
    for path in written:
        print(f'wrote {path}')
    print(f'({time.perf_counter() - started:.1f}s)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
